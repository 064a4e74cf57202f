// appsvc's Security Service client (GrpcSphereSource) checks the shards'
// TLS server name it is given (--server_name, cluster.json's "server_name"):
// a shard certificate for another name is refused at the handshake, the
// right name reaches the shard.
#include <gtest/gtest.h>

#include <memory>
#include <string>

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

}  // namespace
}  // namespace contoso::appsvc
