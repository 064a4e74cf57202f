// TestPki: a throw-away root and leaves minted in memory, for tests that need
// real TLS (server certificates naming a given host, client certificates).
//
// Example:
//   rpc::TestPki pki;
//   options.tls = pki.Leaf("shard-0", crypto::KeyUsage::kServerAuth,
//                          {"shard-0.sphere.example"});
//   NewChannel(address, pki.client, "shard-0.sphere.example");
#ifndef SPHERE_COMMON_RPC_TEST_PKI_H_
#define SPHERE_COMMON_RPC_TEST_PKI_H_

#include <string>
#include <vector>

#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"

namespace sphere::rpc {

struct TestPki {
  TestPki();
  // Leaf issues a certificate (and key) for `cn` under the root, valid for an
  // hour either side of now, naming `dns_sans` and `ip_sans`; ca_pem is the
  // root.
  TlsFiles Leaf(const std::string& cn, crypto::KeyUsage usage,
                std::vector<std::string> dns_sans = {kLocalServerName},
                std::vector<std::string> ip_sans = {"127.0.0.1"}) const;

  crypto::EcPrivateKey root_key;
  std::string root_pem;
  TlsFiles server;  // server certificate for localhost / 127.0.0.1
  TlsFiles client;  // client certificate
};

}  // namespace sphere::rpc

#endif  // SPHERE_COMMON_RPC_TEST_PKI_H_
