// RevisionLog: the storage seam under the management catalog, shaped after
// etcd's v3 data model so that the catalog runs unchanged on the embedded
// store (one management process, RocksDB) or on etcd (several management
// replicas, consensus by etcd; see etcd_revision_log.h).
//
// The model (etcd's):
//   - Keys are (column family, key) pairs; on etcd they are flattened to
//     "<prefix><cf>/<key>" so a column family is a key prefix.
//   - Every successful Txn creates one new store revision (int64, strictly
//     increasing, starting at 1). Each key remembers the revision that last
//     wrote it (its mod revision); an absent key has mod revision 0.
//   - Txn applies a batch of puts and deletes atomically if and only if every
//     Compare holds (a key's mod revision equals the expected one; 0 means
//     "the key must not exist"). This is how two writers sharing one log can
//     never both win a race (for example two management replicas claiming
//     one device): both read, both compare on what they read, one fails.
//   - A Snapshot reads the whole keyspace as of one revision.
//   - Watch delivers every change after a revision, in revision order, one
//     callback per committed Txn. Compact(r) lets the log forget history
//     before r: a Watch or Snapshot older than the compacted revision fails
//     with OutOfRange, and the caller starts again from a fresh snapshot.
//
// The catalog keeps its own per-event change log and revision counter as
// keys in this keyspace (see catalog.cc), so watchers of the catalog see the
// same revisions and events whatever the backend is.
//
// Thread-safety: all methods may be called concurrently. Watch callbacks run
// one at a time per watcher, on the committing thread (embedded) or on a
// thread owned by the implementation (etcd), and must not block or call back
// into the log.
//
// Example (optimistic concurrency, as the catalog commits):
//   RevisionLog::KeyInfo meta = *log->Stat("meta", "revision");
//   store::WriteBatch ops;
//   ops.Put("meta", "revision", "8");
//   auto r = log->Txn({{"meta", "revision", meta.mod_revision}}, ops);
//   if (r.ok() && !r->succeeded) { /* someone else wrote first: re-read */ }
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_REVISION_LOG_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_REVISION_LOG_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/store/store.h"

namespace sphere::management {

class RevisionLog : public store::Reader {
 public:
  // Compare: the key's mod revision must equal `mod_revision` (0: absent).
  struct Compare {
    std::string cf;
    std::string key;
    int64_t mod_revision = 0;
  };
  struct TxnResult {
    bool succeeded = false;
    // The store revision after the Txn: the new revision when it succeeded,
    // the current one when a Compare failed.
    int64_t revision = 0;
  };
  struct KeyInfo {
    std::string value;         // empty when absent
    int64_t mod_revision = 0;  // 0: the key does not exist
    int64_t revision = 0;      // the store revision this was read at
  };
  // Change: one put or delete of a committed Txn.
  struct Change {
    bool is_delete = false;
    std::string cf;
    std::string key;
    std::string value;  // empty for deletes
  };
  // Snapshot reads the keyspace as of revision().
  class Snapshot : public store::Snapshot {
   public:
    virtual int64_t revision() const = 0;
  };
  // Watcher: the subscription; destroying it stops delivery (no callback runs
  // after the destructor returns).
  class Watcher {
   public:
    virtual ~Watcher() = default;
  };
  struct WatchCallbacks {
    // on_changes(revision, changes): all changes of the Txn that created
    // `revision`, in revision order, without gaps.
    std::function<void(int64_t revision, const std::vector<Change>& changes)>
        on_changes;
    // on_error: the watch ended (OutOfRange: compacted past the start;
    // Unavailable: the backend is unreachable). Nothing follows it.
    std::function<void(const absl::Status& status)> on_error;
  };

  ~RevisionLog() override = default;

  // Stat returns a key's value and mod revision (0 if absent) and the store
  // revision, read together.
  virtual absl::StatusOr<KeyInfo> Stat(absl::string_view cf,
                                       absl::string_view key) = 0;
  // Txn: see the model above. A Compare failure is not an error: it answers
  // succeeded=false and changes nothing. Errors (unreachable backend, a batch
  // beyond the backend's request limits) also change nothing.
  virtual absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& compares,
                                        const store::WriteBatch& ops) = 0;
  // NewSnapshot pins the current revision for consistent paged reads.
  virtual absl::StatusOr<std::unique_ptr<Snapshot>> NewSnapshot() = 0;
  // Watch delivers every Txn with revision >= start_revision.
  virtual absl::StatusOr<std::unique_ptr<Watcher>> Watch(
      int64_t start_revision, WatchCallbacks callbacks) = 0;
  // Compact forgets history before `revision`.
  virtual absl::Status Compact(int64_t revision) = 0;
  // Revision is the current store revision.
  virtual absl::StatusOr<int64_t> Revision() = 0;
  // MaxTxnOps: the most puts and deletes one Txn may carry (etcd's
  // --max-txn-ops); callers that may split their work (compaction) use it.
  virtual size_t MaxTxnOps() const = 0;
  // shared: other processes may write the same log (etcd). The catalog then
  // follows the log with Watch to learn about their commits.
  virtual bool shared() const = 0;
};

// EmbeddedRevisionLog implements RevisionLog on a store::Store (RocksDB in
// production, MemoryStore in tests), for a single writer process. It keeps
// no history of overwritten values: Snapshot uses the store's snapshot, Watch
// serves only revisions after the current one (older starts answer
// OutOfRange, as after a compaction), and Compact is a no-op. Mod revisions
// are recorded for the keys of `versioned_column_families` only (in
// `meta_cf`, under "kv/mod/<cf>/<key>"); a Compare on another column family
// may only test absence (mod_revision 0), anything else is InvalidArgument.
class EmbeddedRevisionLog final : public RevisionLog {
 public:
  struct Options {
    std::string meta_cf = "meta";  // holds the revision counter
    std::vector<std::string> versioned_column_families = {"meta"};
  };
  // Open reads the revision counter from `store` (which must outlive the log
  // and have `options.meta_cf`).
  static absl::StatusOr<std::unique_ptr<EmbeddedRevisionLog>> Open(
      store::Store* store, Options options);
  static absl::StatusOr<std::unique_ptr<EmbeddedRevisionLog>> Open(
      store::Store* store) {
    return Open(store, Options());
  }

  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override;
  absl::Status Scan(absl::string_view cf, absl::string_view prefix,
                    const std::function<bool(absl::string_view key,
                                             absl::string_view value)>& fn,
                    absl::string_view start = "") override;
  absl::StatusOr<KeyInfo> Stat(absl::string_view cf,
                               absl::string_view key) override;
  absl::StatusOr<TxnResult> Txn(const std::vector<Compare>& compares,
                                const store::WriteBatch& ops) override;
  absl::StatusOr<std::unique_ptr<Snapshot>> NewSnapshot() override;
  absl::StatusOr<std::unique_ptr<Watcher>> Watch(
      int64_t start_revision, WatchCallbacks callbacks) override;
  absl::Status Compact(int64_t revision) override;
  absl::StatusOr<int64_t> Revision() override;
  size_t MaxTxnOps() const override { return SIZE_MAX; }
  bool shared() const override { return false; }

 private:
  class WatcherImpl;
  EmbeddedRevisionLog(store::Store* store, Options options);
  bool Versioned(absl::string_view cf) const;
  absl::StatusOr<int64_t> ModRevisionLocked(absl::string_view cf,
                                            absl::string_view key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  store::Store* const store_;
  const Options options_;
  // Txns are serialised (the catalog serialises them anyway); watch
  // callbacks run under it, in commit order.
  absl::Mutex mu_;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<WatcherImpl*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_REVISION_LOG_H_
