// UpdatePlugin: the update service as a shard plug-in (issue 11). It brings
// the "update_results" column family, the UpdateService (GetUpdates,
// DownloadImage, ReportUpdateResult) and what they share: the signed
// metadata cache, the package cache and the update worker thread.
//
// Where the bytes come from: Options::packages, a PackageSource. In a
// cluster (shard_main.cc) it reads management's sealed package store
// (DIR/images/catalog, ImagePipeline::ReadPackage with the package key
// derived from the cluster master key the shard already holds); in tests a
// map. PackageCache keeps recently used packages within a byte budget.
//
// Example:
//   UpdatePlugin::Options o;
//   o.signer = std::make_shared<KeyMetadataSigner>(pki->image_signing_key);
//   o.packages = std::make_shared<FunctionPackageSource>(read_package);
//   plugins.push_back(std::make_unique<UpdatePlugin>(std::move(o)));
#ifndef SPHERE_SECURITYSVC_UPDATE_UPDATE_PLUGIN_H_
#define SPHERE_SECURITYSVC_UPDATE_UPDATE_PLUGIN_H_

#include <memory>

#include "common/util/rate_limiter.h"
#include "common/util/worker_pool.h"
#include "protos/attestation.pb.h"
#include "protos/error_reporting.pb.h"
#include "securitysvc/shard_server/shard_plugin.h"
#include "securitysvc/update/group_metadata.h"
#include "securitysvc/update/package_cache.h"
#include "securitysvc/update/stage_membership.h"
#include "securitysvc/update/update_admin_service.h"
#include "securitysvc/update/update_results.h"
#include "securitysvc/update/update_service.h"

namespace sphere::update {

class UpdatePlugin final : public shard::ShardPlugin {
 public:
  struct Options {
    std::shared_ptr<const MetadataSigner> signer;  // required
    std::shared_ptr<PackageSource> packages;       // required
    uint64_t package_byte_budget = PackageCache::kDefaultByteBudget;
    GroupMetadataCache::Options metadata;
    // Tasks waiting for the worker (package reads, result writes) at most.
    size_t max_queued = 4096;
    // Per-device ReportUpdateResult budget.
    RateLimiter::Options report_rate = DefaultReportRate();
    // An app crash or watchdog reset reported this long after a device's
    // INSTALLED report counts against the deployment's stage.
    absl::Duration crash_window = absl::Hours(24);
    // How long a stage's device count (pending) is reused.
    StageMembership::Options membership;
  };
  static RateLimiter::Options DefaultReportRate() {
    RateLimiter::Options o;
    o.rate_per_second = 1;
    o.burst = 10;
    o.max_keys = size_t{1} << 20;
    return o;
  }
  explicit UpdatePlugin(Options options) : options_(std::move(options)) {}

  std::string name() const override { return "update"; }
  std::vector<std::string> ColumnFamilies() const override {
    return {kUpdateResultsCf, kUpdateHistoryCf};
  }
  absl::Status Init(shard::ShardContext& context) override;
  std::vector<grpc::Service*> Services() override {
    return {service_.get(), admin_service_.get()};
  }
  void Stop() override;

  // FillDeviceStatus adds the device's last update result to an operator's
  // DeviceStatus (hooked into the attestation plug-in's DeviceStatusService
  // as its device_status_extension). One store read; safe before Init (no-op).
  void FillDeviceStatus(absl::string_view device_id,
                        v1::DeviceStatus* status) const;

  // FillDeviceHistory adds the device's last update results (at most
  // kMaxUpdateHistory) to an operator's GetDeviceHistory answer (the
  // attestation plug-in's device_history_extension). One bounded store
  // scan; safe before Init (no-op).
  void FillDeviceHistory(absl::string_view device_id,
                         std::vector<v1::DeviceHistoryEntry>* out) const;

  // OnErrorsAccepted: error reporting's hook for a durable upload
  // (ErrorReportingPlugin::Options::on_accepted). Its APP_CRASH and
  // WATCHDOG_RESET events mark the device's latest INSTALLED result as
  // crashed after install (UpdateResults::RecordCrash) on the update worker;
  // returns at once. No-op before Init or after Stop.
  void OnErrorsAccepted(const std::string& device_id,
                        const v1::UploadErrorsRequest& batch);

  GroupMetadataCache* metadata() { return metadata_.get(); }
  PackageCache* packages() { return packages_.get(); }
  UpdateResults* results() { return results_.get(); }

 private:
  Options options_;
  std::unique_ptr<PackageCache> packages_;
  std::unique_ptr<GroupMetadataCache> metadata_;
  std::unique_ptr<UpdateResults> results_;
  std::unique_ptr<RateLimiter> report_limiter_;
  std::unique_ptr<StageMembership> membership_;
  const Clock* clock_ = nullptr;
  std::unique_ptr<WorkerPool> worker_;
  std::unique_ptr<UpdateServiceImpl> service_;
  std::unique_ptr<UpdateAdminServiceImpl> admin_service_;
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_UPDATE_PLUGIN_H_
