#include "securitysvc/pki/pki.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "common/crypto/crypto.h"

namespace sphere::pki {
namespace {

std::string TempDir(const std::string& name) {
  const char* tmp = getenv("TEST_TMPDIR");
  return std::string(tmp ? tmp : "/tmp") + "/" + name;
}

TEST(PkiTest, BootstrapIsIdempotentAndChainsToTheRoot) {
  const std::string dir = TempDir("pki-idem");
  auto first = Bootstrap(dir);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = Bootstrap(dir);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->root_pem, second->root_pem);
  EXPECT_EQ(first->master_key, second->master_key);
  for (const char* name : {"server", "operator", "shard", "gateway"}) {
    auto tls = second->TlsFor(name);
    ASSERT_TRUE(tls.ok()) << name << ": " << tls.status();
    EXPECT_TRUE(crypto::VerifyChain(tls->cert_pem, "", second->root_pem,
                                    absl::Now(), false)
                    .ok())
        << name;
  }
}

TEST(PkiTest, CredentialsCarryExactlyTheirOwnScope) {
  auto pki = Bootstrap(TempDir("pki-scope"));
  ASSERT_TRUE(pki.ok());
  auto scope_of = [&](const char* name) {
    auto tls = pki->TlsFor(name);
    EXPECT_TRUE(tls.ok());
    auto cert = crypto::ParseCertificate(tls->cert_pem);
    EXPECT_TRUE(cert.ok());
    return cert->claims;
  };
  // The service certificate is a server identity only: holding its key must
  // not let anyone act as a shard, an operator or a gateway.
  auto server = scope_of("server");
  EXPECT_TRUE(server.empty());
  auto server_cert = crypto::ParseCertificate(pki->TlsFor("server")->cert_pem);
  EXPECT_TRUE(server_cert->server_auth);
  EXPECT_FALSE(server_cert->client_auth);
  EXPECT_EQ(scope_of("operator").scope, "platform-operator");
  EXPECT_EQ(scope_of("shard").scope, "shard");
  EXPECT_EQ(scope_of("gateway").scope, "gateway");
}

TEST(PkiTest, LoadWithoutBootstrapSaysHowToStart) {
  auto r = Load(TempDir("pki-none"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("local_cluster"), std::string::npos);
}

}  // namespace
}  // namespace sphere::pki
