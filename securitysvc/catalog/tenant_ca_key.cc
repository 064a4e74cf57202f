#include "securitysvc/catalog/tenant_ca_key.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sphere::catalog {
namespace {
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
}  // namespace

std::string TenantCaWrapLabel(absl::string_view tenant_id) {
  return absl::StrCat("sphere-tenant-ca:", tenant_id);
}

absl::StatusOr<std::string> WrapTenantCaKey(absl::string_view master_key,
                                            absl::string_view tenant_id,
                                            const crypto::EcPrivateKey& key) {
  if (master_key.size() != 32) {
    return absl::FailedPreconditionError(
        "master key must be 32 bytes; check the cluster's pki/master.key");
  }
  std::string nonce = crypto::RandomBytes(kNonceBytes);
  absl::StatusOr<std::string> sealed = crypto::AesGcmSeal(
      master_key, nonce, key.scalar(), TenantCaWrapLabel(tenant_id));
  if (!sealed.ok()) return sealed.status();
  return absl::StrCat(nonce, *sealed);
}

absl::StatusOr<crypto::EcPrivateKey> UnwrapTenantCaKey(
    absl::string_view master_key, absl::string_view tenant_id,
    absl::string_view wrapped) {
  if (wrapped.size() < kNonceBytes + kTagBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "wrapped CA key of tenant \"%s\" is truncated", tenant_id));
  }
  absl::StatusOr<std::string> scalar = crypto::AesGcmOpen(
      master_key, wrapped.substr(0, kNonceBytes), wrapped.substr(kNonceBytes),
      TenantCaWrapLabel(tenant_id));
  if (!scalar.ok()) {
    return absl::UnauthenticatedError(absl::StrFormat(
        "cannot unwrap the CA key of tenant \"%s\": %s (wrong cluster master "
        "key or tampered catalog)",
        tenant_id, scalar.status().message()));
  }
  return crypto::EcPrivateKey::FromScalar(*scalar);
}

}  // namespace sphere::catalog
