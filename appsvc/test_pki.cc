#include "appsvc/test_pki.h"

#include <gtest/gtest.h>

namespace contoso::appsvc {

namespace crypto = sphere::crypto;
using sphere::v1::WatchEvent;

WatchEvent Snap(int64_t revision) {
  WatchEvent e;
  e.set_revision(revision);
  e.set_snapshot(true);
  return e;
}

TestPki::TestPki(const sphere::Clock* clock) : clock_(clock) {
  root_pem_ = Ca("Sphere platform root", root_key_, root_key_, "");
  tenant_pem_ = Ca("Contoso tenant CA", tenant_key_, root_key_, root_pem_);
  WatchEvent t = Snap(revision_);
  t.mutable_tenant()->set_id(kTenantId);
  t.mutable_tenant()->set_name("Contoso");
  registry_.Apply(t);
  WatchEvent p = Snap(revision_);
  p.mutable_product()->set_id(kProductId);
  p.mutable_product()->set_tenant_id(kTenantId);
  p.mutable_product()->set_name("DW100");
  registry_.Apply(p);
  WatchEvent end = Snap(revision_);
  end.set_snapshot_end(true);
  registry_.Apply(end);
  EXPECT_TRUE(registry_.synced());
}

std::string TestPki::Issue(const std::string& cn,
                           const crypto::EcPrivateKey& key,
                           crypto::KeyUsage usage,
                           const crypto::DeviceClaims& claims,
                           const crypto::EcPrivateKey& issuer,
                           const std::string& issuer_pem,
                           absl::Duration lifetime) const {
  crypto::CertificateSpec s;
  s.common_name = cn;
  s.subject_public_key = key.PublicKey();
  s.not_before = clock_->Now() - absl::Hours(1);
  s.not_after = clock_->Now() + lifetime;
  s.usage = usage;
  s.claims = claims;
  if (usage == crypto::KeyUsage::kServerAuth) {
    s.dns_sans = {"localhost"};
    s.ip_sans = {"127.0.0.1"};
  }
  auto pem = crypto::IssueCertificate(s, issuer, issuer_pem);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : "";
}

std::string TestPki::Ca(const std::string& cn, const crypto::EcPrivateKey& key,
                        const crypto::EcPrivateKey& issuer,
                        const std::string& issuer_pem) const {
  return Issue(cn, key, crypto::KeyUsage::kCa, {}, issuer, issuer_pem);
}

TestDevice TestPki::Device(const std::string& scope, bool add_to_registry) {
  TestDevice d;
  d.id = crypto::HexEncode(crypto::Sha256(d.key.PublicKey()));
  crypto::CertificateSpec s;
  s.common_name = d.id;
  s.subject_public_key = d.key.PublicKey();
  s.not_before = clock_->Now() - absl::Minutes(1);
  s.not_after = clock_->Now() + absl::Hours(24);
  s.usage = crypto::KeyUsage::kClientAuth;
  s.claims.device_id = d.id;
  s.claims.tenant_id = kTenantId;
  s.claims.product_id = kProductId;
  s.claims.scope = scope;
  s.claims.epoch = "1";
  auto pem = crypto::IssueCertificate(s, tenant_key_, tenant_pem_);
  EXPECT_TRUE(pem.ok()) << pem.status();
  d.chain = (pem.ok() ? *pem : "") + tenant_pem_;
  if (add_to_registry) {
    WatchEvent e;
    e.set_revision(++revision_);
    e.mutable_device()->set_id(d.id);
    e.mutable_device()->set_tenant_id(kTenantId);
    e.mutable_device()->set_product_id(kProductId);
    e.mutable_device()->set_state(sphere::v1::CLAIMED);
    e.mutable_device()->set_ownership_epoch(1);
    registry_.Apply(e);
  }
  return d;
}

void TestPki::Revoke(const TestDevice& d) {
  WatchEvent e;
  e.set_revision(++revision_);
  e.set_revoked_device_id(d.id);
  registry_.Apply(e);
}

}  // namespace contoso::appsvc
