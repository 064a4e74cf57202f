// Scope: what a Sphere credential is for, as one enum instead of strings.
//
// Certificates carry the scope as the URI SAN "urn:sphere:scope:<name>"
// (crypto::DeviceClaims::scope holds <name>); ParseScope / ScopeName are the
// only places that know the spelling. An absent or unknown name parses to
// kNone / kUnknown, and neither grants anything (fail closed).
//
// Example:
//   if (ParseScope(peer.claims().scope) == Scope::kGateway) { ... }
#ifndef SPHERE_SECURITYSVC_AUTH_SCOPE_H_
#define SPHERE_SECURITYSVC_AUTH_SCOPE_H_

#include "absl/strings/string_view.h"

namespace sphere::auth {

enum class Scope {
  kNone,              // no scope claim
  kUnknown,           // a scope name this build does not know
  kManufacturing,     // a device's manufacturing identity (attest only)
  kFull,              // device certificate: every device-facing service
  kUpdateOnly,        // genuine but outdated device: update service only
  kGateway,           // multiplexes devices (each call carries device proof)
  kPlatformOperator,  // the platform operator (management)
  kShard,             // a shard calling management
};

// ParseScope maps a claim value to the enum ("" -> kNone, unknown ->
// kUnknown).
Scope ParseScope(absl::string_view name);
// ScopeName is the claim value for `scope` ("" for kNone and kUnknown).
absl::string_view ScopeName(Scope scope);
// IsDeviceScope: a credential naming one device (manufacturing, full or
// update-only).
bool IsDeviceScope(Scope scope);

}  // namespace sphere::auth

#endif  // SPHERE_SECURITYSVC_AUTH_SCOPE_H_
