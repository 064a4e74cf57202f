// DeviceContext: the one identity every device-facing handler sees, whichever
// of the two authentication paths (DESIGN.md §5) the call came by:
//  * mTLS with the device's own Sphere-issued certificate (twin process), or
//  * a gateway connection (loadgen) whose calls each carry a session token:
//    a MAC over device id, certificate serial, scope and expiry, issued with
//    the certificate and verifiable by every shard (key derived from the
//    cluster master key).
//
// SessionTokens is immutable after construction and thread-safe.
#ifndef SPHERE_SECURITYSVC_AUTH_DEVICE_CONTEXT_H_
#define SPHERE_SECURITYSVC_AUTH_DEVICE_CONTEXT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "securitysvc/auth/scope.h"

namespace sphere::auth {

struct DeviceContext {
  std::string device_id;
  std::string tenant_id;
  std::string product_id;
  std::string device_group_id;
  Scope scope = Scope::kNone;  // kFull or kUpdateOnly
  std::string certificate_serial;
  absl::Time not_after;
  // The device's ownership epoch when the credential was issued; credentials
  // from an earlier epoch (before a transfer) are void.
  uint32_t ownership_epoch = 0;
  bool update_only() const { return scope == Scope::kUpdateOnly; }
};

// FromCertificate builds the context from a verified device certificate.
// Unauthenticated when the certificate carries no device claims, no scope
// claim (fail closed: a missing scope never means "full") or has expired.
absl::StatusOr<DeviceContext> FromCertificate(
    const crypto::ParsedCertificate& cert, absl::Time now);

// RequireFullScope is what a relying party (appsvc, a vendor cloud) calls
// before serving a device: OK only for scope "full"; PermissionDenied for an
// "update-only" certificate (genuine but outdated software) or any other
// scope.
//
// Example:
//   auto ctx = auth::FromCertificate(*parsed_leaf, clock->Now());
//   if (!ctx.ok()) return ctx.status();
//   if (auto s = auth::RequireFullScope(*ctx); !s.ok()) return s;
absl::Status RequireFullScope(const DeviceContext& ctx);

// MayAttestFor decides whether the TLS peer with `caller` claims may request
// challenges and submit quotes for `device_id`: a device for itself (its
// manufacturing or device certificate names it) or a gateway multiplexing
// devices. Everyone else (operators, other devices) gets PermissionDenied,
// so no one can burn another device's challenge capacity or probe it.
absl::Status MayAttestFor(const crypto::DeviceClaims& caller,
                          absl::string_view device_id);

class SessionTokens {
 public:
  // `key` is a 32-byte MAC key shared by all shards.
  explicit SessionTokens(std::string key) : key_(std::move(key)) {}
  std::string Issue(const DeviceContext& ctx) const;
  // Verify checks the MAC and expiry; Unauthenticated (naming which) when
  // the token is forged, tampered, malformed or expired.
  absl::StatusOr<DeviceContext> Verify(absl::string_view token,
                                       absl::Time now) const;

 private:
  const std::string key_;
};

}  // namespace sphere::auth

#endif  // SPHERE_SECURITYSVC_AUTH_DEVICE_CONTEXT_H_
