// CatalogFollower keeps an InMemoryCatalog in step with management: it runs
// ManagementService.Watch from the view's revision + 1 and applies every
// event; when the stream breaks it reconnects and resumes from where it
// stopped (a compacted revision is answered by management with a full
// snapshot). Shard-map events are passed to `on_shard_map`.
//
// Revisions: the applied revision (WaitForRevision, applied_revision) is the
// view's, which advances only on live events and at the end of a snapshot,
// never mid-snapshot (snapshot events all carry the final revision). The
// follower marks the view unsynced at construction (RequireSnapshot); it
// becomes synced() when the first complete snapshot is applied, and shards
// serve attestation only then (the Attestor answers UNAVAILABLE before).
//
// Failures never spin: an event the view cannot apply is not skipped (the
// follower cancels the stream, drops any partial snapshot, logs an error,
// counts it in sphere_catalog_apply_failures_total and resumes from that
// same event), and every reconnect waits a jittered exponential backoff
// (initial_backoff doubling up to max_backoff, uniformly in [b/2, b]) that
// resets only when the view gets past the highest revision it ever reached.
// So a poisoned or oversized event costs one attempt per backoff period, and
// the reported revision never passes it.
//
// Every message read from the stream, an event or a progress notification
// (WatchEvent.progress, sent by management on an idle stream), marks the
// view heard-from (InMemoryCatalog::MarkHeard): with a staleness limit set,
// a shard cut off from management stops issuing certificates once nothing
// arrived for that long, and resumes as soon as the stream is back.
//
// Thread-safety: Start/Stop from one thread; the accessors and waits from
// any.
#ifndef SPHERE_SECURITYSVC_CATALOG_CATALOG_FOLLOWER_H_
#define SPHERE_SECURITYSVC_CATALOG_CATALOG_FOLLOWER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/catalog/catalog_view.h"

namespace sphere::catalog {

struct CatalogFollowerOptions {
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(30);
  // Called on the follower thread after each event was applied (tests,
  // observers); must not block.
  std::function<void(const v1::WatchEvent&)> on_applied;
  // Called on the follower thread after each progress notification (tests);
  // must not block.
  std::function<void(const v1::WatchEvent&)> on_progress;
};

class CatalogFollower {
 public:
  CatalogFollower(std::shared_ptr<grpc::Channel> management,
                  InMemoryCatalog* catalog,
                  std::function<void(const v1::ShardMap&)> on_shard_map,
                  CatalogFollowerOptions options = {});
  ~CatalogFollower();

  void Start();
  void Stop();
  // WaitForRevision blocks until the view reached `revision` (or timeout).
  bool WaitForRevision(int64_t revision, absl::Duration timeout);
  // WaitUntilSynced blocks until the first complete catalog was applied.
  bool WaitUntilSynced(absl::Duration timeout);
  // synced: the first complete snapshot has been applied.
  bool synced() const;
  // applied_revision: the revision the view is complete through.
  int64_t applied_revision() const;
  // apply_failures: events the view could not apply (each retried later).
  uint64_t apply_failures() const;
  // current_backoff: the backoff the next reconnect waits (at most).
  absl::Duration current_backoff() const;

 private:
  void Run();

  std::unique_ptr<v1::ManagementService::Stub> stub_;
  InMemoryCatalog* const catalog_;
  std::function<void(const v1::ShardMap&)> on_shard_map_;
  const CatalogFollowerOptions options_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  int64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t apply_failures_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace sphere::catalog

#endif  // SPHERE_SECURITYSVC_CATALOG_CATALOG_FOLLOWER_H_
