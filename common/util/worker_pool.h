// WorkerPool: a fixed set of threads draining one bounded queue, where
// servers run work that may block (store or etcd round trips, synced writes,
// calls to other services) so no gRPC or HTTP callback thread waits on it.
//
// Admission never blocks: TrySubmit returns false when the queue is full or
// the task's key already holds its share, and the caller answers
// RESOURCE_EXHAUSTED at once. Fairness is per key (a tenant, a device, a
// caller principal): at most `max_per_key` tasks of one key wait in the
// queue at once, so one caller can never fill the queue everyone shares.
// Running tasks do not count against the share (they are bounded by the
// thread count): a task's slot frees when a thread takes it, so a client
// whose window of calls equals its share is never refused because its
// previous call is still sending its reply. Post (no key) is bounded by the
// queue alone, for a server's own work.
//
// Tasks of one key run in submission order when the pool has one thread;
// with several threads they may overlap (use one thread for work that must
// stay ordered, as the update service's synced writes do).
//
// Thread-safety: every method may be called concurrently. Stop (and the
// destructor) refuses new tasks, runs every task already queued, then joins;
// a task must therefore finish on its own (answer its call).
//
// Example:
//   WorkerPool pool({.threads = 4, .max_queue = 256, .max_per_key = 32});
//   if (!pool.TrySubmit(tenant_id, [=] { reactor->Finish(Run(req)); }))
//     reactor->Finish(ResourceExhausted("management busy; retry"));
#ifndef SPHERE_COMMON_UTIL_WORKER_POOL_H_
#define SPHERE_COMMON_UTIL_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace sphere {

class WorkerPool {
 public:
  struct Options {
    int threads = 4;          // at least 1
    size_t max_queue = 1024;  // tasks waiting (not running), all keys
    // Tasks of one key waiting in the queue at once (running ones do not
    // count); 0 = max_queue.
    size_t max_per_key = 0;
  };

  explicit WorkerPool(Options options);
  // Shorthand used by existing callers: (threads, max_queue, max_per_key).
  WorkerPool(int threads, size_t max_queue, size_t max_per_key);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // TrySubmit queues `task` under `key`; false (nothing queued) when the
  // pool is stopping, the queue is full or `key` has max_per_key tasks
  // waiting.
  bool TrySubmit(absl::string_view key, std::function<void()> task);
  // Post queues `task` under no key (bounded by the queue alone).
  bool Post(std::function<void()> task);
  // Stop refuses new tasks, runs what is queued, then joins. Idempotent.
  void Stop();

  // queued: tasks waiting for a thread (for metrics and tests).
  size_t queued() const;

 private:
  struct Task {
    std::string key;
    bool keyed = false;
    std::function<void()> fn;
  };
  bool Enqueue(Task task);
  void Run();

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> per_key_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  absl::Mutex join_mu_;  // serialises Stop's join
};

}  // namespace sphere

#endif  // SPHERE_COMMON_UTIL_WORKER_POOL_H_
