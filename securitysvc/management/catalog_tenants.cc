// Catalog: tenants (each with its own CA), operator credentials and the
// lookups every other resource starts from (FindTenant, ResolveTenant).
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

absl::StatusOr<v1::Tenant> Catalog::FindTenant(absl::string_view id_or_name) {
  if (auto s = limits::ValidateReference("tenant", id_or_name); !s.ok()) {
    return s;
  }
  auto by_id = GetRecord<v1::Tenant>(store_, kTenants, id_or_name);
  if (!by_id.ok()) return by_id.status();
  if (by_id->has_value()) return **by_id;
  // Names are looked up ignoring case, as they are unique ignoring case.
  absl::StatusOr<std::optional<std::string>> id =
      GetIndex(store_, TenantNameIndex(id_or_name));
  if (!id.ok()) return id.status();
  if (id->has_value()) {
    auto by_name = GetRecord<v1::Tenant>(store_, kTenants, **id);
    if (!by_name.ok()) return by_name.status();
    if (by_name->has_value()) return **by_name;
  }
  return absl::NotFoundError(absl::StrFormat(
      "tenant \"%s\" not found; list tenants with 'spherectl tenant list'",
      id_or_name));
}

absl::StatusOr<v1::Tenant> Catalog::ResolveTenant(const Caller& caller,
                                                  absl::string_view tenant) {
  if (auto s = limits::ValidateReference("tenant", tenant); !s.ok()) return s;
  if (caller.is_tenant()) {
    auto own = GetRecord<v1::Tenant>(store_, kTenants, caller.tenant_id);
    if (!own.ok()) return own.status();
    if (!own->has_value()) {
      return absl::UnauthenticatedError(absl::StrFormat(
          "your credential names tenant id \"%s\", which does not exist; ask "
          "a platform operator for a new credential",
          caller.tenant_id));
    }
    if (auto s = CheckTenantScope(**own, tenant); !s.ok()) return s;
    return **own;
  }
  if (tenant.empty()) {
    return absl::InvalidArgumentError(
        "a tenant is required for platform operators; pass --tenant NAME");
  }
  return FindTenant(tenant);
}

absl::StatusOr<v1::Tenant> Catalog::CreateTenant(const Caller& caller,
                                                 absl::string_view name) {
  if (auto s = Authorize(caller, Op::kCreateTenant); !s.ok()) return s;
  if (auto s = ValidateName("tenant", name); !s.ok()) return s;

  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::optional<std::string>> taken =
      GetIndex(store_, TenantNameIndex(name));
  if (!taken.ok()) return taken.status();
  if (taken->has_value()) {
    auto existing = GetRecord<v1::Tenant>(store_, kTenants, **taken);
    if (!existing.ok()) return existing.status();
    return absl::AlreadyExistsError(absl::StrFormat(
        "tenant \"%s\" already exists (id %s); tenant names are unique "
        "ignoring case",
        existing->has_value() ? (*existing)->name() : std::string(name),
        **taken));
  }

  v1::Tenant tenant;
  tenant.set_id(NewId());
  tenant.set_name(std::string(name));
  crypto::EcPrivateKey ca_key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = absl::StrCat("Sphere Tenant CA ", name);
  spec.organization = std::string(name);
  spec.subject_public_key = ca_key.PublicKey();
  spec.not_before = clock_->Now() - absl::Hours(1);
  spec.not_after = clock_->Now() + options_.tenant_ca_validity;
  spec.usage = crypto::KeyUsage::kCa;
  spec.path_len = 0;
  absl::StatusOr<std::string> cert =
      crypto::IssueCertificate(spec, options_.root_key, options_.root_cert_pem);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> wrapped =
      WrapTenantCaKey(options_.master_key, tenant.id(), ca_key);
  if (!wrapped.ok()) return wrapped.status();
  tenant.set_ca_certificate_pem(*cert);
  tenant.set_wrapped_ca_key(*wrapped);

  Txn txn(revision_);
  v1::WatchEvent* e = txn.Emit();
  tenant.set_create_revision(e->revision());
  *e->mutable_tenant() = tenant;
  txn.Put(kTenants, tenant.id(), tenant);
  // The name index makes the name unique ignoring case, also across
  // management replicas racing on a shared log.
  txn.PutRaw(kIndex, TenantNameIndex(name), tenant.id());
  txn.RequireAbsent(kIndex, TenantNameIndex(name));
  if (auto s = Commit(txn); !s.ok()) return s;
  tenant.clear_wrapped_ca_key();
  return tenant;
}

absl::StatusOr<v1::ListTenantsResponse> Catalog::ListTenants(
    const Caller& caller, const v1::ListTenantsRequest& request) {
  if (auto s = Authorize(caller, Op::kListTenants); !s.ok()) return s;
  // A tenant operator's listing holds its own tenant only: one key.
  const std::string scope = caller.is_tenant() ? caller.tenant_id : "";
  absl::StatusOr<Page> page =
      ParsePage(request.page_size(), request.page_token(), "tenants", scope,
                caller.is_tenant() ? scope : "");
  if (!page.ok()) return page.status();
  v1::ListTenantsResponse out;
  std::string next;
  absl::Status s = ScanPage<v1::Tenant>(
      store_, kTenants, caller.is_tenant() ? scope : "", *page, "tenants",
      scope,
      [&](absl::string_view key, absl::string_view value)
          -> absl::StatusOr<std::optional<v1::Tenant>> {
        if (caller.is_tenant() && key != caller.tenant_id) {
          return std::optional<v1::Tenant>();  // a longer id with that prefix
        }
        auto t = ParseValue<v1::Tenant>(kTenants, key, value);
        if (t.ok() && t->has_value()) StripSecrets(caller, &**t);
        return t;
      },
      out.mutable_tenants(), &next);
  if (!s.ok()) return s;
  out.set_next_page_token(next);
  return out;
}

absl::StatusOr<v1::Tenant> Catalog::GetTenant(const Caller& caller,
                                              absl::string_view tenant) {
  if (auto s = Authorize(caller, Op::kGetTenant); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (t.ok()) StripSecrets(caller, &*t);
  return t;
}

absl::StatusOr<std::string> Catalog::IssueOperatorCredential(
    const Caller& caller, absl::string_view tenant,
    absl::string_view operator_name, absl::string_view public_key) {
  if (auto s = Authorize(caller, Op::kIssueOperatorCredential); !s.ok()) {
    return s;
  }
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  if (auto s = ValidateName("operator", operator_name); !s.ok()) return s;
  if (!IsValidDevicePublicKey(public_key)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "operator public key must be a 65-byte uncompressed P-256 point "
        "(0x04||X||Y); got %d bytes",
        public_key.size()));
  }
  crypto::CertificateSpec spec;
  spec.common_name = absl::StrCat("operator ", operator_name);
  spec.organization = t->name();
  spec.subject_public_key = std::string(public_key);
  spec.not_before = clock_->Now() - absl::Hours(1);
  spec.not_after = clock_->Now() + options_.operator_credential_validity;
  spec.usage = crypto::KeyUsage::kClientAuth;
  spec.claims.tenant_id = t->id();
  return crypto::IssueCertificate(spec, options_.root_key,
                                  options_.root_cert_pem);
}

absl::StatusOr<v1::CaCertificate> Catalog::GetCaCertificate(
    const Caller& caller, absl::string_view tenant) {
  if (auto s = Authorize(caller, Op::kGetCaCertificate); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  v1::CaCertificate out;
  out.set_tenant_ca_pem(t->ca_certificate_pem());
  out.set_root_ca_pem(options_.root_cert_pem);
  return out;
}

}  // namespace sphere::management
