#include "common/util/worker_pool.h"

#include <algorithm>
#include <utility>

namespace sphere {

WorkerPool::WorkerPool(Options options) : options_(options) {
  const int n = std::max(1, options_.threads);
  threads_.reserve(n);
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Run(); });
}

WorkerPool::WorkerPool(int threads, size_t max_queue, size_t max_per_key)
    : WorkerPool(Options{threads, max_queue, max_per_key}) {}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::TrySubmit(absl::string_view key, std::function<void()> fn) {
  return Enqueue({std::string(key), true, std::move(fn)});
}

bool WorkerPool::Post(std::function<void()> fn) {
  return Enqueue({std::string(), false, std::move(fn)});
}

bool WorkerPool::Enqueue(Task task) {
  absl::MutexLock l(&mu_);
  if (stopping_ || queue_.size() >= options_.max_queue) return false;
  if (task.keyed) {
    const size_t cap =
        options_.max_per_key == 0 ? options_.max_queue : options_.max_per_key;
    size_t& n = per_key_[task.key];
    if (n >= cap) return false;
    ++n;
  }
  queue_.push_back(std::move(task));
  return true;
}

void WorkerPool::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  absl::MutexLock j(&join_mu_);
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

size_t WorkerPool::queued() const {
  absl::MutexLock l(&mu_);
  return queue_.size();
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
      // The key's share counts waiting tasks only: its slot frees now.
      if (task.keyed) {
        auto it = per_key_.find(task.key);
        if (it != per_key_.end() && --it->second == 0) per_key_.erase(it);
      }
    }
    task.fn();
  }
}

}  // namespace sphere
