// CatalogFollower keeps an InMemoryCatalog in step with management: it runs
// ManagementService.Watch from the view's revision + 1 and applies every
// event; when the stream breaks it reconnects with capped exponential backoff
// and resumes from where it stopped (a compacted revision is answered by
// management with a full snapshot). Shard-map events are passed to
// `on_shard_map`.
//
// Thread-safety: Start/Stop from one thread; WaitForRevision from any.
#ifndef SPHERE_SECURITYSVC_CATALOG_CATALOG_FOLLOWER_H_
#define SPHERE_SECURITYSVC_CATALOG_CATALOG_FOLLOWER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/catalog/catalog_view.h"

namespace sphere::catalog {

class CatalogFollower {
 public:
  CatalogFollower(std::shared_ptr<grpc::Channel> management,
                  InMemoryCatalog* catalog,
                  std::function<void(const v1::ShardMap&)> on_shard_map);
  ~CatalogFollower();

  void Start();
  void Stop();
  // WaitForRevision blocks until the view reached `revision` (or timeout).
  bool WaitForRevision(int64_t revision, absl::Duration timeout);
  // WaitForSnapshot blocks until the first complete catalog was applied.
  bool WaitUntilSynced(absl::Duration timeout);

 private:
  void Run();

  std::unique_ptr<v1::ManagementService::Stub> stub_;
  InMemoryCatalog* const catalog_;
  std::function<void(const v1::ShardMap&)> on_shard_map_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  int64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace sphere::catalog

#endif  // SPHERE_SECURITYSVC_CATALOG_CATALOG_FOLLOWER_H_
