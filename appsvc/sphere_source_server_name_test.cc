// appsvc's Security Service client (GrpcSphereSource) checks the shards'
// TLS server name it is given (--server_name, cluster.json's "server_name"):
// a shard certificate for another name is refused at the handshake, the
// right name reaches the shard.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "appsvc/device_registry.h"
#include "appsvc/sphere_source.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"

namespace contoso::appsvc {
namespace {

constexpr char kShardName[] = "shard-0.sphere.example";

class SphereSourceServerNameTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sphere::rpc::ServerOptions options;
    // Certificate for kShardName only; no Sphere service is served, so a
    // call through the handshake is UNIMPLEMENTED.
    options.tls = pki_.Leaf("shard-0", sphere::crypto::KeyUsage::kServerAuth,
                            {kShardName}, {});
    runner_ = std::make_unique<sphere::rpc::ServerRunner>(options);
    ASSERT_TRUE(runner_->Start().ok());
    sphere::v1::WatchEvent e;
    e.set_revision(1);
    auto* shard = e.mutable_shard_map()->add_shards();
    shard->set_id("shard-0");
    shard->set_address(absl::StrCat("127.0.0.1:", runner_->port()));
    registry_.Apply(e);
    ASSERT_EQ(registry_.ShardAddresses().size(), 1u);
  }
  void TearDown() override { runner_->Shutdown(absl::Seconds(1)); }

  // StatusError: the first error line of a Fetch, which is the device
  // status call's ("device status from ADDR: CODE message").
  std::string StatusError(const std::string& server_name) {
    GrpcSphereSource source(&registry_, pki_.client, absl::Seconds(10),
                            server_name);
    SphereFacts facts = source.Fetch(std::string(64, 'c'));
    return facts.errors.empty() ? "" : facts.errors.front();
  }

  sphere::test_support::TestPki pki_;
  std::unique_ptr<sphere::rpc::ServerRunner> runner_;
  DeviceRegistry registry_{{"Contoso", "DW100"}};
};

TEST_F(SphereSourceServerNameTest,
       Attack_ShardCertificateForAnotherNameIsRefused) {
  const std::string code_unavailable =
      absl::StrCat(": ", static_cast<int>(grpc::StatusCode::UNAVAILABLE), " ");
  const std::string code_unimplemented = absl::StrCat(
      ": ", static_cast<int>(grpc::StatusCode::UNIMPLEMENTED), " ");
  for (const std::string& name : {std::string(sphere::rpc::kLocalServerName),
                                  std::string("evil.sphere.example")}) {
    const std::string e = StatusError(name);
    EXPECT_TRUE(absl::StartsWith(e, "device status from ")) << e;
    EXPECT_TRUE(absl::StrContains(e, code_unavailable)) << name << ": " << e;
  }
  const std::string e = StatusError(kShardName);
  EXPECT_TRUE(absl::StrContains(e, code_unimplemented)) << e;
}

// Per-shard names (--server_names, cluster.json "server_names"): each shard
// the shard map names is checked for its own name, chosen by its id.
class PerShardServerNameTest : public ::testing::Test {
 protected:
  static constexpr char kShard0Name[] = "shard-0.sphere.example";
  static constexpr char kShard1Name[] = "shard-1.sphere.example";

  void TearDown() override {
    for (auto& r : runners_) r->Shutdown(absl::Seconds(1));
  }
  // Serve: a server presenting a certificate for `name` only (no Sphere
  // service: a call through the handshake is UNIMPLEMENTED); its address.
  std::string Serve(const std::string& name) {
    sphere::rpc::ServerOptions options;
    options.tls =
        pki_.Leaf("shard", sphere::crypto::KeyUsage::kServerAuth, {name}, {});
    runners_.push_back(std::make_unique<sphere::rpc::ServerRunner>(options));
    EXPECT_TRUE(runners_.back()->Start().ok());
    return absl::StrCat("127.0.0.1:", runners_.back()->port());
  }
  // Map: the shard map (id, address), in this order.
  static void Map(DeviceRegistry* registry,
                  const std::vector<std::pair<std::string, std::string>>& map) {
    sphere::v1::WatchEvent e;
    e.set_revision(1);
    for (const auto& [id, address] : map) {
      auto* shard = e.mutable_shard_map()->add_shards();
      shard->set_id(id);
      shard->set_address(address);
    }
    registry->Apply(e);
  }
  // FirstError: the device status call's error line from the first shard in
  // the map.
  static std::string FirstError(GrpcSphereSource& source) {
    SphereFacts facts = source.Fetch(std::string(64, 'c'));
    return facts.errors.empty() ? "" : facts.errors.front();
  }
  static std::string Code(grpc::StatusCode code) {
    return absl::StrCat(": ", static_cast<int>(code), " ");
  }

  sphere::test_support::TestPki pki_;
  std::vector<std::unique_ptr<sphere::rpc::ServerRunner>> runners_;
};

TEST_F(PerShardServerNameTest,
       Attack_ShardPresentingAnotherNameFromTheMapIsRefused) {
  // shard-0's address answers with shard-1's certificate (a certificate
  // stolen from shard-1, or shard-1's process where shard-0 should be).
  const std::string shard0 = Serve(kShard1Name);
  const std::string shard1 = Serve(kShard1Name);
  const std::map<std::string, std::string> names = {{"shard-0", kShard0Name},
                                                    {"shard-1", kShard1Name}};
  DeviceRegistry registry{{"Contoso", "DW100"}};
  Map(&registry, {{"shard-0", shard0}, {"shard-1", shard1}});
  GrpcSphereSource source(&registry, pki_.client, absl::Seconds(10),
                          "localhost", names);
  EXPECT_EQ(source.ServerNameAt(shard0), kShard0Name);
  EXPECT_EQ(source.ServerNameAt(shard1), kShard1Name);
  // A redirect to an address the map does not list: the shards' names
  // differ, so only the host in the address itself would be accepted.
  EXPECT_EQ(source.ServerNameAt("127.0.0.1:1"), "");

  const std::string refused = FirstError(source);
  EXPECT_TRUE(absl::StartsWith(
      refused, absl::StrCat("device status from ", shard0, ": ")))
      << refused;
  EXPECT_TRUE(absl::StrContains(refused, Code(grpc::StatusCode::UNAVAILABLE)))
      << refused;

  // The same certificate where shard-1 really is: accepted (the call
  // reaches the server).
  DeviceRegistry shard1_first{{"Contoso", "DW100"}};
  Map(&shard1_first, {{"shard-1", shard1}, {"shard-0", shard0}});
  GrpcSphereSource source1(&shard1_first, pki_.client, absl::Seconds(10),
                           "localhost", names);
  const std::string reached = FirstError(source1);
  EXPECT_TRUE(absl::StrContains(reached, Code(grpc::StatusCode::UNIMPLEMENTED)))
      << reached;

  // One name for every shard (the old behaviour) cannot tell them apart:
  // shard-1's name is accepted at shard-0's address.
  GrpcSphereSource one_name(&registry, pki_.client, absl::Seconds(10),
                            kShard1Name);
  const std::string fooled = FirstError(one_name);
  EXPECT_TRUE(absl::StrContains(fooled, Code(grpc::StatusCode::UNIMPLEMENTED)))
      << fooled;
}

TEST_F(PerShardServerNameTest, ShardsWithoutAnOverrideUseTheClusterName) {
  const std::string shard0 = Serve(kShard0Name);
  const std::string shard1 = Serve("localhost");
  DeviceRegistry registry{{"Contoso", "DW100"}};
  Map(&registry, {{"shard-0", shard0}, {"shard-1", shard1}});
  GrpcSphereSource source(&registry, pki_.client, absl::Seconds(10),
                          "localhost", {{"shard-0", kShard0Name}});
  EXPECT_EQ(source.ServerNameAt(shard0), kShard0Name);
  EXPECT_EQ(source.ServerNameAt(shard1), "localhost");
  EXPECT_TRUE(absl::StrContains(FirstError(source),
                                Code(grpc::StatusCode::UNIMPLEMENTED)));
}

TEST(ParseServerNamesTest, ParsesShardIdEqualsName) {
  auto names = ParseServerNames("shard-0=a.example,shard_1=b.example");
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(*names, (std::map<std::string, std::string>{
                        {"shard-0", "a.example"}, {"shard_1", "b.example"}}));
  auto none = ParseServerNames("");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(ParseServerNamesTest, Attack_MalformedServerNamesAreRefused) {
  std::string many;
  for (size_t i = 0; i <= kMaxServerNames; ++i) {
    absl::StrAppend(&many, i ? "," : "", "s", i, "=n");
  }
  for (const std::string& bad :
       {std::string("shard-0"), std::string("=name"), std::string("shard-0="),
        std::string("shard 0=name"), std::string("shard/0=name"),
        absl::StrCat(std::string(65, 's'), "=name"),
        absl::StrCat("shard-0=", std::string(254, 'n')),
        std::string("shard-0=a,shard-0=b"), std::string("shard-0=a,"), many}) {
    auto names = ParseServerNames(bad);
    EXPECT_EQ(names.status().code(), absl::StatusCode::kInvalidArgument)
        << bad.substr(0, 80);
    EXPECT_LE(names.status().message().size(), 400u);
  }
}

}  // namespace
}  // namespace contoso::appsvc
