// WorkerPool: a fixed set of threads draining a bounded queue, so gRPC and
// HTTP handlers hand blocking work (durable writes, calls to Sphere) off
// their callback threads. TrySubmit never blocks: when the queue is full it
// returns false and the caller answers RESOURCE_EXHAUSTED.
//
// Per-key fairness: at most `max_per_key` tasks of one key (a device id, a
// caller) may be queued or running at once, so one caller can never fill
// the queue that everyone shares.
//
// Thread-safety: all methods may be called concurrently. The destructor
// runs what is queued, then joins.
#ifndef SPHERE_APPSVC_WORKER_POOL_H_
#define SPHERE_APPSVC_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace contoso::appsvc {

class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queue, int max_per_key);
  ~WorkerPool();

  // TrySubmit queues `task` under `key`; false when the queue or the key's
  // share is full (nothing queued).
  bool TrySubmit(const std::string& key, std::function<void()> task);

 private:
  struct Task {
    std::string key;
    std::function<void()> fn;
  };
  void Run();

  const size_t max_queue_;
  const int max_per_key_;
  absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> per_key_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_WORKER_POOL_H_
