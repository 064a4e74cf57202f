#include "common/testing/test_pki.h"

#include <cstdlib>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sphere::test_support {

TestPki::TestPki(const std::string& server_cn, const std::string& client_cn)
    : root_key(crypto::EcPrivateKey::Generate()) {
  crypto::CertificateSpec root;
  root.common_name = "test root";
  root.subject_public_key = root_key.PublicKey();
  root.not_before = absl::Now() - absl::Hours(1);
  root.not_after = absl::Now() + absl::Hours(24);
  root.usage = crypto::KeyUsage::kCa;
  auto pem = crypto::IssueCertificate(root, root_key, "");
  if (!pem.ok()) std::abort();  // a test environment without working crypto
  root_pem = *std::move(pem);
  server = Leaf(server_cn, crypto::KeyUsage::kServerAuth);
  client = Leaf(client_cn, crypto::KeyUsage::kClientAuth);
}

rpc::TlsFiles TestPki::Leaf(const std::string& cn, crypto::KeyUsage usage,
                            std::vector<std::string> dns_sans,
                            crypto::DeviceClaims claims) const {
  crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = cn;
  spec.subject_public_key = key.PublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24);
  spec.usage = usage;
  spec.dns_sans = std::move(dns_sans);
  spec.ip_sans = {"127.0.0.1"};
  spec.claims = std::move(claims);
  auto pem = crypto::IssueCertificate(spec, root_key, root_pem);
  if (!pem.ok()) std::abort();
  return {*std::move(pem), key.ToPem(), root_pem};
}

}  // namespace sphere::test_support
