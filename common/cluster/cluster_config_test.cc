#include "common/cluster/cluster_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

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

// EndpointOf is the one (address, server name) rule every client uses, and
// each parsed shard carries its own name.
TEST(ClusterConfigTest, EndpointOfPairsEachAddressWithItsServerName) {
  auto c = ParseClusterConfig(R"({
      "management": "10.0.0.1:443", "root_ca": "/r.pem",
      "appsvc": "10.0.0.9:443",
      "shards": [{"id": "shard-0", "address": "10.0.0.2:443"},
                 {"id": "shard-1", "address": "10.0.0.3:443"}],
      "server_name": "sphere.example",
      "server_names": {"shard-1": "shard-1.sphere.example",
                       "appsvc": "contoso.example"}})");
  ASSERT_TRUE(c.ok()) << c.status();
  auto m = c->EndpointOf("management");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->address, "10.0.0.1:443");
  EXPECT_EQ(m->server_name, "sphere.example");
  auto a = c->EndpointOf("appsvc");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->address, "10.0.0.9:443");
  EXPECT_EQ(a->server_name, "contoso.example");
  auto s1 = c->EndpointOf("shard-1");
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_EQ(s1->address, "10.0.0.3:443");
  EXPECT_EQ(s1->server_name, "shard-1.sphere.example");
  ASSERT_EQ(c->shards.size(), 2u);
  EXPECT_EQ(c->shards[0].server_name, "sphere.example");
  EXPECT_EQ(c->shards[1].server_name, "shard-1.sphere.example");
  EXPECT_EQ(c->EndpointOf("shard-7").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ClusterConfigTest, ServerNameAtFollowsTheShardListThenTheCommonName) {
  std::vector<ShardEndpoint> same = {{"shard-0", "a:1", "sphere.example"},
                                     {"shard-1", "b:1", "sphere.example"}};
  EXPECT_EQ(ServerNameAt(same, "b:1"), "sphere.example");
  // A redirect to a shard the file does not list: the cluster-wide name.
  EXPECT_EQ(ServerNameAt(same, "c:1"), "sphere.example");
  std::vector<ShardEndpoint> mixed = {{"shard-0", "a:1", "s0.example"},
                                      {"shard-1", "b:1", "s1.example"}};
  EXPECT_EQ(ServerNameAt(mixed, "a:1"), "s0.example");
  EXPECT_EQ(ServerNameAt(mixed, "b:1"), "s1.example");
  // No common name: the host in the address itself is checked.
  EXPECT_EQ(ServerNameAt(mixed, "c:1"), "");
  EXPECT_EQ(ServerNameAt({}, "c:1"), "");
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

std::string TestDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir =
      std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
  EXPECT_TRUE(util::MakeDirs(dir).ok());
  return dir;
}

// spherectl's tenant entry goes through the one cluster.json owner: the
// entry round-trips through LoadClusterConfig, and every other entry (other
// tenants, server names, keys this build does not know) stays as written.
TEST(ClusterConfigTest, RecordTenantCredentialRoundTripsAndKeepsOtherEntries) {
  const std::string path = TestDir("tenant_rt") + "/cluster.json";
  ClusterConfig c;
  c.management = "127.0.0.1:1";
  c.root_ca = "pki/root.pem";
  c.shards = {{"shard-0", "127.0.0.1:2"}};
  c.tenants["Fabrikam"] = {"pki/tenants/Fabrikam.pem",
                           "pki/tenants/Fabrikam.key"};
  c.server_names["shard-0"] = "shard-0.sphere.example";
  c.metrics = {{"management", "127.0.0.1:4"}};
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(c.ToJson());
  j["future_key"] = {{"kept", true}};
  ASSERT_TRUE(util::WriteFile(path, j.dump(2)).ok());

  ASSERT_TRUE(RecordTenantCredential(path, "Contoso", "/abs/Contoso.pem",
                                     "/abs/Contoso.key")
                  .ok());
  auto back = LoadClusterConfig(path);
  ASSERT_TRUE(back.ok()) << back.status();
  auto contoso = back->CredentialFor("Contoso");
  EXPECT_TRUE(contoso.tenant_credential);
  EXPECT_EQ(contoso.cert, "/abs/Contoso.pem");
  EXPECT_EQ(contoso.key, "/abs/Contoso.key");
  EXPECT_EQ(back->management, "127.0.0.1:1");
  ASSERT_EQ(back->shards.size(), 1u);
  EXPECT_EQ(back->shards[0].server_name, "shard-0.sphere.example");
  EXPECT_EQ(back->metrics, c.metrics);
  const std::string dir = path.substr(0, path.rfind('/'));
  EXPECT_EQ(back->CredentialFor("Fabrikam").cert,
            dir + "/pki/tenants/Fabrikam.pem");
  // Relative paths and unknown keys stay exactly as written.
  auto after = nlohmann::json::parse(*util::ReadFile(path));
  EXPECT_EQ(after["root_ca"], "pki/root.pem");
  EXPECT_EQ(after["future_key"]["kept"], true);
  EXPECT_EQ(after["tenants"]["Fabrikam"]["key"], "pki/tenants/Fabrikam.key");

  // Recording again replaces that tenant's entry only.
  ASSERT_TRUE(
      RecordTenantCredential(path, "Contoso", "/abs/2.pem", "/abs/2.key").ok());
  back = LoadClusterConfig(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->CredentialFor("Contoso").cert, "/abs/2.pem");
  EXPECT_EQ(back->tenants.size(), 2u);
}

TEST(ClusterConfigTest, Attack_RecordTenantCredentialRefusesAndChangesNothing) {
  const std::string dir = TestDir("tenant_attack");
  // Not a cluster file: refused, file unchanged.
  const std::string bogus = dir + "/bogus.json";
  const std::string bogus_text = R"({"hello": "world"})";
  ASSERT_TRUE(util::WriteFile(bogus, bogus_text).ok());
  absl::Status s = RecordTenantCredential(bogus, "Contoso", "/c.pem", "/c.key");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(*util::ReadFile(bogus), bogus_text);
  // Oversized fields: refused before the file is touched.
  const std::string path = dir + "/cluster.json";
  const std::string text =
      R"({"management": "127.0.0.1:1", "root_ca": "/r.pem"})";
  ASSERT_TRUE(util::WriteFile(path, text).ok());
  const std::string huge(kMaxTenantEntryBytes + 1, 'x');
  for (const auto& [t, c, k] :
       {std::tuple{huge, std::string("/c"), std::string("/k")},
        std::tuple{std::string("T"), huge, std::string("/k")},
        std::tuple{std::string("T"), std::string("/c"), huge},
        std::tuple{std::string(""), std::string("/c"), std::string("/k")}}) {
    s = RecordTenantCredential(path, t, c, k);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  EXPECT_EQ(*util::ReadFile(path), text);
  // A missing file is NotFound (nothing created).
  s = RecordTenantCredential(dir + "/none.json", "T", "/c", "/k");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

// Two spherectl processes recording at once: the lock serialises the
// read-modify-write, so no entry is lost.
TEST(ClusterConfigTest, ConcurrentRecordersLoseNoEntry) {
  const std::string path = TestDir("tenant_race") + "/cluster.json";
  ASSERT_TRUE(util::WriteFile(
                  path, R"({"management": "127.0.0.1:1", "root_ca": "/r.pem"})")
                  .ok());
  constexpr int kPerThread = 15;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string name = absl::StrCat("tenant-", t, "-", i);
        EXPECT_TRUE(RecordTenantCredential(path, name, "/" + name + ".pem",
                                           "/" + name + ".key")
                        .ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  auto back = LoadClusterConfig(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tenants.size(), 3u * kPerThread);
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
