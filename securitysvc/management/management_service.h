// ManagementService: the thin gRPC adapter over Catalog. Each handler
// identifies the caller from the verified mTLS peer certificate, calls the
// Catalog and maps its absl::Status one-to-one to a gRPC status.
//
// Identity (certificate SAN URIs, certificate issued directly by the platform
// root; device certificates are always refused):
//   urn:sphere:tenant:<id>                 -> tenant operator of <id>
//   urn:sphere:scope:platform-operator     -> platform operator
//   urn:sphere:scope:shard                 -> internal (shards; least
//                                             privilege, see Catalog; Watch
//                                             with wrapped tenant CA keys)
//
// Watch is a server-streaming reactor over a Catalog::WatchStream: snapshot
// and replay are pulled page by page, the next page only after the previous
// one was written, so any snapshot size streams under HTTP/2 flow control.
// Live events are queued per watcher up to `watch_queue_limit`; a watcher
// that falls further behind is finished with RESOURCE_EXHAUSTED (it resumes
// from its last revision + 1) instead of buffering without bound.
//
// Handlers never call the Catalog on a gRPC callback thread (on etcd each
// call is network round trips): the callback thread identifies the caller
// and hands the call to `options.workers`, one bounded WorkerPool shared by
// every handler (unary calls, each ImportDevices / UploadImageStream
// message). A full queue, or a caller that already holds its share of it
// (keyed by tenant, platform operator, or shard connection), is answered
// RESOURCE_EXHAUSTED at once. Without a pool (unit tests) calls run inline.
//
// Thread-safety: the service is safe for concurrent calls.
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_MANAGEMENT_SERVICE_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_MANAGEMENT_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <functional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/util/rate_limiter.h"
#include "common/util/worker_pool.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/management/catalog.h"

namespace sphere::management {

struct ManagementServiceOptions {
  // Subject line of the platform root certificate; operator certificates must
  // be issued directly by it (so tenant-CA-issued device certs never pass).
  std::string root_subject_line;
  size_t watch_queue_limit = 65536;
  // Events pulled from the catalog per page (written one by one before the
  // next page is pulled).
  size_t watch_page_size = 256;
  // VerifyImagePackage checks and re-signs an uploaded package and returns
  // its Image record (the image pipeline; owned by another module). Unset
  // means UploadImage answers UNIMPLEMENTED.
  std::function<absl::StatusOr<v1::Image>(absl::string_view tenant_id,
                                          absl::string_view package)>
      verify_image_package;
  // Per-caller rate limit on the expensive calls (operator credential
  // issuance: 1 token; image upload: 1 token per started MiB). Callers are
  // keyed by principal (tenant id, platform operator, shard). Null: no limit.
  // Not owned; must outlive the service.
  RateLimiter* expensive_call_limiter = nullptr;
  // on_shard_registered runs after each successful RegisterShard (a shard's
  // heartbeat): it renews the shard's lease (shard_leases.h). Optional.
  std::function<void(const std::string& shard_id)> on_shard_registered;
  // Where handlers run their catalog calls (see the class comment). Null:
  // inline on the callback thread (tests). Not owned; must outlive the
  // service and be stopped only after the server stopped.
  WorkerPool* workers = nullptr;
  // Idle Watch streams get a progress notification (WatchEvent.progress)
  // every interval, so shards can bound their catalog lag
  // (--max_catalog_staleness) without mistaking an idle catalog for a lost
  // one. Zero: none.
  absl::Duration watch_progress_interval = absl::Seconds(5);
  // catalog_probe: checked before each round of progress notifications (on
  // etcd: a quorum read); an error sends none. Unset: always current (the
  // embedded log is in this process).
  std::function<absl::Status()> catalog_probe;
};

// IdentifyCaller maps a verified peer certificate to a Caller.
absl::StatusOr<Caller> IdentifyCaller(const crypto::ParsedCertificate& cert,
                                      absl::string_view root_subject_line);

class ManagementService final : public v1::ManagementService::CallbackService {
 public:
  ManagementService(Catalog* catalog, ManagementServiceOptions options);
  // Stops the progress ticker. Destroy after the server stopped.
  ~ManagementService() override;

  grpc::ServerUnaryReactor* CreateTenant(grpc::CallbackServerContext* ctx,
                                         const v1::CreateTenantRequest* req,
                                         v1::Tenant* resp) override;
  grpc::ServerUnaryReactor* ListTenants(grpc::CallbackServerContext* ctx,
                                        const v1::ListTenantsRequest* req,
                                        v1::ListTenantsResponse* resp) override;
  grpc::ServerUnaryReactor* GetTenant(grpc::CallbackServerContext* ctx,
                                      const v1::GetTenantRequest* req,
                                      v1::Tenant* resp) override;
  grpc::ServerUnaryReactor* IssueOperatorCredential(
      grpc::CallbackServerContext* ctx,
      const v1::IssueOperatorCredentialRequest* req,
      v1::OperatorCredential* resp) override;
  grpc::ServerUnaryReactor* CreateProduct(grpc::CallbackServerContext* ctx,
                                          const v1::CreateProductRequest* req,
                                          v1::Product* resp) override;
  grpc::ServerUnaryReactor* ListProducts(
      grpc::CallbackServerContext* ctx, const v1::ListProductsRequest* req,
      v1::ListProductsResponse* resp) override;
  grpc::ServerUnaryReactor* GetProduct(grpc::CallbackServerContext* ctx,
                                       const v1::GetProductRequest* req,
                                       v1::Product* resp) override;
  grpc::ServerUnaryReactor* CreateDeviceGroup(
      grpc::CallbackServerContext* ctx, const v1::CreateDeviceGroupRequest* req,
      v1::DeviceGroup* resp) override;
  grpc::ServerUnaryReactor* ListDeviceGroups(
      grpc::CallbackServerContext* ctx, const v1::ListDeviceGroupsRequest* req,
      v1::ListDeviceGroupsResponse* resp) override;
  grpc::ServerUnaryReactor* GetDeviceGroup(grpc::CallbackServerContext* ctx,
                                           const v1::GetDeviceGroupRequest* req,
                                           v1::DeviceGroup* resp) override;
  grpc::ServerUnaryReactor* UpdateDeviceGroup(
      grpc::CallbackServerContext* ctx, const v1::UpdateDeviceGroupRequest* req,
      v1::DeviceGroup* resp) override;
  grpc::ServerReadReactor<v1::ImportDevicesRequest>* ImportDevices(
      grpc::CallbackServerContext* ctx,
      v1::ImportDevicesResponse* resp) override;
  grpc::ServerUnaryReactor* ClaimDevices(grpc::CallbackServerContext* ctx,
                                         const v1::ClaimDevicesRequest* req,
                                         v1::ClaimDevicesResponse* resp) override;
  grpc::ServerUnaryReactor* ClaimDevice(grpc::CallbackServerContext* ctx,
                                        const v1::ClaimDeviceRequest* req,
                                        v1::Device* resp) override;
  grpc::ServerUnaryReactor* ListDevices(grpc::CallbackServerContext* ctx,
                                        const v1::ListDevicesRequest* req,
                                        v1::ListDevicesResponse* resp) override;
  grpc::ServerUnaryReactor* GetDevice(grpc::CallbackServerContext* ctx,
                                      const v1::GetDeviceRequest* req,
                                      v1::Device* resp) override;
  grpc::ServerUnaryReactor* AssignDevice(grpc::CallbackServerContext* ctx,
                                         const v1::AssignDeviceRequest* req,
                                         v1::Device* resp) override;
  grpc::ServerUnaryReactor* RevokeDevice(grpc::CallbackServerContext* ctx,
                                         const v1::RevokeDeviceRequest* req,
                                         v1::Device* resp) override;
  grpc::ServerUnaryReactor* RequestDeviceTransfer(
      grpc::CallbackServerContext* ctx,
      const v1::RequestDeviceTransferRequest* req, v1::Device* resp) override;
  grpc::ServerUnaryReactor* AcceptDeviceTransfer(
      grpc::CallbackServerContext* ctx,
      const v1::AcceptDeviceTransferRequest* req, v1::Device* resp) override;
  grpc::ServerUnaryReactor* GetCaCertificate(
      grpc::CallbackServerContext* ctx, const v1::GetCaCertificateRequest* req,
      v1::CaCertificate* resp) override;
  grpc::ServerUnaryReactor* UploadImage(grpc::CallbackServerContext* ctx,
                                        const v1::UploadImageRequest* req,
                                        v1::Image* resp) override;
  grpc::ServerReadReactor<v1::UploadImageChunk>* UploadImageStream(
      grpc::CallbackServerContext* ctx, v1::Image* resp) override;
  grpc::ServerUnaryReactor* ListImages(grpc::CallbackServerContext* ctx,
                                       const v1::ListImagesRequest* req,
                                       v1::ListImagesResponse* resp) override;
  grpc::ServerUnaryReactor* CreateDeployment(
      grpc::CallbackServerContext* ctx, const v1::CreateDeploymentRequest* req,
      v1::Deployment* resp) override;
  grpc::ServerUnaryReactor* ListDeployments(
      grpc::CallbackServerContext* ctx, const v1::ListDeploymentsRequest* req,
      v1::ListDeploymentsResponse* resp) override;
  grpc::ServerUnaryReactor* ReleaseOs(grpc::CallbackServerContext* ctx,
                                      const v1::ReleaseOsRequest* req,
                                      v1::OsRelease* resp) override;
  grpc::ServerUnaryReactor* GetCatalogRevision(
      grpc::CallbackServerContext* ctx,
      const v1::GetCatalogRevisionRequest* req,
      v1::CatalogRevision* resp) override;
  grpc::ServerUnaryReactor* GetShardMap(grpc::CallbackServerContext* ctx,
                                        const v1::GetShardMapRequest* req,
                                        v1::ShardMap* resp) override;
  grpc::ServerUnaryReactor* RegisterShard(grpc::CallbackServerContext* ctx,
                                          const v1::RegisterShardRequest* req,
                                          v1::ShardMap* resp) override;
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(
      grpc::CallbackServerContext* ctx, const v1::WatchRequest* req) override;

  grpc::ServerUnaryReactor* DeleteProduct(grpc::CallbackServerContext* ctx,
                                          const v1::DeleteProductRequest* req,
                                          v1::DeleteResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteDeviceGroup(
      grpc::CallbackServerContext* ctx, const v1::DeleteDeviceGroupRequest* req,
      v1::DeleteResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteDeployment(
      grpc::CallbackServerContext* ctx, const v1::DeleteDeploymentRequest* req,
      v1::DeleteResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteImage(grpc::CallbackServerContext* ctx,
                                        const v1::DeleteImageRequest* req,
                                        v1::DeleteResponse* resp) override;

 private:
  class ImportReactor;
  class UploadReactor;
  class WatchReactor;

  absl::StatusOr<Caller> Identify(grpc::CallbackServerContext* ctx) const;
  // StoreImage verifies `package` (already within the size cap and quota)
  // for the tenant `tenant_id` (resolved; empty = platform OS image) and
  // records it.
  absl::Status StoreImage(const Caller& caller, const std::string& tenant_id,
                          absl::string_view package, v1::Image* resp);
  // UploadTenant resolves an upload's tenant field and checks the size cap
  // and quota for `total_size` bytes.
  absl::StatusOr<std::string> UploadTenant(const Caller& caller,
                                           absl::string_view tenant,
                                           uint64_t total_size);
  // Unary identifies the caller, runs `fn(caller)` on the worker pool and
  // finishes the call with its status (RESOURCE_EXHAUSTED when the pool
  // refuses it). `fn` must capture by value: it runs after the handler
  // returned.
  grpc::ServerUnaryReactor* Unary(
      grpc::CallbackServerContext* ctx,
      std::function<absl::Status(const Caller&)> fn);
  void FinishUnary(grpc::CallbackServerContext* ctx,
                   grpc::ServerUnaryReactor* reactor,
                   const absl::Status& status);
  // Offload runs `task` on the worker pool under `key` (inline without a
  // pool); false when the pool refused it.
  bool Offload(const std::string& key, std::function<void()> task);
  // PoolKey: the caller's fairness key (tenant, platform operator, or the
  // shard's connection when `ctx` is given).
  static std::string PoolKey(const Caller& caller,
                             grpc::CallbackServerContext* ctx);
  // Busy: the RESOURCE_EXHAUSTED answer when the pool refuses a call.
  static absl::Status Busy();

  // LimitExpensiveCall charges `cost` tokens to the caller's bucket
  // (RESOURCE_EXHAUSTED with the retry delay when it is empty).
  absl::Status LimitExpensiveCall(const Caller& caller, absl::string_view what,
                                  double cost) const;

  void RemoveWatcher(WatchReactor* reactor);
  void RunProgressTicker();

  Catalog* const catalog_;
  const ManagementServiceOptions options_;
  // Live Watch reactors, for progress notifications.
  absl::Mutex watchers_mu_;
  absl::flat_hash_set<WatchReactor*> watchers_ ABSL_GUARDED_BY(watchers_mu_);
  bool ticker_stopping_ ABSL_GUARDED_BY(watchers_mu_) = false;
  std::thread progress_ticker_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_MANAGEMENT_SERVICE_H_
