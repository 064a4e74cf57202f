// RecordWriter: where the Attestor's records go (issue 14, group commit).
//
// Write(batch, done) makes `batch` durable and then calls `done` exactly once
// with the outcome; `done` may run on another thread and may run before Write
// returns. An OK status means the batch is durable (Store::Write's contract),
// so a caller acknowledges only from `done`.
//
// GroupCommitWriter is the shard's writer: one thread takes every batch
// queued while the previous store write was syncing and applies them as ONE
// store write (one WAL sync), then calls each batch's `done`. Concurrent
// attestations therefore share an fsync, and no gRPC callback thread ever
// waits on the disk: the attestation service finishes its reactor from
// `done`. DirectRecordWriter writes on the caller's thread (tests, tools).
//
// This is the attestation's own small seam; a reusable group-commit writer in
// common/store (issue 12) can replace GroupCommitWriter behind it.
//
// Example:
//   GroupCommitWriter writer(store, GroupCommitWriter::Options());
//   store::WriteBatch b; b.Put("devices", id, bytes);
//   writer.Write(std::move(b), [](absl::Status s) { /* acknowledge */ });
//   ...
//   writer.Stop();  // drains what is queued; later writes are refused
//
// Thread-safety: Write may be called concurrently from any thread.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_RECORD_WRITER_H_
#define SPHERE_SECURITYSVC_ATTESTATION_RECORD_WRITER_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/store/store.h"

namespace sphere::attestation {

class RecordWriter {
 public:
  using Done = std::function<void(absl::Status)>;
  virtual ~RecordWriter() = default;
  virtual void Write(store::WriteBatch batch, Done done) = 0;
};

// DirectRecordWriter: Store::Write on the calling thread; `done` runs before
// Write returns.
class DirectRecordWriter final : public RecordWriter {
 public:
  explicit DirectRecordWriter(store::Store* store) : store_(store) {}
  void Write(store::WriteBatch batch, Done done) override {
    done(store_->Write(batch));
  }

 private:
  store::Store* const store_;
};

class GroupCommitWriter final : public RecordWriter {
 public:
  struct Options {
    // Bounds on what waits for the writer thread; beyond them Write fails
    // at once with UNAVAILABLE (the caller retries), so a burst can never
    // grow the queue without limit.
    size_t max_pending_batches = 16384;
    size_t max_pending_bytes = size_t{32} << 20;
    // At most this many batches (and about this many bytes) per store write.
    size_t max_group_batches = 2048;
    size_t max_group_bytes = size_t{8} << 20;
  };

  // `store` must outlive the writer.
  GroupCommitWriter(store::Store* store, Options options);
  // Stops (draining) if Stop was not called.
  ~GroupCommitWriter() override;

  void Write(store::WriteBatch batch, Done done) override;

  // Stop writes everything already queued, calls its `done`s, and joins the
  // writer thread; Write then fails at once with UNAVAILABLE. Idempotent.
  void Stop();

  // Counters for tests and benchmarks.
  uint64_t store_writes() const;    // store writes made (groups)
  uint64_t batches_written() const;  // batches acknowledged OK

 private:
  struct Pending {
    store::WriteBatch batch;
    Done done;
    size_t bytes;
  };
  void Run();
  // Commit writes one group; on a failed group write it retries each batch
  // alone, so one bad batch cannot fail its neighbours.
  void Commit(std::deque<Pending>& group);

  store::Store* const store_;
  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t store_writes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t batches_written_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// BatchBytes: the payload size of a batch (keys + values + names).
size_t BatchBytes(const store::WriteBatch& batch);

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_RECORD_WRITER_H_
