// UpdateClient's gateway proof (Options::session_token): a call without a
// token for its device, or with an oversized one, fails before anything is
// sent (no channel is even opened: the shard address below is unroutable).
// The token on the wire is exercised end to end by //tests:loadgen_suite_test
// (update_check and update_install over gateway channels).
#include "client/update_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/attestation_client.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"

namespace sphere::client {
namespace {

UpdateClient::Options WithToken(std::string token, int* calls) {
  UpdateClient::Options o;
  o.session_token = [token, calls](const std::string&) {
    ++*calls;
    return token;
  };
  o.max_session_token_length = 64;
  return o;
}

std::vector<cluster::ShardEndpoint> Shards() {
  return {{"shard-0", "192.0.2.1:1"}};  // TEST-NET-1: never reached
}

TEST(UpdateClientTest, Attack_MissingTokenFailsUnsent) {
  int calls = 0;
  UpdateClient client(Shards(), {}, WithToken("", &calls));
  std::optional<absl::Status> got;
  v1::GetUpdatesRequest req;
  req.set_device_id(std::string(64, 'a'));
  client.GetUpdates(
      req, [&](absl::StatusOr<v1::GetUpdatesResponse> r) { got = r.status(); });
  ASSERT_TRUE(got.has_value());  // answered at once: nothing was sent
  EXPECT_EQ(got->code(), absl::StatusCode::kFailedPrecondition) << *got;
  EXPECT_TRUE(absl::StrContains(got->message(), "attest the device first"))
      << *got;
  EXPECT_EQ(calls, 1);
}

TEST(UpdateClientTest, Attack_OversizedTokenFailsUnsent) {
  int calls = 0;
  UpdateClient client(Shards(), {}, WithToken(std::string(65, 't'), &calls));
  std::optional<DownloadResult> got;
  v1::DownloadImageRequest req;
  req.set_device_id(std::string(64, 'a'));
  client.DownloadImage(req, 1024,
                       [&](DownloadResult r) { got = std::move(r); });
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status.code(), absl::StatusCode::kInvalidArgument)
      << got->status;
  EXPECT_TRUE(got->chunks.empty());
  std::optional<absl::Status> reported;
  v1::ReportUpdateResultRequest rep;
  rep.set_device_id(std::string(64, 'a'));
  client.ReportUpdateResult(rep, [&](absl::Status s) { reported = s; });
  ASSERT_TRUE(reported.has_value());
  EXPECT_EQ(reported->code(), absl::StatusCode::kInvalidArgument) << *reported;
  EXPECT_EQ(calls, 2);
}

// FakeUpdateShard answers GetUpdates for the devices its (live) ring gives
// it, naming itself in deployment_id, and redirects the others.
class FakeUpdateShard final : public v1::UpdateService::CallbackService {
 public:
  std::string id;
  std::shared_ptr<const ShardRing> ring;
  std::atomic<int> calls{0};

  grpc::ServerUnaryReactor* GetUpdates(grpc::CallbackServerContext* ctx,
                                       const v1::GetUpdatesRequest* req,
                                       v1::GetUpdatesResponse* resp) override {
    ++calls;
    auto* reactor = ctx->DefaultReactor();
    const v1::Shard& owner = ring->Owner(req->device_id());
    if (owner.id() != id) {
      ctx->AddTrailingMetadata(kRedirectShardKey, owner.id());
      ctx->AddTrailingMetadata(kRedirectAddressKey, owner.address());
      reactor->Finish(
          grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "not mine"));
      return reactor;
    }
    resp->set_deployment_id(id);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// cluster.json lists shard-0 and a dead shard; the live ring is shard-0 and
// shard-1 (not listed). A device the dead shard owns by cluster.json's ring
// and shard-1 by the live ring: the first GetUpdates is UNAVAILABLE, the
// second fails over to shard-0, which redirects to shard-1; the third goes
// straight to shard-1 (learned owner).
TEST(UpdateClientTest, Fault_DeadOwnerFailsOverAndFollowsTheLiveRing) {
  test_support::TestPki pki{"shard", "gateway"};
  std::vector<std::unique_ptr<FakeUpdateShard>> shards;
  std::vector<std::unique_ptr<rpc::ServerRunner>> runners;
  std::vector<cluster::ShardEndpoint> live;
  for (int i = 0; i < 2; ++i) {
    shards.push_back(std::make_unique<FakeUpdateShard>());
    shards.back()->id = absl::StrCat("shard-", i);
    rpc::ServerOptions options;
    options.tls = pki.server;
    runners.push_back(std::make_unique<rpc::ServerRunner>(options));
    runners.back()->AddService(shards.back().get());
    ASSERT_TRUE(runners.back()->Start().ok());
    live.push_back({shards.back()->id,
                    absl::StrCat("127.0.0.1:", runners.back()->port())});
  }
  auto ring = std::make_shared<ShardRing>(ShardMapFromEndpoints(live));
  for (auto& s : shards) s->ring = ring;
  std::vector<cluster::ShardEndpoint> listed = {live[0],
                                                {"shard-dead", "127.0.0.1:1"}};
  const ShardRing listed_ring(ShardMapFromEndpoints(listed));
  std::string id;
  for (int i = 0; i < 2000 && id.empty(); ++i) {
    std::string d = crypto::HexEncode(crypto::Sha256(absl::StrCat("u-", i)));
    if (listed_ring.Owner(d).id() == "shard-dead" &&
        ring->Owner(d).id() == "shard-1") {
      id = d;
    }
  }
  ASSERT_FALSE(id.empty());
  {
    UpdateClient client(listed, pki.client, {});
    auto get = [&] {
      absl::Notification done;
      absl::StatusOr<v1::GetUpdatesResponse> result;
      v1::GetUpdatesRequest req;
      req.set_device_id(id);
      client.GetUpdates(req, [&](absl::StatusOr<v1::GetUpdatesResponse> r) {
        result = std::move(r);
        done.Notify();
      });
      done.WaitForNotification();
      return result;
    };
    EXPECT_EQ(get().status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(shards[0]->calls + shards[1]->calls, 0);
    auto second = get();
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(second->deployment_id(), "shard-1");
    EXPECT_EQ(shards[0]->calls, 1);  // failed over here, redirected
    auto third = get();
    ASSERT_TRUE(third.ok()) << third.status();
    EXPECT_EQ(shards[0]->calls, 1);  // learned owner used
    EXPECT_EQ(shards[1]->calls, 2);
  }
  for (auto& r : runners) r->Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace sphere::client
