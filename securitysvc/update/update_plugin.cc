#include "securitysvc/update/update_plugin.h"

#include <algorithm>

#include "absl/strings/string_view.h"
#include "common/util/log.h"
#include "common/util/metrics.h"

namespace sphere::update {
namespace {

metrics::CounterMetric* CrashesCounter() {
  static auto* c = metrics::Counter(
      "sphere_update_crashes_after_install_total",
      "Devices marked crashed (app crash / watchdog reset) after an install");
  return c;
}

}  // namespace

absl::Status UpdatePlugin::Init(shard::ShardContext& context) {
  if (options_.signer == nullptr || options_.packages == nullptr) {
    return absl::InvalidArgumentError(
        "update plug-in needs a metadata signer and a package source");
  }
  packages_ = std::make_unique<PackageCache>(options_.packages.get(),
                                             options_.package_byte_budget);
  metadata_ = std::make_unique<GroupMetadataCache>(
      context.catalog, packages_.get(), options_.signer.get(), context.clock,
      options_.metadata);
  results_ = std::make_unique<UpdateResults>(context.store);
  if (auto s = results_->Load(); !s.ok()) return s;
  report_limiter_ =
      std::make_unique<RateLimiter>(context.clock, options_.report_rate);
  worker_ = std::make_unique<WorkerPool>(1, options_.max_queued, 0);
  UpdateServiceImpl::Deps d;
  d.catalog = context.catalog;
  d.calls = context.device_calls;
  d.router = context.router;
  d.metadata = metadata_.get();
  d.packages = packages_.get();
  d.results = results_.get();
  d.worker = worker_.get();
  d.report_limiter = report_limiter_.get();
  d.clock = context.clock;
  service_ = std::make_unique<UpdateServiceImpl>(d);
  membership_ = std::make_unique<StageMembership>(
      context.catalog, context.router, context.clock, options_.membership);
  clock_ = context.clock;
  UpdateAdminServiceImpl::Deps a;
  a.results = results_.get();
  a.catalog = context.catalog;
  a.membership = membership_.get();
  a.worker = worker_.get();
  a.root_subject_line = context.root_subject_line;
  admin_service_ = std::make_unique<UpdateAdminServiceImpl>(std::move(a));
  return absl::OkStatus();
}

void UpdatePlugin::FillDeviceStatus(absl::string_view device_id,
                                    v1::DeviceStatus* status) const {
  if (results_ == nullptr) return;
  auto r = results_->Get(device_id);
  if (!r.ok()) return;  // never reported (or unreadable: shown as none)
  status->set_last_update_result(
      v1::ReportUpdateResultRequest::Result_Name(r->result()));
  status->set_last_update_component(r->component());
  status->set_last_update_version(r->version());
  status->set_last_update_detail(r->detail());
  status->set_last_update_unix_ms(r->reported_unix_ms());
}

void UpdatePlugin::FillDeviceHistory(
    absl::string_view device_id,
    std::vector<v1::DeviceHistoryEntry>* out) const {
  if (results_ == nullptr) return;
  auto history = results_->History(device_id);
  if (!history.ok()) return;  // unreadable: shown as none
  for (const v1::DeviceUpdateStatus& r : *history) {
    v1::DeviceHistoryEntry e;
    e.set_time_unix_ms(r.reported_unix_ms());
    v1::UpdateResultEntry* u = e.mutable_update_result();
    u->set_result(v1::ReportUpdateResultRequest::Result_Name(r.result()));
    u->set_component(r.component());
    u->set_version(r.version());
    u->set_detail(r.detail());
    u->set_deployment_id(r.deployment_id());
    u->set_image_id(r.image_id());
    out->push_back(std::move(e));
  }
}

void UpdatePlugin::OnErrorsAccepted(const std::string& device_id,
                                    const v1::UploadErrorsRequest& batch) {
  if (worker_ == nullptr || results_ == nullptr) return;
  std::vector<UpdateResults::CrashEvent> crashes;
  for (const v1::ErrorEvent& e : batch.events()) {
    if (e.kind() != v1::ErrorEvent::APP_CRASH &&
        e.kind() != v1::ErrorEvent::WATCHDOG_RESET) {
      continue;
    }
    // Error reporting bounded these fields before storing the batch; cut
    // again so nothing longer is ever kept here.
    const absl::string_view component =
        absl::string_view(e.component()).substr(0, 64);
    const absl::string_view version =
        absl::string_view(e.component_version()).substr(0, 32);
    // An event equal to one already listed gets the same answer from
    // RecordCrash (one store read each): list it once.
    if (std::any_of(crashes.begin(), crashes.end(),
                    [&](const UpdateResults::CrashEvent& c) {
                      return c.kind == e.kind() && c.component == component &&
                             c.component_version == version;
                    })) {
      continue;
    }
    crashes.push_back(
        {e.kind(), std::string(component), std::string(version)});
    if (crashes.size() >= 16) break;  // one device counts once anyway
  }
  if (crashes.empty()) return;
  const absl::Time now = clock_->Now();
  const absl::Duration window = options_.crash_window;
  UpdateResults* results = results_.get();
  if (!worker_->Post([results, device_id, crashes = std::move(crashes), now,
                      window] {
        for (const UpdateResults::CrashEvent& c : crashes) {
          auto marked = results->RecordCrash(device_id, c, now, window);
          if (!marked.ok()) {
            log::Warning(
                "update: crash after install not recorded",
                {{"device", device_id}, {"error", marked.status().ToString()}});
            return;
          }
          if (*marked) {
            CrashesCounter()->Increment("");
            return;
          }
        }
      })) {
    log::Warning("update: worker queue full; crash report not counted",
                 {{"device", device_id}});
  }
}

void UpdatePlugin::Stop() {
  if (worker_) worker_->Stop();
}

}  // namespace sphere::update
