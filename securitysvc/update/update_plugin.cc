#include "securitysvc/update/update_plugin.h"

namespace sphere::update {

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
  admin_service_ = std::make_unique<UpdateAdminServiceImpl>(
      results_.get(), context.root_subject_line);
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

void UpdatePlugin::Stop() {
  if (worker_) worker_->Stop();
}

}  // namespace sphere::update
