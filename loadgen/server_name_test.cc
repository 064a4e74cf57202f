// loadgen dials every shard with the server name the cluster file gives it
// (cluster::ShardEndpoint::server_name): a certificate for another name is
// refused at the handshake, the right name reaches the server.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"
#include "loadgen/phases.h"
#include "loadgen/transport.h"

namespace sphere::loadgen {
namespace {

constexpr char kShardName[] = "shard-0.sphere.example";
constexpr char kMethod[] = "/sphere.v1.AttestationService/GetChallenge";

class LoadgenServerNameTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rpc::ServerOptions options;
    // Certificate for kShardName only; no attestation service is served,
    // so a call that gets through the handshake is UNIMPLEMENTED.
    options.tls =
        pki_.Leaf("shard-0", crypto::KeyUsage::kServerAuth, {kShardName}, {});
    runner_ = std::make_unique<rpc::ServerRunner>(options);
    ASSERT_TRUE(runner_->Start().ok());
    address_ = absl::StrCat("127.0.0.1:", runner_->port());
  }
  void TearDown() override { runner_->Shutdown(absl::Seconds(1)); }

  absl::Status Challenge(const std::string& server_name) {
    PerTwinTlsTransport t(
        {cluster::ShardEndpoint{"shard-0", address_, server_name}}, pki_.client,
        absl::Seconds(10));
    absl::Notification done;
    absl::Status status;
    v1::GetChallengeRequest req;
    req.set_device_id(std::string(64, 'b'));
    t.GetChallenge(req, [&](auto r) {
      status = r.status();
      done.Notify();
    });
    done.WaitForNotification();
    return status;
  }

  test_support::TestPki pki_;
  std::unique_ptr<rpc::ServerRunner> runner_;
  std::string address_;
};

TEST_F(LoadgenServerNameTest, Attack_PerTwinTransportRefusesAnotherName) {
  for (const std::string& name : {std::string(cluster::kDefaultServerName),
                                  std::string("evil.sphere.example")}) {
    EXPECT_EQ(Challenge(name).code(), absl::StatusCode::kUnavailable) << name;
  }
  EXPECT_EQ(Challenge(kShardName).code(), absl::StatusCode::kUnimplemented);
}

TEST_F(LoadgenServerNameTest, Attack_ProbeRefusesAnotherName) {
  EXPECT_EQ(ProbeMethod(address_, "evil.sphere.example", pki_.client, kMethod),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ProbeMethod(address_, kShardName, pki_.client, kMethod),
            absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace sphere::loadgen
