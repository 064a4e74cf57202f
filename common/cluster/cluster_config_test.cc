#include "common/cluster/cluster_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/util/file.h"

namespace sphere::cluster {
namespace {

TEST(ClusterConfigTest, RoundTrips) {
  ClusterConfig c;
  c.state_dir = "/tmp/s";
  c.management = "127.0.0.1:1";
  c.shards = {{"shard-0", "127.0.0.1:2"}, {"shard-1", "127.0.0.1:3"}};
  c.root_ca = "/tmp/s/pki/root.pem";
  c.tenants["Contoso"] = {"c.pem", "c.key"};
  c.metrics = {{"management", "127.0.0.1:4"}, {"shard-0", "127.0.0.1:5"}};
  auto back = ParseClusterConfig(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->management, "127.0.0.1:1");
  ASSERT_EQ(back->shards.size(), 2u);
  EXPECT_EQ(back->shards[1].address, "127.0.0.1:3");
  EXPECT_EQ(back->tenants["Contoso"].second, "c.key");
  EXPECT_EQ(back->metrics, c.metrics);
}

TEST(ClusterConfigTest, RoundTripsContosoAddresses) {
  ClusterConfig c;
  c.management = "127.0.0.1:1";
  c.root_ca = "/tmp/s/pki/root.pem";
  c.appsvc = "127.0.0.1:6";
  c.appsvc_web = "https://127.0.0.1:7/";
  c.twins = {{"dw100-1", "127.0.0.1:8"}, {"dw100-2", "127.0.0.1:9"}};
  auto back = ParseClusterConfig(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->appsvc, "127.0.0.1:6");
  EXPECT_EQ(back->appsvc_web, "https://127.0.0.1:7/");
  EXPECT_EQ(back->twins, c.twins);
}

TEST(ClusterConfigTest, RejectsGarbageWithSpecificError) {
  auto r = ParseClusterConfig("{not json");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  r = ParseClusterConfig("{\"shards\": []}");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("management"), std::string::npos);
}

TEST(ClusterConfigTest, ServerNameDefaultsToLocalhostAndHonoursOverrides) {
  auto plain = ParseClusterConfig(
      R"({"management": "127.0.0.1:1", "root_ca": "/r.pem"})");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->ServerName("management"), "localhost");
  EXPECT_EQ(plain->ServerName("shard-0"), "localhost");

  ClusterConfig c;
  c.management = "10.0.0.1:443";
  c.root_ca = "/r.pem";
  c.server_name = "sphere.example";
  c.server_names["shard-1"] = "shard-1.sphere.example";
  auto back = ParseClusterConfig(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ServerName("management"), "sphere.example");
  EXPECT_EQ(back->ServerName("shard-1"), "shard-1.sphere.example");
  EXPECT_EQ(back->ServerName("shard-0"), "sphere.example");
}

TEST(ClusterConfigTest, Attack_OversizedServerNameIsRefused) {
  const std::string long_name(300, 'a');
  auto r = ParseClusterConfig(absl::StrCat(
      R"({"management": "127.0.0.1:1", "root_ca": "/r.pem", "server_name": ")",
      long_name, R"("})"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("server_name"), std::string::npos)
      << r.status();
}

TEST(ClusterConfigTest, LoadResolvesRelativePathsAgainstTheFilesDirectory) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/cc";
  ASSERT_TRUE(util::MakeDirs(dir).ok());
  ASSERT_TRUE(util::WriteFile(dir + "/cluster.json", R"({
    "management": "127.0.0.1:1", "root_ca": "pki/root.pem",
    "operator_cert": "/abs/op.pem", "operator_key": "pki/op.key",
    "tenants": {"Contoso": {"cert": "t/c.pem", "key": "t/c.key"}}})")
                  .ok());
  auto c = LoadClusterConfig(dir + "/cluster.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state_dir, dir);
  EXPECT_EQ(c->root_ca, dir + "/pki/root.pem");
  EXPECT_EQ(c->operator_cert, "/abs/op.pem");
  EXPECT_EQ(c->operator_key, dir + "/pki/op.key");
  auto contoso = c->CredentialFor("Contoso");
  EXPECT_TRUE(contoso.tenant_credential);
  EXPECT_EQ(contoso.cert, dir + "/t/c.pem");
  auto other = c->CredentialFor("Fabrikam");
  EXPECT_FALSE(other.tenant_credential);
  EXPECT_EQ(other.key, dir + "/pki/op.key");
}

TEST(ClusterConfigTest, Fault_MissingFileSaysHowToStartACluster) {
  auto c = LoadClusterConfig("/nonexistent/cluster.json");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(c.status().message().find("./sphere up"), std::string::npos);
}

TEST(ClusterConfigTest, PathComesFromFlagThenEnvironmentThenDefault) {
  EXPECT_EQ(ClusterConfigPath("/x/c.json"), "/x/c.json");
  setenv("SPHERE_CLUSTER", "/env/c.json", 1);
  EXPECT_EQ(ClusterConfigPath(""), "/env/c.json");
  unsetenv("SPHERE_CLUSTER");
  EXPECT_EQ(ClusterConfigPath(""), "cluster.json");
}


}  // namespace
}  // namespace sphere::cluster
