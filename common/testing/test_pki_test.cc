#include "common/testing/test_pki.h"

#include <gtest/gtest.h>

#include "absl/time/clock.h"

namespace sphere::test_support {
namespace {

// The ready-made leaves chain to the root, carry their names and usages, and
// trust the root; Leaf() issues other names and claims on the same root.
TEST(TestPkiTest, LeavesChainToTheRootWithTheirNamesAndUsages) {
  TestPki pki("shard", "gateway");
  auto server = crypto::ParseCertificate(pki.server.cert_pem);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(server->common_name, "shard");
  EXPECT_EQ(server->issuer_common_name, "test root");
  EXPECT_EQ(pki.server.ca_pem, pki.root_pem);
  EXPECT_TRUE(crypto::VerifyChain(pki.client.cert_pem, "", pki.root_pem,
                                  absl::Now(), /*require_client_auth=*/true)
                  .ok());
  // The server certificate is not a client certificate.
  EXPECT_FALSE(crypto::VerifyChain(pki.server.cert_pem, "", pki.root_pem,
                                   absl::Now(), /*require_client_auth=*/true)
                   .ok());
  rpc::TlsFiles mgmt =
      pki.Leaf("mgmt", crypto::KeyUsage::kServerAuth, {"mgmt.sphere.example"});
  auto parsed = crypto::ParseCertificate(mgmt.cert_pem);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->common_name, "mgmt");
  EXPECT_TRUE(crypto::VerifyChain(mgmt.cert_pem, "", pki.root_pem, absl::Now(),
                                  /*require_client_auth=*/false)
                  .ok());
  // Another TestPki is another root: its leaves do not verify here.
  TestPki other;
  EXPECT_FALSE(crypto::VerifyChain(other.client.cert_pem, "", pki.root_pem,
                                   absl::Now(), /*require_client_auth=*/true)
                   .ok());
}

}  // namespace
}  // namespace sphere::test_support
