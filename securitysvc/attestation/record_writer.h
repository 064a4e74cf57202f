// RecordWriter: where the Attestor's records go (issue 14, group commit).
//
// Write(batch, done) makes `batch` durable and then calls `done` exactly once
// with the outcome; `done` may run on another thread and may run before Write
// returns. An OK status means the batch is durable (Store::Write's contract),
// so a caller acknowledges only from `done`.
//
// GroupCommitRecordWriter is the shard's writer: it hands batches to the
// shared store::GroupCommitWriter (common/store/group_commit.h), whose one
// thread applies every batch queued while the previous write was syncing as
// ONE store write (one WAL sync) and then calls each `done`. Concurrent
// attestations therefore share an fsync, and no gRPC callback thread waits
// on the disk: the attestation service finishes its reactor from `done`.
// A batch the writer refuses (queue full, stopping) gets `done` at once with
// that status. DirectRecordWriter writes on the caller's thread (tests,
// tools).
//
// Example:
//   store::GroupCommitOptions o;
//   o.name = "attestation";
//   store::GroupCommitWriter group(store, o);
//   GroupCommitRecordWriter writer(&group);
//   store::WriteBatch b; b.Put("devices", id, bytes);
//   writer.Write(std::move(b), [](absl::Status s) { /* acknowledge */ });
//
// Thread-safety: Write may be called concurrently from any thread.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_RECORD_WRITER_H_
#define SPHERE_SECURITYSVC_ATTESTATION_RECORD_WRITER_H_

#include <functional>
#include <utility>

#include "absl/status/status.h"
#include "common/store/group_commit.h"
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

// GroupCommitRecordWriter: Write through a shared GroupCommitWriter (which
// must outlive it).
class GroupCommitRecordWriter final : public RecordWriter {
 public:
  explicit GroupCommitRecordWriter(store::GroupCommitWriter* writer)
      : writer_(writer) {}
  void Write(store::WriteBatch batch, Done done) override;
  store::GroupCommitWriter* group_commit() { return writer_; }

 private:
  store::GroupCommitWriter* const writer_;
};

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_RECORD_WRITER_H_
