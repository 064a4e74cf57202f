// UpdateWorker: one background thread with a bounded queue, where the update
// service runs what may block (package reads, synced result writes, metadata
// rebuilds) so no gRPC callback thread waits. A full queue refuses the task
// (the caller answers RESOURCE_EXHAUSTED) instead of growing.
//
// Thread-safety: Post is thread-safe. Stop runs every task already queued
// (each must finish its call), then joins.
#ifndef SPHERE_SECURITYSVC_UPDATE_WORKER_H_
#define SPHERE_SECURITYSVC_UPDATE_WORKER_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"

namespace sphere::update {

class UpdateWorker {
 public:
  explicit UpdateWorker(size_t max_queued) : max_queued_(max_queued) {
    thread_ = std::thread([this] { Run(); });
  }
  ~UpdateWorker() { Stop(); }
  UpdateWorker(const UpdateWorker&) = delete;
  UpdateWorker& operator=(const UpdateWorker&) = delete;

  // Post queues `task`; false when the queue is full or the worker stopped.
  bool Post(std::function<void()> task) {
    absl::MutexLock l(&mu_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(task));
    return true;
  }

  // Stop runs what is queued, then joins. Idempotent.
  void Stop() {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> task;
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(
            +[](UpdateWorker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
              return w->stopping_ || !w->queue_.empty();
            },
            this));
        if (queue_.empty()) return;  // stopping and drained
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_WORKER_H_
