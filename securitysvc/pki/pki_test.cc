#include "securitysvc/pki/pki.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>

#include "common/crypto/crypto.h"
#include "common/util/file.h"

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

TEST(PkiTest, BootstrapKeepsPkiPrivate) {
  const std::string dir = TempDir("pki-perms");
  auto pki = Bootstrap(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  struct stat st;
  ASSERT_EQ(stat(pki->dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const char* key : {"master.key", "root.key", "server.key"}) {
    ASSERT_EQ(stat(pki->Path(key).c_str(), &st), 0) << key;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
  }
}

TEST(PkiTest, Attack_WorldReadableMasterKeyIsRefused) {
  const std::string dir = TempDir("pki-world");
  auto pki = Bootstrap(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  const std::string path = pki->Path("master.key");
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  auto loaded = Load(dir);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(loaded.status().message().find("chmod 600"), std::string::npos)
      << loaded.status();
  EXPECT_NE(loaded.status().message().find("read"), std::string::npos);
  // Nothing changed: the key is still there, byte for byte, and loads once
  // the mode is fixed.
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  auto fixed = Load(dir);
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(fixed->master_key, pki->master_key);
}

TEST(PkiTest, Attack_GroupWritableKeyFileIsRefused) {
  const std::string dir = TempDir("pki-groupw");
  auto pki = Bootstrap(dir);
  ASSERT_TRUE(pki.ok());
  ASSERT_EQ(chmod(pki->Path("root.key").c_str(), 0620), 0);
  auto loaded = Load(dir);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(loaded.status().message().find("root.key"), std::string::npos);
}

TEST(PkiTest, MasterKeyFromFileOutsideTheStateDirectory) {
  const std::string dir = TempDir("pki-extfile");
  const std::string key_dir = TempDir("pki-extfile-keys");
  ASSERT_EQ(
      system(
          ("rm -rf " + dir + " " + key_dir + "; mkdir -p " + key_dir).c_str()),
      0);
  MasterKeySource source{key_dir + "/master.key", ""};
  auto pki = Bootstrap(dir, source);
  ASSERT_TRUE(pki.ok()) << pki.status();
  struct stat st;
  EXPECT_NE(stat((dir + "/pki/master.key").c_str(), &st), 0)
      << "no key may be written next to the data";
  ASSERT_EQ(stat(source.file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = Load(dir, source);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->master_key, pki->master_key);
  EXPECT_NE(loaded->master_key_origin.find(source.file), std::string::npos);
  // Without the source the key is not found, and the error says how to
  // point at it.
  auto missing = Load(dir);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("--master-key-file"),
            std::string::npos);
}

TEST(PkiTest, MasterKeyFromEnvironmentAsHex) {
  const std::string dir = TempDir("pki-env");
  ASSERT_EQ(setenv("SPHERE_TEST_MASTER_KEY", std::string(64, 'a').c_str(), 1),
            0);
  auto pki = Bootstrap(dir, {"", "SPHERE_TEST_MASTER_KEY"});
  ASSERT_TRUE(pki.ok()) << pki.status();
  EXPECT_EQ(pki->master_key, std::string(32, '\xaa'));
  EXPECT_EQ(pki->master_key_origin,
            "environment variable SPHERE_TEST_MASTER_KEY");
  struct stat st;
  EXPECT_NE(stat((dir + "/pki/master.key").c_str(), &st), 0);
  unsetenv("SPHERE_TEST_MASTER_KEY");
  auto unset = Load(dir, {"", "SPHERE_TEST_MASTER_KEY"});
  EXPECT_EQ(unset.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(unset.status().message().find("is not set"), std::string::npos);
}

TEST(PkiTest, Attack_MalformedMasterKeyIsRefused) {
  const std::string dir = TempDir("pki-badenv");
  ASSERT_EQ(setenv("SPHERE_TEST_BAD_KEY", "not-a-key", 1), 0);
  auto pki = Bootstrap(dir, {"", "SPHERE_TEST_BAD_KEY"});
  EXPECT_EQ(pki.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(pki.status().message().find("64 hex digits"), std::string::npos);
  unsetenv("SPHERE_TEST_BAD_KEY");
}

TEST(PkiTest, SystemdCredentialsDirectoryIsTheDefaultWhenPresent) {
  const std::string dir = TempDir("pki-creds");
  const std::string creds = TempDir("pki-creds-dir");
  ASSERT_EQ(
      system(("rm -rf " + dir + " " + creds + "; mkdir -p " + creds).c_str()),
      0);
  const std::string key(32, '\x11');
  ASSERT_TRUE(util::WriteFile(creds + "/master.key", key, 0400).ok());
  ASSERT_EQ(setenv("CREDENTIALS_DIRECTORY", creds.c_str(), 1), 0);
  auto pki = Bootstrap(dir);
  unsetenv("CREDENTIALS_DIRECTORY");
  ASSERT_TRUE(pki.ok()) << pki.status();
  EXPECT_EQ(pki->master_key, key);
  struct stat st;
  EXPECT_NE(stat((dir + "/pki/master.key").c_str(), &st), 0);
}

TEST(PkiTest, SigningToolsLoadWithoutTheMasterKey) {
  const std::string dir = TempDir("pki-optional");
  const std::string keys = TempDir("pki-optional-keys");
  ASSERT_EQ(
      system(("rm -rf " + dir + " " + keys + "; mkdir -p " + keys).c_str()), 0);
  auto pki = Bootstrap(dir, {keys + "/master.key", ""});
  ASSERT_TRUE(pki.ok()) << pki.status();
  MasterKeySource optional;
  optional.required = false;
  auto loaded = Load(dir, optional);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->master_key.empty());
  EXPECT_EQ(loaded->image_signing_key.PublicKey(),
            pki->image_signing_key.PublicKey());
  // A loose key that is found is still refused.
  ASSERT_EQ(chmod(pki->Path("root.key").c_str(), 0644), 0);
  EXPECT_FALSE(Load(dir, optional).ok());
}

TEST(PkiTest, BothSourcesAtOnceIsAnError) {
  auto r = LoadMasterKey({"/x", "Y"}, TempDir("pki-both"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sphere::pki
