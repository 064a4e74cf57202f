// The one owner of the tenant-CA key wrap: management wraps a tenant CA's
// private key under the cluster master key when it creates the tenant, and
// shards unwrap it when the catalog reaches them. Both use these functions,
// so the format (AES-256-GCM, random 12-byte nonce, associated data
// "sphere-tenant-ca:<tenant id>", stored as nonce || ciphertext || tag) is
// defined here and nowhere else.
//
// Example:
//   std::string wrapped = *catalog::WrapTenantCaKey(master, tenant_id, key);
//   crypto::EcPrivateKey back =
//       *catalog::UnwrapTenantCaKey(master, tenant_id, wrapped);
#ifndef SPHERE_SECURITYSVC_CATALOG_TENANT_CA_KEY_H_
#define SPHERE_SECURITYSVC_CATALOG_TENANT_CA_KEY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/crypto/crypto.h"

namespace sphere::catalog {

// TenantCaWrapLabel is the AES-GCM associated data binding a wrapped tenant
// CA key to its tenant: a key wrapped for one tenant never opens as
// another's.
std::string TenantCaWrapLabel(absl::string_view tenant_id);

// WrapTenantCaKey seals `key`'s private scalar under `master_key` (32
// bytes; FailedPrecondition otherwise).
absl::StatusOr<std::string> WrapTenantCaKey(absl::string_view master_key,
                                            absl::string_view tenant_id,
                                            const crypto::EcPrivateKey& key);

// UnwrapTenantCaKey reverses WrapTenantCaKey: InvalidArgument for a
// truncated value, Unauthenticated when it does not open (wrong master key,
// another tenant's wrap, or a tampered record).
absl::StatusOr<crypto::EcPrivateKey> UnwrapTenantCaKey(
    absl::string_view master_key, absl::string_view tenant_id,
    absl::string_view wrapped);

}  // namespace sphere::catalog

#endif  // SPHERE_SECURITYSVC_CATALOG_TENANT_CA_KEY_H_
