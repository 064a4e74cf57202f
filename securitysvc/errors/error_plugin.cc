#include "securitysvc/errors/error_plugin.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace sphere::errors {

absl::Status ErrorReportingPlugin::Init(shard::ShardContext& context) {
  // Stores written by stop 22 and before hold format-1 keys: moved to
  // format 2 before the ErrorStore reads anything.
  absl::StatusOr<int64_t> migrated = MigrateFormat1(context.store);
  if (!migrated.ok()) return migrated.status();
  if (*migrated > 0) {
    log::Info("error store: format-1 keys moved to format 2",
              {{"keys", absl::StrCat(*migrated)}});
  }
  std::vector<store::GroupCommitWriter*> writers;
  for (int i = 0; i < std::max(1, options_.writers); ++i) {
    writers_.push_back(std::make_unique<store::GroupCommitWriter>(
        context.store, options_.group_commit));
    writers.push_back(writers_.back().get());
  }
  errors_ = std::make_unique<ErrorStore>(context.store, std::move(writers),
                                         context.clock, options_.store);
  service_ = std::make_unique<ErrorReportingServiceImpl>(
      errors_.get(), context.device_calls, context.root_subject_line);
  service_->set_on_accepted(options_.on_accepted);
  if (options_.sweep_interval > absl::ZeroDuration()) {
    sweeper_ = std::thread([this] { SweepLoop(); });
  }
  return absl::OkStatus();
}

void ErrorReportingPlugin::SweepLoop() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    const absl::Time until = absl::Now() + options_.sweep_interval;
    while (!stopping_ && absl::Now() < until) {
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](bool* stop) { return *stop; }, &stopping_),
                            until);
    }
    if (stopping_) return;
    mu_.Unlock();
    absl::StatusOr<int64_t> n = errors_->SweepExpired();
    if (!n.ok()) {
      log::Warning("error retention sweep failed",
                   {{"error", std::string(n.status().message())}});
    } else if (*n > 0) {
      log::Info("error retention sweep",
                {{"deleted_reports", absl::StrCat(*n)}});
    }
    mu_.Lock();
  }
}

void ErrorReportingPlugin::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (sweeper_.joinable()) sweeper_.join();
  // Each writes what is queued and acknowledges it.
  for (auto& w : writers_) w->Stop();
}

}  // namespace sphere::errors
