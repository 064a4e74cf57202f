// DurableWriter: how appsvc commits a write batch so that, when Commit
// returns OK, the batch survives kill -9 (the store's synced write).
// GroupCommitWriter lets concurrent Commit calls share one Store::Write (one
// WAL sync): the first caller to find no write in progress becomes the
// leader, merges every queued batch (up to max_group_batches) into one
// atomic batch, writes it and wakes the others with its status. A group
// succeeds or fails as a whole; a failed group is reported to every member,
// none of which was acknowledged.
//
// This is appsvc's own small seam until common/store gains the shared
// group-commit writer (engineer "errors", issue 12); swapping it is one line
// in appsvc_main.cc.
//
// Thread-safety: Commit may be called from any number of threads. It blocks
// the caller until durable: call it from worker threads, never from a gRPC
// callback thread.
//
// Example:
//   GroupCommitWriter writer(store.get());
//   store::WriteBatch b; b.Put("samples", key, value);
//   RETURN_IF_ERROR(writer.Commit(b));
#ifndef SPHERE_APPSVC_DURABLE_WRITER_H_
#define SPHERE_APPSVC_DURABLE_WRITER_H_

#include <cstdint>
#include <deque>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/store/store.h"

namespace contoso::appsvc {

class DurableWriter {
 public:
  virtual ~DurableWriter() = default;
  virtual absl::Status Commit(const sphere::store::WriteBatch& batch) = 0;
};

class GroupCommitWriter final : public DurableWriter {
 public:
  explicit GroupCommitWriter(sphere::store::Store* store,
                             int max_group_batches = 64)
      : store_(store), max_group_batches_(max_group_batches) {}

  absl::Status Commit(const sphere::store::WriteBatch& batch) override;

  // Counters (tests, benchmarks): store writes issued, batches committed.
  uint64_t groups() const;
  uint64_t batches() const;

 private:
  struct Pending {
    const sphere::store::WriteBatch* batch;
    absl::Status status;
    bool done = false;
  };
  sphere::store::Store* const store_;
  const int max_group_batches_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t groups_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_DURABLE_WRITER_H_
