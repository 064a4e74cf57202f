// AttestationPlugin: attestation as a shard plug-in. It brings the
// attestation column families, the AttestationService and the operators'
// read-only DeviceStatusService (the plug-in owns the records it reads); with
// management present it also sends automatic revocations there
// (RevocationQueue, off the attestation path).
//
// Example:
//   plugins.push_back(std::make_unique<attestation::AttestationPlugin>(
//       attestation::AttestationPlugin::Options{}));
#ifndef SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_PLUGIN_H_
#define SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_PLUGIN_H_

#include <memory>

#include "common/util/rate_limiter.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/attestation/attestation_service.h"
#include "securitysvc/attestation/device_status_service.h"
#include "securitysvc/attestation/nonce_store.h"
#include "securitysvc/attestation/record_writer.h"
#include "securitysvc/attestation/revocation_queue.h"
#include "securitysvc/shard_server/shard_plugin.h"

namespace sphere::attestation {

class AttestationPlugin final : public shard::ShardPlugin {
 public:
  struct Options {
    Attestor::Options attestor;  // revocation_sink is set by the plug-in
    // Per-device GetChallenge budget: `burst` at once, then
    // `rate_per_second` (shard flags --challenge_burst,
    // --challenge_per_second); up to a million devices tracked at once.
    RateLimiter::Options challenge_rate = DefaultChallengeRate();
    // Group commit of attestation records (one WAL sync per group).
    store::GroupCommitOptions record_writer = DefaultRecordWriter();

    // Adds other plug-ins' per-device state to DeviceStatusService answers.
    DeviceStatusExtension device_status_extension;
    // Adds other plug-ins' per-device history to GetDeviceHistory answers.
    DeviceHistoryExtension device_history_extension;
    // The worker pool DeviceStatusService's store reads run on.
    WorkerPool::Options status_reads =
        DeviceStatusServiceImpl::DefaultReadPool();
  };
  static RateLimiter::Options DefaultChallengeRate() {
    RateLimiter::Options o;
    o.rate_per_second = 1;
    o.burst = 20;
    o.max_keys = size_t{1} << 20;
    return o;
  }
  static store::GroupCommitOptions DefaultRecordWriter() {
    store::GroupCommitOptions o;
    o.name = "attestation";
    return o;
  }
  AttestationPlugin() : AttestationPlugin(Options()) {}
  explicit AttestationPlugin(Options options) : options_(options) {}

  std::string name() const override { return "attestation"; }
  std::vector<std::string> ColumnFamilies() const override;
  absl::Status Init(shard::ShardContext& context) override;
  std::vector<grpc::Service*> Services() override;
  uint64_t DeviceCount() const override;
  void Stop() override;

  Attestor* attestor() { return attestor_.get(); }
  store::GroupCommitWriter* group_commit() { return group_commit_.get(); }

 private:
  Options options_;
  std::unique_ptr<RevocationQueue> revocations_;
  std::unique_ptr<NonceStore> nonces_;
  std::unique_ptr<RateLimiter> challenge_limiter_;
  std::unique_ptr<Attestor> attestor_;
  std::unique_ptr<AttestationServiceImpl> service_;
  std::unique_ptr<DeviceStatusServiceImpl> status_service_;
  // Last, so they are destroyed (drained) first: the callbacks use the
  // Attestor.
  std::unique_ptr<store::GroupCommitWriter> group_commit_;
  std::unique_ptr<GroupCommitRecordWriter> record_writer_;
};

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_PLUGIN_H_
