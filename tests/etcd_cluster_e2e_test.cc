// local_cluster --catalog etcd end to end: a real three-member etcd, two
// management replicas and two shards; spherectl (a fresh process per call,
// reading cluster.json) keeps working when either management replica is
// killed with SIGKILL, and both replicas serve the same catalog. Skipped with
// a message when /usr/bin/etcd is absent.
#include <signal.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"

namespace sphere::testing {
namespace {

TEST(EtcdClusterE2eTest, Fault_KillEitherManagementReplicaSpherectlCarriesOn) {
  if (access("/usr/bin/etcd", X_OK) != 0) {
    GTEST_SKIP() << "/usr/bin/etcd is absent (install etcd-server with "
                    "./sphere deps); local_cluster --catalog etcd not tested";
  }
  auto cluster = LocalCluster::Start(
      "etcd_e2e", 2,
      {"--catalog=etcd", "--etcd_members=3", "--management_replicas=2"});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const auto& config = (*cluster)->config();
  EXPECT_TRUE(absl::StartsWith(config.management, "ipv4:"))
      << config.management;
  ASSERT_EQ(config.management_replicas.size(), 2u);
  ASSERT_EQ(config.etcd.size(), 3u);
  ASSERT_EQ(config.shards.size(), 2u);
  const std::string file = (*cluster)->cluster_file();

  auto created = Spherectl(file, {"tenant", "create", "--name", "Contoso"});
  ASSERT_EQ(created.first, 0) << created.second;

  // Kill the first replica: the next call goes to the second.
  auto first = (*cluster)->ChildPid("management");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(kill(*first, SIGKILL), 0);
  auto second_create =
      Spherectl(file, {"tenant", "create", "--name", "Fabrikam"});
  ASSERT_EQ(second_create.first, 0) << second_create.second;

  // Kill the second replica too (the first is being restarted by the
  // supervisor, or already back): still served, nothing lost.
  auto second = (*cluster)->ChildPid("management-1");
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(kill(*second, SIGKILL), 0);
  auto tenants = SpherectlJson(file, "", {"tenant", "list"});
  std::string names = tenants.dump();
  EXPECT_NE(names.find("Contoso"), std::string::npos) << names;
  EXPECT_NE(names.find("Fabrikam"), std::string::npos) << names;

  // A duplicate is refused whichever replica answers: one catalog.
  auto dup = Spherectl(file, {"tenant", "create", "--name", "contoso"});
  EXPECT_NE(dup.first, 0) << dup.second;
  ASSERT_TRUE((*cluster)->Stop().ok());
}

}  // namespace
}  // namespace sphere::testing
