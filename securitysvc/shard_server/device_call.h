// DeviceCallHandler: the one place a device-facing handler's chores happen
// (like management's Unary helper), so every service plugged into a shard
// treats devices the same way (DESIGN.md §5, §9):
//
//   1. authenticate the caller from either path into one identity:
//      - DeviceAccess::kAttest (GetChallenge, Attest): the device's own
//        manufacturing or device certificate, or a gateway certificate (the
//        quote signed by the device key is the per-device proof);
//      - kDevice / kFullScope (every later service): a DeviceContext from
//        auth::DeviceAuthenticator (device certificate over mTLS, or gateway
//        certificate + session token in metadata), checked against the
//        catalog (known, not revoked, current owner);
//   2. take the device id from the credential; a device_id field in the
//      request is optional and, when set, must equal it (a gateway call
//      must name the device, as the gateway speaks for many);
//   3. check the certificate scope the method needs (kFullScope refuses
//      update-only certificates);
//   4. route: a device owned by another shard gets FAILED_PRECONDITION with
//      the redirect trailers (sharding::ShardRouter); a call that names a
//      catalog revision (UnaryAsyncAtRevision) is routed only once the shard
//      has that revision, by the shard map of that revision;
//   5. run the method, map absl::Status to gRPC, log refusals, count calls by
//      method and code, observe latency.
//
// Example (a unary handler of a plugged-in service):
//   return calls_->Unary(ctx, kGetTargets, req->device_id(),
//       [&](const DeviceCall& call) {
//         return core_->Targets(*call.context, resp);
//       });
//
// Thread-safe; never blocks (UnaryAsync lets a method finish later).
#ifndef SPHERE_SECURITYSVC_SHARD_SERVER_DEVICE_CALL_H_
#define SPHERE_SECURITYSVC_SHARD_SERVER_DEVICE_CALL_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/util/metrics.h"
#include "securitysvc/auth/device_authenticator.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/auth/scope.h"
#include "securitysvc/shard_server/revision_gate.h"
#include "securitysvc/sharding/router.h"

namespace sphere::shard {

// DeviceAccess: which credentials a method accepts.
enum class DeviceAccess {
  kAttest,     // manufacturing/device certificate of the device, or gateway
  kDevice,     // device credential, scope full or update-only
  kFullScope,  // device credential, scope full only
};

// DeviceMethod describes one device-facing RPC. Define each once (static).
struct DeviceMethod {
  DeviceMethod(std::string name, DeviceAccess access,
               absl::string_view latency_metric);
  std::string name;  // metric label, e.g. "get_challenge"
  DeviceAccess access;
  metrics::HistogramMetric* latency;
  std::string ok_labels;  // the call counter's labels for code OK, built once
};

// DeviceCall: the authenticated call, as a method body sees it.
struct DeviceCall {
  std::string device_id;     // from the credential, never the request
  auth::Scope caller_scope;  // the TLS peer's scope (gateway or device)
  std::optional<auth::DeviceContext> context;  // set for kDevice, kFullScope
  // The catalog's device record the authentication checks read (kDevice,
  // kFullScope; empty for kAttest): a method reads it here, not again.
  v1::Device device;
  absl::Time deadline;  // the call's deadline
};

// DeviceIdLimit: device ids are hex SHA-256 (64 characters); a request field
// longer than this is refused before it is compared, logged or echoed.
inline constexpr size_t kMaxDeviceIdBytes = 64;

// IsHexDeviceId: `id` is a device id as services name devices (64 lowercase
// hex characters). The one check every device-facing method shares.
bool IsHexDeviceId(absl::string_view id);

// A batch item's session token (the per-device proof a gateway puts in a
// request field, where a single call puts it in metadata) longer than this
// is refused before it is parsed, logged or echoed.
inline constexpr size_t kMaxSessionTokenBytes = 1024;

// Parsed peer certificates kept for device calls (kDevice, kFullScope), one
// per distinct certificate; the cache is emptied when it holds this many.
inline constexpr size_t kMaxCachedPeerCertificates = 4096;

class DeviceCallHandler {
 public:
  // Finish ends a call started with UnaryAsync; call it exactly once.
  using Finish = std::function<void(const absl::Status&)>;

  // `authenticator` and `router` must outlive the handler.
  DeviceCallHandler(const auth::DeviceAuthenticator* authenticator,
                    const sharding::ShardRouter* router)
      : authenticator_(authenticator), router_(router) {}

  // Unary: steps 1-5, `fn`'s status finishes the call.
  grpc::ServerUnaryReactor* Unary(
      grpc::CallbackServerContext* context, const DeviceMethod& method,
      absl::string_view request_device_id,
      const std::function<absl::Status(const DeviceCall&)>& fn) const;

  // UnaryAsync: the same, but `fn` finishes the call through `finish`, now
  // or later from another thread (never blocking the callback thread).
  grpc::ServerUnaryReactor* UnaryAsync(
      grpc::CallbackServerContext* context, const DeviceMethod& method,
      absl::string_view request_device_id,
      const std::function<void(const DeviceCall&, Finish)>& fn) const;

  // UnaryAsyncAtRevision: UnaryAsync for a call that names a catalog
  // revision (read-your-writes, e.g. GetChallengeRequest.min_catalog_revision;
  // 0 = none). The order:
  //   steps 1-3;
  //   when the shard's catalog has the revision: step 4 (route), `admit`,
  //   `fn`, as UnaryAsync;
  //   when it is behind: `admit(call, /*behind=*/true)` first (cheap
  //   refusals that must never wait or park, e.g. revocation and rate
  //   limits; a device unknown to the old catalog may be in the new one),
  //   then the wait on `gate` (never on the callback thread; bounded by the
  //   gate: UNAVAILABLE "catalog at revision R, requested M ...; retry" when
  //   it is not reached), THEN step 4 by the shard map of that revision (a
  //   device that moved to this shard at it is answered, not redirected by
  //   the old map), then `fn`.
  // `gate` may be null: a revision ahead of the catalog is then refused at
  // once with UNAVAILABLE.
  using Admit = std::function<absl::Status(const DeviceCall&, bool behind)>;
  grpc::ServerUnaryReactor* UnaryAsyncAtRevision(
      grpc::CallbackServerContext* context, const DeviceMethod& method,
      absl::string_view request_device_id, RevisionGate* gate,
      int64_t min_revision, const Admit& admit,
      const std::function<void(const DeviceCall&, Finish)>& fn) const;

  // RequireGateway: the caller check of the gateways' batch calls: OK for a
  // gateway certificate, UNAUTHENTICATED without a client certificate,
  // PERMISSION_DENIED for any other credential (a device acts only for
  // itself, through the single calls).
  absl::Status RequireGateway(const grpc::ServerContextBase& context) const;
  // RedirectAddress: the owning shard's address when another shard owns the
  // device, nullopt when this one does (a batch answers each item with it).
  std::optional<std::string> RedirectAddress(absl::string_view device_id) const;

  // Identify: steps 1-3 only (exposed for tests and streaming handlers).
  absl::StatusOr<DeviceCall> Identify(
      const grpc::ServerContextBase& context, DeviceAccess access,
      absl::string_view request_device_id) const;

  // IdentifyGatewayItem: steps 1-3 for one item of a gateway batch call
  // (kDevice or kFullScope): the item's `session_token` is its per-device
  // proof, checked exactly as the single call's metadata token, and
  // `device_id` (required, 64 lowercase hex) must be the token's device.
  // Call RequireGateway once per call first; step 4 is RedirectAddress.
  absl::StatusOr<DeviceCall> IdentifyGatewayItem(
      const grpc::ServerContextBase& context, DeviceAccess access,
      absl::string_view session_token, absl::string_view device_id) const;

 private:
  using FinishGrpc = std::function<void(const grpc::Status&)>;
  // RouteAndRun: step 4, then `admit` (may be null), then `fn` (step 5).
  void RouteAndRun(grpc::CallbackServerContext* context,
                   const DeviceMethod& method, const DeviceCall& call,
                   const FinishGrpc& finish_grpc, const Admit& admit,
                   const std::function<void(const DeviceCall&, Finish)>& fn)
      const;

  // FromToken: steps 1-3 of the device-credential path, given the token
  // (metadata or a batch item's field; empty = none).
  absl::StatusOr<DeviceCall> FromToken(const grpc::ServerContextBase& context,
                                       DeviceAccess access,
                                       absl::string_view token,
                                       absl::string_view request_device_id,
                                       DeviceCall call) const;
  const auth::DeviceAuthenticator* const authenticator_;
  const sharding::ShardRouter* const router_;
};

}  // namespace sphere::shard

#endif  // SPHERE_SECURITYSVC_SHARD_SERVER_DEVICE_CALL_H_
