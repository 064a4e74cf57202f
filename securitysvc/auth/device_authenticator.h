// DeviceAuthenticator turns an incoming call into the one DeviceContext every
// device-facing handler uses, whichever authentication path it came by
// (DESIGN.md §5):
//
//  * Direct: the TLS peer certificate is a Sphere device certificate (gRPC
//    already verified its chain to the platform root during the handshake).
//  * Gateway: the TLS peer is a gateway (claim urn:sphere:scope:gateway, e.g.
//    loadgen multiplexing many twins) and the call carries the device's
//    session token in metadata "sphere-session-token".
//
// Either way the result is checked against the catalog: the device must still
// exist, not be revoked, and still belong to the tenant named in its
// credential (an ownership transfer invalidates every credential issued under
// the old tenant).
//
// Thread-safe; Authenticate is a pure function of its inputs and the catalog.
#ifndef SPHERE_SECURITYSVC_AUTH_DEVICE_AUTHENTICATOR_H_
#define SPHERE_SECURITYSVC_AUTH_DEVICE_AUTHENTICATOR_H_

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/util/clock.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"

namespace sphere::auth {

inline constexpr char kSessionTokenMetadata[] = "sphere-session-token";

// Session tokens whose MAC verified are remembered in a direct-mapped table
// of this many slots (keyed by the whole token: a slot holds one token and
// a colliding token replaces it), so a gateway's calls for a device skip the
// HMAC and parse after the first. Bounded: at most this many tokens (each
// at most the 1 KiB a client may send) are ever held. The default; a shard
// sets its own with --session_token_slots (securitysvc/shard_server/
// shard_flags.h), at most kMaxVerifiedTokenSlots.
inline constexpr size_t kVerifiedTokenSlots = 8192;
inline constexpr size_t kMaxVerifiedTokenSlots = size_t{1} << 20;

class DeviceAuthenticator {
 public:
  // `token_slots`: the verified-token table's size (>= 1; values outside
  // [1, kMaxVerifiedTokenSlots] are clamped into it).
  DeviceAuthenticator(const SessionTokens* tokens,
                      const catalog::CatalogView* catalog, Clock* clock,
                      size_t token_slots = kVerifiedTokenSlots)
      : tokens_(tokens),
        catalog_(catalog),
        clock_(clock),
        token_slots_(std::clamp<size_t>(token_slots, 1,
                                        kMaxVerifiedTokenSlots)) {}

  size_t token_slots() const { return token_slots_; }

  // Authenticate: `peer` is the verified TLS peer certificate (nullptr when
  // none); `session_token` the metadata value (empty when absent).
  // Unauthenticated when no usable credential was presented,
  // PermissionDenied when the device is revoked or changed owner.
  // `record`, when not null, receives the catalog's device record the
  // checks read (callers that need it read it once, not twice).
  absl::StatusOr<DeviceContext> Authenticate(
      const crypto::ParsedCertificate* peer, absl::string_view session_token,
      v1::Device* record = nullptr) const;

  // FromCall reads both from a gRPC server context.
  absl::StatusOr<DeviceContext> FromCall(
      const grpc::ServerContextBase& context) const;

 private:
  absl::Status CheckCatalog(const DeviceContext& ctx, v1::Device* record) const;
  // VerifyToken: SessionTokens::Verify, remembering verified tokens
  // (token_slots_). Only the MAC and parse are remembered: expiry is
  // compared with `now` on every call, and the catalog checks (revoked,
  // owner, epoch) run on every call after this.
  absl::StatusOr<DeviceContext> VerifyToken(absl::string_view token,
                                            absl::Time now) const;

  struct VerifiedToken {
    std::string token;
    DeviceContext context;
  };
  const SessionTokens* const tokens_;
  const catalog::CatalogView* const catalog_;
  Clock* const clock_;
  const size_t token_slots_;
  mutable absl::Mutex token_mu_;
  // Direct-mapped by hash of the token; allocated on first use.
  mutable std::vector<std::unique_ptr<const VerifiedToken>> verified_
      ABSL_GUARDED_BY(token_mu_);
};

}  // namespace sphere::auth

#endif  // SPHERE_SECURITYSVC_AUTH_DEVICE_AUTHENTICATOR_H_
