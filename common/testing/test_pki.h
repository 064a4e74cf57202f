// TestPki is a throw-away certificate authority for tests that run gRPC with
// mutual TLS in one process: a self-signed root and, ready-made, a server
// certificate (serverAuth) and a client certificate (clientAuth), both for
// localhost and 127.0.0.1, valid from an hour ago for a day. Leaf() issues
// more (another name, other SANs, device claims).
//
// Example:
//   TestPki pki;                       // CNs "server" and "client"
//   rpc::ServerOptions options;
//   options.tls = pki.server;
//   ...
//   auto channel = rpc::NewChannel(runner.address(), pki.client);
//   rpc::TlsFiles mgmt = pki.Leaf("mgmt", crypto::KeyUsage::kServerAuth,
//                                 {"mgmt.sphere.example"});
//
// Not thread-safe while constructed; the fields are plain values afterwards.
// Test-only: keys are generated per instance and never stored.
#ifndef SPHERE_COMMON_TESTING_TEST_PKI_H_
#define SPHERE_COMMON_TESTING_TEST_PKI_H_

#include <string>
#include <vector>

#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"

namespace sphere::test_support {

class TestPki {
 public:
  // The root's CN is "test root"; the two ready-made leaves carry
  // `server_cn` and `client_cn` (servers that authorize callers by name
  // need the name they expect).
  explicit TestPki(const std::string& server_cn = "server",
                   const std::string& client_cn = "client");

  // Leaf issues a certificate for `cn` with `usage`, signed by the root,
  // for `dns_sans` and 127.0.0.1, with `claims` as URI SANs when non-empty.
  // The returned TlsFiles trust the root (ca_pem).
  rpc::TlsFiles Leaf(const std::string& cn, crypto::KeyUsage usage,
                     std::vector<std::string> dns_sans = {"localhost"},
                     crypto::DeviceClaims claims = {}) const;

  crypto::EcPrivateKey root_key;
  std::string root_pem;
  rpc::TlsFiles server;  // serverAuth, CN server_cn
  rpc::TlsFiles client;  // clientAuth, CN client_cn
};

}  // namespace sphere::test_support

#endif  // SPHERE_COMMON_TESTING_TEST_PKI_H_
