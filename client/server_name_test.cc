// The device-side clients (attestation, update) check each shard's TLS
// server name from the cluster file (cluster::ShardEndpoint::server_name,
// cluster::ServerNameAt), never a constant: a shard whose certificate names
// another host is refused at the handshake, so no call reaches it, and the
// name the cluster file gives is accepted.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/attestation_client.h"
#include "client/update_client.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"
#include "protos/attestation.grpc.pb.h"

namespace sphere::client {
namespace {

constexpr char kShardName[] = "shard-0.sphere.example";

// CountingShard answers GetChallenge with a fixed nonce and counts calls.
class CountingShard final : public v1::AttestationService::CallbackService {
 public:
  std::atomic<int> calls{0};
  grpc::ServerUnaryReactor* GetChallenge(
      grpc::CallbackServerContext* ctx, const v1::GetChallengeRequest*,
      v1::GetChallengeResponse* resp) override {
    ++calls;
    resp->set_nonce("nonce");
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

class ServerNameTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rpc::ServerOptions options;
    // The shard's certificate names only kShardName (no localhost).
    options.tls =
        pki_.Leaf("shard-0", crypto::KeyUsage::kServerAuth, {kShardName}, {});
    runner_ = std::make_unique<rpc::ServerRunner>(options);
    runner_->AddService(&shard_);
    ASSERT_TRUE(runner_->Start().ok());
    address_ = absl::StrCat("127.0.0.1:", runner_->port());
  }
  void TearDown() override { runner_->Shutdown(absl::Seconds(1)); }

  std::vector<cluster::ShardEndpoint> Shards(const std::string& name) const {
    return {cluster::ShardEndpoint{"shard-0", address_, name}};
  }
  absl::StatusOr<v1::GetChallengeResponse> Challenge(
      const std::vector<cluster::ShardEndpoint>& shards) {
    AsyncAttestationClient client(shards, pki_.client,
                                  AsyncAttestationClient::Options());
    absl::Notification done;
    absl::StatusOr<v1::GetChallengeResponse> result;
    v1::GetChallengeRequest req;
    req.set_device_id(std::string(64, 'a'));
    client.GetChallenge(req, [&](auto r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
  absl::StatusOr<v1::GetUpdatesResponse> Updates(
      const std::vector<cluster::ShardEndpoint>& shards) {
    UpdateClient::Options options;
    options.deadline = absl::Seconds(10);
    UpdateClient client(shards, pki_.client, options);
    absl::Notification done;
    absl::StatusOr<v1::GetUpdatesResponse> result;
    v1::GetUpdatesRequest req;
    req.set_device_id(std::string(64, 'a'));
    client.GetUpdates(req, [&](auto r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  test_support::TestPki pki_;
  CountingShard shard_;
  std::unique_ptr<rpc::ServerRunner> runner_;
  std::string address_;
};

TEST_F(ServerNameTest,
       Attack_AttestationClientRefusesCertificateForAnotherName) {
  // The default name (a cluster file without server names) and a wrong
  // one: refused before any call reaches the shard.
  for (const std::string& name : {std::string(cluster::kDefaultServerName),
                                  std::string("evil.sphere.example")}) {
    auto r = Challenge(Shards(name));
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable)
        << name << ": " << r.status();
  }
  EXPECT_EQ(shard_.calls.load(), 0);
  auto ok = Challenge(Shards(kShardName));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->nonce(), "nonce");
  EXPECT_EQ(shard_.calls.load(), 1);
}

TEST_F(ServerNameTest, Attack_UpdateClientRefusesCertificateForAnotherName) {
  auto wrong = Updates(Shards("evil.sphere.example"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnavailable)
      << wrong.status();
  // The right name completes the handshake: this server has no update
  // service, so the answer comes from the server itself.
  auto right = Updates(Shards(kShardName));
  ASSERT_FALSE(right.ok());
  EXPECT_EQ(right.status().code(), absl::StatusCode::kUnimplemented)
      << right.status();
  EXPECT_EQ(shard_.calls.load(), 0);
}

TEST_F(ServerNameTest, ClusterFileServerNamesReachTheClient) {
  // cluster.json's per-shard override becomes the endpoint's name.
  auto config = cluster::ParseClusterConfig(absl::StrCat(
      R"({"management": "127.0.0.1:1", "root_ca": "r.pem",
          "shards": [{"id": "shard-0", "address": ")",
      address_, R"("}],
          "server_names": {"shard-0": ")",
      kShardName, R"("}})"));
  ASSERT_TRUE(config.ok()) << config.status();
  auto ok = Challenge(config->shards);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(shard_.calls.load(), 1);
}

}  // namespace
}  // namespace sphere::client
