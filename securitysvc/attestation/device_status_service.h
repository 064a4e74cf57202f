// DeviceStatusServiceImpl: operators read the last attestation a shard
// recorded for the devices it owns (protos/attestation.proto,
// DeviceStatusService). Read-only; hosted by the attestation plug-in, which
// owns the records. Per-device state stays on its shard and is never
// written to management's catalog (DESIGN.md §4, §9).
//
// Access (IdentifyStatusReader): an operator certificate issued by the
// platform root. A platform operator reads every device; a tenant operator
// only its tenant's (others are answered exactly as unknown ids). Device,
// manufacturing, gateway and shard credentials are refused.
//
// Threading: the callback thread only identifies the caller; the store reads
// (GetDeviceStatus: at most kMaxDeviceStatusIds Gets; GetDeviceHistory: two
// bounded prefix scans of at most 64 and 32 entries) run on the service's own
// bounded WorkerPool, which finishes the call. A full queue, or a reader
// (one tenant, or the platform operators) already holding its share of it,
// is answered RESOURCE_EXHAUSTED at once, before anything is read.
// Thread-safe.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_DEVICE_STATUS_SERVICE_H_
#define SPHERE_SECURITYSVC_ATTESTATION_DEVICE_STATUS_SERVICE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/crypto/crypto.h"
#include "common/util/worker_pool.h"
#include "protos/attestation.grpc.pb.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/sharding/router.h"

namespace sphere::attestation {

// Most device ids one GetDeviceStatus call may name.
inline constexpr int kMaxDeviceStatusIds = 500;

// StatusReader: who may read which devices' status.
struct StatusReader {
  bool platform = false;  // every device
  std::string tenant_id;  // else: only this tenant's devices
  bool MaySee(const v1::Device& device) const {
    return platform || (!tenant_id.empty() && device.tenant_id() == tenant_id);
  }
};

// IdentifyStatusReader maps a verified peer certificate to a reader, or
// PERMISSION_DENIED (not issued by the root named `root_subject_line`, a
// device/manufacturing/gateway/shard credential, or no operator claim).
absl::StatusOr<StatusReader> IdentifyStatusReader(
    const crypto::ParsedCertificate& cert, absl::string_view root_subject_line);

// DeviceStatusExtension: other plug-ins add what they keep per device
// (the update plug-in: the last update result) to a device's status. Called
// for every device answered; must not block (memory or one store read).
using DeviceStatusExtension =
    std::function<void(absl::string_view device_id, v1::DeviceStatus* status)>;

// DeviceHistoryExtension: other plug-ins add their per-device history (the
// update plug-in: the last update results) to a GetDeviceHistory answer, in
// any order. Must not block (one bounded store scan).
using DeviceHistoryExtension = std::function<void(
    absl::string_view device_id, std::vector<v1::DeviceHistoryEntry>* out)>;

// Page sizes of GetDeviceHistory.
inline constexpr int kDefaultHistoryPageSize = 32;
inline constexpr int kMaxHistoryPageSize = 64;

// ReadDeviceHistory answers GetDeviceHistory for `reader` (the whole RPC
// minus transport); errors as documented in protos/attestation.proto.
absl::StatusOr<v1::GetDeviceHistoryResponse> ReadDeviceHistory(
    const StatusReader& reader, const v1::GetDeviceHistoryRequest& request,
    Attestor* attestor, const catalog::CatalogView* catalog,
    const sharding::ShardRouter* router,
    const DeviceHistoryExtension& extension = nullptr);

// ReadDeviceStatus answers a request for `reader` (the whole RPC minus
// transport): INVALID_ARGUMENT for no ids, more than kMaxDeviceStatusIds or
// a malformed id; UNAVAILABLE while the catalog is not synced.
absl::StatusOr<v1::GetDeviceStatusResponse> ReadDeviceStatus(
    const StatusReader& reader, const v1::GetDeviceStatusRequest& request,
    Attestor* attestor, const catalog::CatalogView* catalog,
    const sharding::ShardRouter* router,
    const DeviceStatusExtension& extension = nullptr);

class DeviceStatusServiceImpl final
    : public v1::DeviceStatusService::CallbackService {
 public:
  // The pool the reads run on. Each queued call holds its request (at most
  // kMaxDeviceStatusIds ids), so max_queue bounds the memory waiting.
  static WorkerPool::Options DefaultReadPool() {
    WorkerPool::Options o;
    o.threads = 2;
    o.max_queue = 256;
    o.max_per_key = 32;  // per reader: a tenant, or the platform operators
    return o;
  }

  // All pointers must outlive the service; `router` may be null (this
  // shard owns every device).
  DeviceStatusServiceImpl(Attestor* attestor,
                          const catalog::CatalogView* catalog,
                          const sharding::ShardRouter* router,
                          std::string root_subject_line,
                          DeviceStatusExtension extension = nullptr,
                          DeviceHistoryExtension history_extension = nullptr,
                          WorkerPool::Options read_pool = DefaultReadPool())
      : attestor_(attestor),
        catalog_(catalog),
        router_(router),
        root_subject_line_(std::move(root_subject_line)),
        extension_(std::move(extension)),
        history_extension_(std::move(history_extension)),
        reads_(read_pool) {}

  grpc::ServerUnaryReactor* GetDeviceStatus(
      grpc::CallbackServerContext* context,
      const v1::GetDeviceStatusRequest* request,
      v1::GetDeviceStatusResponse* response) override;
  grpc::ServerUnaryReactor* GetDeviceHistory(
      grpc::CallbackServerContext* context,
      const v1::GetDeviceHistoryRequest* request,
      v1::GetDeviceHistoryResponse* response) override;

  // Stop answers every queued read, then refuses new ones (RESOURCE_EXHAUSTED).
  // Call once the server no longer serves. Idempotent.
  void Stop() { reads_.Stop(); }

 private:
  Attestor* const attestor_;
  const catalog::CatalogView* const catalog_;
  const sharding::ShardRouter* const router_;
  const std::string root_subject_line_;
  const DeviceStatusExtension extension_;
  const DeviceHistoryExtension history_extension_;
  // Last: destroyed (drained) first, as its tasks use the members above.
  WorkerPool reads_;
};

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_DEVICE_STATUS_SERVICE_H_
