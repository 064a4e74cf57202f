// GroupCommitWriter: many callers' write batches, one synced write.
//
// Callers Submit a WriteBatch with a completion callback and return at once
// (safe on a gRPC callback thread: Submit never waits for the disk). One
// leader thread takes everything queued, appends it into one batch and calls
// Store::Write once (RocksStore: one WAL fsync for the whole group), then runs
// every callback of the group with the write's status. A callback therefore
// runs only once its batch is durable, on the writer's thread, never on the
// submitter's; callbacks must be short and must not block (finish a gRPC
// reactor, signal a waiter).
//
// Failure isolation: when a group's write fails, each batch of the group is
// retried alone, so one bad batch (e.g. an unknown column family) fails only
// its own callback. Batches are applied atomically and in submission order
// within a group; batches of different callers are independent.
//
// Bounds: at most `max_queued_batches` batches and `max_queued_bytes` bytes
// wait at a time; beyond that Submit refuses with ResourceExhausted (the
// caller should answer "retry later") and never queues. A group holds at most
// `max_group_bytes` (a larger single batch is written alone).
//
// Thread-safety: all methods may be called concurrently. The destructor calls
// Stop(): queued batches are still written and their callbacks run; Submit
// after Stop refuses with Unavailable.
//
// Example:
//   GroupCommitWriter writer(store, {.name = "errors"});
//   WriteBatch b; b.Put("errors", key, value);
//   absl::Status queued = writer.Submit(std::move(b),
//       [reactor](absl::Status s) { reactor->Finish(ToGrpc(s)); });
//   if (!queued.ok()) reactor->Finish(ToGrpc(queued));  // callback not run
#ifndef SPHERE_COMMON_STORE_GROUP_COMMIT_H_
#define SPHERE_COMMON_STORE_GROUP_COMMIT_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/store/store.h"

namespace sphere::store {

struct GroupCommitOptions {
  // Metric label: sphere_group_commit_*{writer="<name>"}.
  std::string name = "default";
  size_t max_queued_batches = 16384;
  size_t max_queued_bytes = 64 << 20;
  size_t max_group_bytes = 8 << 20;
};

class GroupCommitWriter {
 public:
  // Callback receives the durable write's status (OK: durable).
  using Callback = std::function<void(const absl::Status&)>;

  // `store` must outlive the writer.
  GroupCommitWriter(Store* store, GroupCommitOptions options = {});
  ~GroupCommitWriter();
  GroupCommitWriter(const GroupCommitWriter&) = delete;
  GroupCommitWriter& operator=(const GroupCommitWriter&) = delete;

  // Submit queues `batch`; `done` runs exactly once, on the writer thread,
  // after the batch is durable or failed. Returns (and `done` is NOT run):
  // ResourceExhausted when the queue is full, Unavailable after Stop,
  // InvalidArgument for an empty batch.
  absl::Status Submit(WriteBatch batch, Callback done);

  // Stop writes what is queued, runs its callbacks and ends the thread.
  // Idempotent.
  void Stop();

  // Counters since construction (tests, benchmarks).
  uint64_t groups_written() const;
  uint64_t batches_written() const;

 private:
  struct Pending {
    WriteBatch batch;
    Callback done;
    size_t bytes;
  };
  void Run();

  Store* const store_;
  const GroupCommitOptions options_;
  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t groups_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  std::once_flag join_once_;
  std::thread thread_;
};

}  // namespace sphere::store

#endif  // SPHERE_COMMON_STORE_GROUP_COMMIT_H_
