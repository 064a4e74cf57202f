#include "twin/control_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"

namespace sphere::twin {

bool WorkQueue::TryPost(std::function<void()> work) {
  absl::MutexLock l(&mu_);
  if (closed_ || items_.size() >= capacity_) return false;
  items_.push_back(std::move(work));
  return true;
}

size_t WorkQueue::RunFor(absl::Duration timeout) {
  std::deque<std::function<void()>> batch;
  {
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &WorkQueue::Ready), timeout);
    woken_ = false;
    batch.swap(items_);
  }
  for (auto& work : batch) work();
  return batch.size();
}

void WorkQueue::Wake() {
  absl::MutexLock l(&mu_);
  woken_ = true;
}

void WorkQueue::Close() {
  absl::MutexLock l(&mu_);
  closed_ = true;
  woken_ = true;
}

size_t WorkQueue::size() const {
  absl::MutexLock l(&mu_);
  return items_.size();
}

grpc::ServerUnaryReactor* TwinControlService::Run(
    grpc::CallbackServerContext* ctx, v1::TwinStatus* resp, const char* method,
    std::function<absl::Status()> op) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  bool posted = queue_->TryPost([this, reactor, resp, op = std::move(op)] {
    absl::Status s = op();
    *resp = host_->Status();
    reactor->Finish(rpc::ToGrpcStatus(s));
  });
  if (!posted) {
    reactor->Finish(rpc::ToGrpcStatus(absl::ResourceExhaustedError(
        absl::StrCat("TwinControl.", method,
                     ": the twin is busy (request queue full or shutting "
                     "down); retry later"))));
  }
  return reactor;
}

grpc::ServerUnaryReactor* TwinControlService::GetStatus(
    grpc::CallbackServerContext* ctx, const v1::GetStatusRequest*,
    v1::TwinStatus* resp) {
  return Run(ctx, resp, "GetStatus", [] { return absl::OkStatus(); });
}

grpc::ServerUnaryReactor* TwinControlService::Attest(
    grpc::CallbackServerContext* ctx, const v1::TwinAttestRequest*,
    v1::TwinStatus* resp) {
  return Run(ctx, resp, "Attest", [this] { return host_->Attest(); });
}

grpc::ServerUnaryReactor* TwinControlService::Reboot(
    grpc::CallbackServerContext* ctx, const v1::RebootRequest*,
    v1::TwinStatus* resp) {
  return Run(ctx, resp, "Reboot", [this] { return host_->Reboot(); });
}

grpc::ServerUnaryReactor* TwinControlService::CheckForUpdates(
    grpc::CallbackServerContext* ctx, const v1::CheckForUpdatesRequest*,
    v1::TwinStatus* resp) {
  return Run(ctx, resp, "CheckForUpdates",
             [this] { return host_->CheckForUpdates(); });
}

}  // namespace sphere::twin
