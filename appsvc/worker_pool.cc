#include "appsvc/worker_pool.h"

namespace contoso::appsvc {

WorkerPool::WorkerPool(int threads, size_t max_queue, int max_per_key)
    : max_queue_(max_queue), max_per_key_(max_per_key) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
}

bool WorkerPool::TrySubmit(const std::string& key, std::function<void()> fn) {
  absl::MutexLock l(&mu_);
  if (stopping_ || queue_.size() >= max_queue_) return false;
  int& n = per_key_[key];
  if (n >= max_per_key_) return false;
  ++n;
  queue_.push_back({key, std::move(fn)});
  return true;
}

void WorkerPool::Run() {
  while (true) {
    Task task;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task.fn();
    absl::MutexLock l(&mu_);
    auto it = per_key_.find(task.key);
    if (it != per_key_.end() && --it->second <= 0) per_key_.erase(it);
  }
}

}  // namespace contoso::appsvc
