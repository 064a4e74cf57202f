#include "securitysvc/attestation/revocation_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/util/log.h"
#include "common/util/metrics.h"

namespace sphere::attestation {
namespace {

metrics::CounterMetric *RevocationCounter() {
  static auto *c = metrics::Counter("sphere_automatic_revocations_total",
                                    "Automatic revocations by result");
  return c;
}

}  // namespace

bool IsRetryable(const absl::Status &status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
      return true;
    default:
      return false;
  }
}

RevocationQueue::RevocationQueue(RevokeFn revoke, Options options)
    : revoke_(std::move(revoke)), options_(options) {
  worker_ = std::thread([this] { Run(); });
}

RevocationQueue::~RevocationQueue() { Stop(); }

void RevocationQueue::RequestRevocation(RevocationRequest request) {
  absl::MutexLock l(&mu_);
  if (stopping_ || pending_.contains(request.device_id)) return;
  if (queue_.size() >= options_.capacity) {
    ++dropped_;
    RevocationCounter()->Increment("result=\"dropped\"");
    log::Warning("automatic revocation queue full; dropped",
                 {{"device", request.device_id},
                  {"capacity", absl::StrCat(options_.capacity)}});
    return;
  }
  pending_.insert(request.device_id);
  queue_.push_back(std::move(request));
}

void RevocationQueue::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
}

bool RevocationQueue::WaitIdle(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return queue_.empty() && !in_flight_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

uint64_t RevocationQueue::delivered() const {
  absl::MutexLock l(&mu_);
  return delivered_;
}
uint64_t RevocationQueue::failed() const {
  absl::MutexLock l(&mu_);
  return failed_;
}
uint64_t RevocationQueue::dropped() const {
  absl::MutexLock l(&mu_);
  return dropped_;
}

void RevocationQueue::Run() {
  while (true) {
    RevocationRequest request;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      request = std::move(queue_.front());
      queue_.pop_front();
      in_flight_ = true;
    }
    absl::Duration backoff = options_.initial_backoff;
    absl::Status status;
    bool stopped = false;
    for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
      status = revoke_(request);
      if (status.ok() || !IsRetryable(status) ||
          attempt == options_.max_attempts) {
        break;
      }
      log::Warning("automatic revocation failed; retrying",
                   {{"device", request.device_id},
                    {"attempt", absl::StrCat(attempt)},
                    {"error", std::string(status.message())}});
      absl::MutexLock l(&mu_);
      auto stop = [this]()
                      ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), backoff)) {
        stopped = true;
        break;
      }
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
    absl::MutexLock l(&mu_);
    in_flight_ = false;
    pending_.erase(request.device_id);
    if (status.ok()) {
      ++delivered_;
      RevocationCounter()->Increment("result=\"revoked\"");
      log::Info("device revoked automatically",
                {{"device", request.device_id}, {"reason", request.reason}});
    } else if (!stopped) {
      ++failed_;
      RevocationCounter()->Increment("result=\"failed\"");
      log::Error("automatic revocation failed", {{"device", request.device_id},
                                                 {"reason", request.reason},
                                                 {"error", status.ToString()}});
    }
    if (stopping_) return;
  }
}

}  // namespace sphere::attestation
