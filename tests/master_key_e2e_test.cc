// Master key from outside the state directory (issue 8, hole 8): a real
// local cluster (local_cluster -> management + shard processes) started with
// --master-key-file or --master-key-env never writes DIR/pki/master.key,
// serves, and keeps its state directory private (0700). A world-readable key
// file is refused at start with a clear error, and nothing is created.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "tests/cluster_fixture.h"
#include "tests/twin_helpers.h"

namespace sphere::testing {
namespace {

int Mode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return st.st_mode & 07777;
}

void ExpectServes(LocalCluster* cluster) {
  auto tenant = cluster->CreateTenant("Contoso");
  EXPECT_TRUE(tenant.ok()) << tenant.status();
  // The shard synced the catalog (it needed the master key to unwrap the
  // tenant CA key) and answers for a device id. GetChallenge asks at the
  // current catalog revision and retries while the shard says its catalog
  // is catching up (a bare call failed when the shard had not applied the
  // tenant within the revision gate's 5 s on a loaded machine).
  v1::GetChallengeResponse resp;
  grpc::Status st = GetChallenge(cluster, 0, std::string(64, 'a'), &resp);
  // Unknown device: a specific answer from a live, synced shard.
  EXPECT_NE(st.error_code(), grpc::StatusCode::UNAVAILABLE)
      << st.error_message();
  EXPECT_NE(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST(MasterKeyE2ETest, KeyFileOutsideTheStateDirectory) {
  const std::string keys = TestTmpDir("extkey-keys");
  ASSERT_EQ(
      system(
          absl::StrCat("rm -rf '", keys, "' && mkdir -p '", keys, "'").c_str()),
      0);
  const std::string key_file = keys + "/master.key";
  auto c = LocalCluster::Start("extkey", 1,
                               {absl::StrCat("--master-key-file=", key_file)});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Mode(key_file), 0600);
  EXPECT_EQ(Mode((*c)->dir() + "/pki/master.key"), -1)
      << "the master key must not be written next to the data";
  EXPECT_EQ(Mode((*c)->dir()), 0700);
  EXPECT_EQ(Mode((*c)->dir() + "/pki"), 0700);
  EXPECT_EQ(Mode((*c)->dir() + "/management"), 0700);
  EXPECT_EQ(Mode((*c)->dir() + "/shards/shard-0"), 0700);
  ExpectServes(c->get());
  EXPECT_TRUE((*c)->Stop().ok());
}

TEST(MasterKeyE2ETest, KeyFromEnvironmentVariable) {
  ASSERT_EQ(setenv("SPHERE_E2E_MASTER_KEY",
                   "00112233445566778899aabbccddeeff"
                   "00112233445566778899aabbccddeeff",
                   1),
            0);
  auto c = LocalCluster::Start("envkey", 1,
                               {"--master-key-env=SPHERE_E2E_MASTER_KEY"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Mode((*c)->dir() + "/pki/master.key"), -1);
  ExpectServes(c->get());
  EXPECT_TRUE((*c)->Stop().ok());
  unsetenv("SPHERE_E2E_MASTER_KEY");
}

TEST(MasterKeyE2ETest, Attack_WorldReadableKeyFileIsRefusedAtStart) {
  const std::string keys = TestTmpDir("loosekey-keys");
  ASSERT_EQ(
      system(
          absl::StrCat("rm -rf '", keys, "' && mkdir -p '", keys, "'").c_str()),
      0);
  const std::string key_file = keys + "/master.key";
  ASSERT_TRUE(util::WriteFile(key_file, std::string(32, 'k'), 0644).ok());
  const std::string dir = TestTmpDir("loosekey");
  ASSERT_EQ(system(absl::StrCat("rm -rf '", dir, "'").c_str()), 0);
  auto [code, out] = RunCommand(
      {BinaryPath("securitysvc/local_cluster"), "--state_dir=" + dir,
       "--shards=1", "--master-key-file=" + key_file, "--exit_when_ready"});
  EXPECT_NE(code, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "chmod 600")) << out;
  // Nothing was started or changed: no database, the key as it was.
  EXPECT_EQ(Mode(dir + "/management"), -1);
  EXPECT_EQ(*util::ReadFile(key_file), std::string(32, 'k'));
}

}  // namespace
}  // namespace sphere::testing
