// DurableWriter: how appsvc's core commits a write batch so that, when
// Commit returns OK, the batch survives kill -9 (a synced write).
//
// SharedGroupCommit adapts common/store's GroupCommitWriter (engineer
// "errors", issue 12: one leader thread, one synced write per group of
// concurrent batches, failure isolation, bounded queue) to this blocking
// interface: Commit submits the batch and waits for its durability callback.
// A full queue is ResourceExhausted (nothing written).
//
// The core keeps a device's record locked from read to durable commit, so a
// blocking commit is what it needs; the wait happens on appsvc's worker
// threads, never on a gRPC callback thread.
//
// Thread-safety: Commit may be called from any number of threads.
//
// Example:
//   sphere::store::GroupCommitWriter group(store.get(), {.name = "appsvc"});
//   SharedGroupCommit writer(&group);
//   RETURN_IF_ERROR(writer.Commit(std::move(batch)));
#ifndef SPHERE_APPSVC_DURABLE_WRITER_H_
#define SPHERE_APPSVC_DURABLE_WRITER_H_

#include "absl/status/status.h"
#include "common/store/group_commit.h"
#include "common/store/store.h"

namespace contoso::appsvc {

class DurableWriter {
 public:
  virtual ~DurableWriter() = default;
  virtual absl::Status Commit(sphere::store::WriteBatch batch) = 0;
};

class SharedGroupCommit final : public DurableWriter {
 public:
  explicit SharedGroupCommit(sphere::store::GroupCommitWriter* writer)
      : writer_(writer) {}
  absl::Status Commit(sphere::store::WriteBatch batch) override;

 private:
  sphere::store::GroupCommitWriter* const writer_;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_DURABLE_WRITER_H_
