// TestPki: a throwaway root CA with a server leaf ("shard", SANs localhost
// and 127.0.0.1) and a client leaf ("gateway"), for client/ tests against
// in-process fake shards over mTLS. Test-only.
#ifndef SPHERE_CLIENT_TEST_PKI_H_
#define SPHERE_CLIENT_TEST_PKI_H_

#include <string>

#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"

namespace sphere::client {

struct TestPki {
  crypto::EcPrivateKey root_key = crypto::EcPrivateKey::Generate();
  std::string root_pem;
  rpc::TlsFiles server, client;

  TestPki() {
    crypto::CertificateSpec root;
    root.common_name = "Test Root";
    root.subject_public_key = root_key.PublicKey();
    root.not_before = absl::Now() - absl::Hours(1);
    root.not_after = absl::Now() + absl::Hours(24);
    root.usage = crypto::KeyUsage::kCa;
    root_pem = *crypto::IssueCertificate(root, root_key, "");
    server = Leaf("shard", crypto::KeyUsage::kServerAuth);
    client = Leaf("gateway", crypto::KeyUsage::kClientAuth);
  }
  rpc::TlsFiles Leaf(const std::string& cn, crypto::KeyUsage usage) {
    auto key = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec spec;
    spec.common_name = cn;
    spec.subject_public_key = key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    spec.usage = usage;
    spec.dns_sans = {"localhost"};
    spec.ip_sans = {"127.0.0.1"};
    rpc::TlsFiles tls;
    tls.cert_pem = *crypto::IssueCertificate(spec, root_key, root_pem);
    tls.key_pem = key.ToPem();
    tls.ca_pem = root_pem;
    return tls;
  }
};

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_TEST_PKI_H_
