// WatchClient follows ManagementService.Watch in a background thread and
// lets tests block (no sleeps) until an event matching a predicate arrived.
#ifndef SPHERE_TESTS_WATCH_CLIENT_H_
#define SPHERE_TESTS_WATCH_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/management.grpc.pb.h"

namespace sphere::testing {

class WatchClient {
 public:
  WatchClient(v1::ManagementService::Stub *stub, int64_t start_revision) {
    v1::WatchRequest req;
    req.set_start_revision(start_revision);
    reader_ = stub->Watch(&ctx_, req);
    thread_ = std::thread([this] {
      v1::WatchEvent e;
      while (reader_->Read(&e)) {
        absl::MutexLock l(&mu_);
        events_.push_back(e);
      }
      status_ = reader_->Finish();
      absl::MutexLock l(&mu_);
      done_ = true;
    });
  }
  ~WatchClient() {
    ctx_.TryCancel();
    thread_.join();
  }

  // WaitFor blocks until an event satisfies `pred` (returns it) or timeout.
  std::optional<v1::WatchEvent> WaitFor(
      const std::function<bool(const v1::WatchEvent &)> &pred,
      absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    std::optional<v1::WatchEvent> found;
    auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      for (const auto &e : events_) {
        if (pred(e)) {
          found = e;
          return true;
        }
      }
      return done_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    return found;
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader_;
  grpc::Status status_;
  absl::Mutex mu_;
  std::vector<v1::WatchEvent> events_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_WATCH_CLIENT_H_
