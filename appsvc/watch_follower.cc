#include "appsvc/watch_follower.h"

#include <algorithm>

#include "absl/random/random.h"
#include "absl/time/time.h"
#include "common/util/log.h"

namespace contoso::appsvc {

WatchFollower::WatchFollower(std::shared_ptr<grpc::Channel> management,
                             DeviceRegistry* registry)
    : stub_(sphere::v1::ManagementService::NewStub(std::move(management))),
      registry_(registry) {}

WatchFollower::~WatchFollower() { Stop(); }

void WatchFollower::Start() {
  thread_ = std::thread([this] { Run(); });
}

void WatchFollower::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void WatchFollower::Run() {
  absl::BitGen rng;
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    grpc::ClientContext ctx;
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      active_ = &ctx;
    }
    sphere::v1::WatchRequest req;
    req.set_start_revision(registry_->synced() ? registry_->revision() + 1 : 0);
    const int64_t before = registry_->revision();
    auto reader = stub_->Watch(&ctx, req);
    sphere::v1::WatchEvent event;
    while (reader->Read(&event)) registry_->Apply(event);
    grpc::Status st = reader->Finish();
    {
      absl::MutexLock l(&mu_);
      active_ = nullptr;
      if (stopping_) return;
    }
    if (registry_->revision() > before) backoff = absl::Milliseconds(50);
    sphere::log::Warning("catalog watch ended; reconnecting",
                         {{"code", std::to_string(st.error_code())},
                          {"error", st.error_message()}});
    const absl::Duration wait = absl::Uniform(rng, 0.5, 1.0) * backoff;
    backoff = std::min(backoff * 2, absl::Seconds(10));
    absl::MutexLock l(&mu_);
    auto stop = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stop), wait)) return;
  }
}

}  // namespace contoso::appsvc
