// UpdateServiceImpl: the gRPC adapter of the shard's update plug-in
// (protos/update.proto). Every method goes through the shard's
// DeviceCallHandler with DeviceAccess::kDevice, so an update-only
// certificate (genuine but outdated software) may call it; the device, its
// tenant and group come from the credential and the catalog, never from the
// request.
//
//  * GetUpdates answers the signed metadata of the caller's group variant
//    from memory (GroupMetadataCache); only after a catalog change that needs
//    a package read is the answer built on the update worker.
//  * DownloadImage streams the serialized ImagePackage of an image in the
//    caller's signed set, from `offset`, in chunks of max_chunk_bytes
//    (default 64 KiB, at most 1 MiB), one write in flight, and never past the
//    package_size the metadata signed. PERMISSION_DENIED for an image the
//    platform knows but that is not in the caller's set (another tenant's
//    app, an old release), NOT_FOUND for an unknown one, OUT_OF_RANGE for an
//    offset past the end.
//  * ReportUpdateResult stores the device's latest result (UpdateResults) on
//    the update worker, rate-limited per device; the reports that queue
//    while the worker writes go in its next write batch (one synced write
//    per group, at most kMaxQueuedReports waiting: beyond, RESOURCE_EXHAUSTED).
//
// Thread-safety: thread-safe; handlers never block a callback thread.
#ifndef SPHERE_SECURITYSVC_UPDATE_UPDATE_SERVICE_H_
#define SPHERE_SECURITYSVC_UPDATE_UPDATE_SERVICE_H_

#include <cstdint>
#include <memory>

#include "common/util/clock.h"
#include "common/util/rate_limiter.h"
#include "common/util/worker_pool.h"
#include "protos/update.grpc.pb.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/shard_server/device_call.h"
#include "securitysvc/sharding/router.h"
#include "securitysvc/update/group_metadata.h"
#include "securitysvc/update/package_cache.h"
#include "securitysvc/update/update_results.h"

namespace sphere::update {

inline constexpr uint32_t kDefaultChunkBytes = 64 << 10;
inline constexpr uint32_t kMaxChunkBytes = 1 << 20;

// GetUpdates is registered raw (ByteBuffer in and out): its answer is the
// group's pre-serialized bytes (GroupMetadata::response_bytes), handed to
// gRPC without a copy, parse or serialization per call.
using UpdateServiceBase = v1::UpdateService::WithRawCallbackMethod_GetUpdates<
    v1::UpdateService::WithCallbackMethod_GetUpdatesBatch<
        v1::UpdateService::WithCallbackMethod_DownloadImage<
            v1::UpdateService::WithCallbackMethod_ReportUpdateResult<
                v1::UpdateService::Service>>>>;

// Limits of one GetUpdatesBatch call (each item also has every limit of the
// single call: a 64-hex device_id, a session token of at most
// shard::kMaxSessionTokenBytes).
inline constexpr int kMaxUpdatesBatchItems = 256;
inline constexpr size_t kMaxUpdatesBatchBytes = 512 << 10;

// ValidateUpdatesBatch: the call limits above, INVALID_ARGUMENT naming the
// limit; checked before any item is looked at.
absl::Status ValidateUpdatesBatch(const v1::GetUpdatesBatchRequest& request);

class UpdateServiceImpl final : public UpdateServiceBase {
 public:
  // Everything must outlive the service.
  struct Deps {
    const catalog::CatalogView* catalog = nullptr;
    const shard::DeviceCallHandler* calls = nullptr;
    const sharding::ShardRouter* router = nullptr;
    GroupMetadataCache* metadata = nullptr;
    PackageCache* packages = nullptr;
    UpdateResults* results = nullptr;
    WorkerPool* worker = nullptr;
    RateLimiter* report_limiter = nullptr;
    const Clock* clock = nullptr;
  };
  explicit UpdateServiceImpl(Deps deps);
  ~UpdateServiceImpl() override;

  grpc::ServerUnaryReactor* GetUpdates(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  // GetUpdatesBatch: gateways only (DeviceCallHandler::RequireGateway);
  // each item is identified by its own session token
  // (DeviceCallHandler::IdentifyGatewayItem, the single call's checks),
  // routed (redirect_address) and answered from the metadata cache; items
  // whose metadata needs a package read are answered from the update
  // worker, never on the callback thread.
  grpc::ServerUnaryReactor* GetUpdatesBatch(
      grpc::CallbackServerContext* context,
      const v1::GetUpdatesBatchRequest* request,
      v1::GetUpdatesBatchResponse* response) override;
  grpc::ServerWriteReactor<v1::ImageChunk>* DownloadImage(
      grpc::CallbackServerContext* context,
      const v1::DownloadImageRequest* request) override;
  grpc::ServerUnaryReactor* ReportUpdateResult(
      grpc::CallbackServerContext* context,
      const v1::ReportUpdateResultRequest* request,
      v1::ReportUpdateResultResponse* response) override;

  // VariantFor: the caller's group variant, from its authenticated identity
  // and the catalog's device record.
  absl::StatusOr<GroupVariant> VariantFor(const shard::DeviceCall& call) const;
  // VariantOf: the same from `device`, the caller's catalog record.
  absl::StatusOr<GroupVariant> VariantOf(const shard::DeviceCall& call,
                                         const v1::Device& device) const;
  const Deps& deps() const { return d_; }

 private:
  class ReportQueue;
  const Deps d_;
  const std::unique_ptr<ReportQueue> reports_;
};

// Result reports waiting for the update worker's next write batch at most.
inline constexpr size_t kMaxQueuedReports = 4096;

// ValidImageId: 64 lowercase hex characters (Image.id).
bool ValidImageId(absl::string_view id);

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_UPDATE_SERVICE_H_
