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

#include "absl/status/statusor.h"
#include "common/util/clock.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"

namespace sphere::auth {

inline constexpr char kSessionTokenMetadata[] = "sphere-session-token";

class DeviceAuthenticator {
 public:
  DeviceAuthenticator(const SessionTokens* tokens,
                      const catalog::CatalogView* catalog, Clock* clock)
      : tokens_(tokens), catalog_(catalog), clock_(clock) {}

  // Authenticate: `peer` is the verified TLS peer certificate (nullptr when
  // none); `session_token` the metadata value (empty when absent).
  // Unauthenticated when no usable credential was presented,
  // PermissionDenied when the device is revoked or changed owner.
  absl::StatusOr<DeviceContext> Authenticate(
      const crypto::ParsedCertificate* peer,
      absl::string_view session_token) const;

  // FromCall reads both from a gRPC server context.
  absl::StatusOr<DeviceContext> FromCall(
      const grpc::ServerContextBase& context) const;

 private:
  absl::Status CheckCatalog(const DeviceContext& ctx) const;

  const SessionTokens* const tokens_;
  const catalog::CatalogView* const catalog_;
  Clock* const clock_;
};

}  // namespace sphere::auth

#endif  // SPHERE_SECURITYSVC_AUTH_DEVICE_AUTHENTICATOR_H_
