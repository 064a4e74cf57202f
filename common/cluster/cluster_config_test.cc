#include "common/cluster/cluster_config.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace sphere::cluster
