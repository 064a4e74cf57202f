#include "common/rpc/test_pki.h"

#include <utility>

#include "absl/time/clock.h"

namespace sphere::rpc {

TestPki::TestPki() : root_key(crypto::EcPrivateKey::Generate()) {
  crypto::CertificateSpec root;
  root.common_name = "test root";
  root.subject_public_key = root_key.PublicKey();
  root.not_before = absl::Now() - absl::Hours(1);
  root.not_after = absl::Now() + absl::Hours(1);
  root.usage = crypto::KeyUsage::kCa;
  root_pem = *crypto::IssueCertificate(root, root_key, "");
  server = Leaf("server", crypto::KeyUsage::kServerAuth);
  client = Leaf("client", crypto::KeyUsage::kClientAuth);
}

TlsFiles TestPki::Leaf(const std::string& cn, crypto::KeyUsage usage,
                       std::vector<std::string> dns_sans,
                       std::vector<std::string> ip_sans) const {
  auto key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = cn;
  spec.subject_public_key = key.PublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(1);
  spec.usage = usage;
  spec.dns_sans = std::move(dns_sans);
  spec.ip_sans = std::move(ip_sans);
  return {*crypto::IssueCertificate(spec, root_key, root_pem), key.ToPem(),
          root_pem};
}

}  // namespace sphere::rpc
