// AsyncAttestationClient's gateway update checks (GetUpdates with a session
// token, max_batch > 1) against in-process fake shards over mTLS on port 0:
// held per owning shard and sent as GetUpdatesBatch, each item with its own
// token; each item gets the answer its index names (the devices of a group
// share one on the wire); a redirected item goes alone, with its token, to
// the owner; a check without a token (a device's own certificate) stays a
// single call.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/attestation_client.h"
#include "client/fake_shards_testing.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"
#include "protos/update.grpc.pb.h"

namespace sphere::client {
namespace {

std::string DeviceId(int i) {
  return crypto::HexEncode(crypto::Sha256(absl::StrCat("update-device-", i)));
}
std::string Token(int i) { return absl::StrCat("token-of-", i); }

// GroupAnswer: the answer of the group device `id` is in (two groups).
v1::GetUpdatesResponse GroupAnswer(const std::string& id) {
  v1::GetUpdatesResponse r;
  const bool even = (id.back() - '0') % 2 == 0;
  r.set_deployment_id(even ? "dep-even" : "dep-odd");
  r.mutable_signed_metadata()->set_metadata(even ? "even" : "odd");
  return r;
}

// FakeUpdates answers devices it owns by `ring` with their group's answer
// (each distinct answer once per batch) and redirects the others (trailers
// for the single call, redirect_address per batch item). It records the
// token each device's check came with. `bad_index` makes it answer an
// index past its answers (a broken shard).
class FakeUpdates final : public v1::UpdateService::CallbackService,
                          public TokenRedirectingShard {
 public:
  bool bad_index = false;

  grpc::ServerUnaryReactor* GetUpdates(grpc::CallbackServerContext* ctx,
                                       const v1::GetUpdatesRequest* req,
                                       v1::GetUpdatesResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!AcceptSingle(ctx, reactor, req->device_id())) return reactor;
    *resp = GroupAnswer(req->device_id());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* GetUpdatesBatch(
      grpc::CallbackServerContext* ctx, const v1::GetUpdatesBatchRequest* req,
      v1::GetUpdatesBatchResponse* resp) override {
    absl::MutexLock l(&mu_);
    batch_sizes_.push_back(req->items_size());
    std::map<std::string, int> index;  // deployment -> answer
    for (const auto& item : req->items()) {
      auto* r = resp->add_results();
      const std::string& device = item.request().device_id();
      if (!AcceptItem(r, device, item.session_token())) continue;
      v1::GetUpdatesResponse a = GroupAnswer(device);
      auto [it, added] = index.try_emplace(a.deployment_id(), index.size());
      if (added) *resp->add_answers() = a;
      r->set_answer_index(bad_index ? 99 : it->second);
    }
    answers_sent_ += resp->answers_size();
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  int answers_sent() {
    absl::MutexLock l(&mu_);
    return answers_sent_;
  }

 private:
  int answers_sent_ ABSL_GUARDED_BY(mu_) = 0;
};

class UpdateBatchTest : public FakeShardsTest<FakeUpdates> {
 protected:
  using Results = ResultsByDevice<v1::GetUpdatesResponse>;
  static void Check(AsyncAttestationClient& client, int i, bool token,
                    Results* out) {
    v1::GetUpdatesRequest req;
    req.set_device_id(DeviceId(i));
    client.GetUpdates(req, token ? Token(i) : "",
                      [out, id = DeviceId(i)](auto r) {
                        absl::MutexLock l(&out->mu);
                        out->by_device.emplace(id, std::move(r));
                      });
  }
};

TEST_F(UpdateBatchTest, OneBatchPerShardEachItemItsOwnTokenAndGroupAnswer) {
  StartShards(2);
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(64));
  Results results;
  constexpr int kDevices = 40;
  for (int i = 0; i < kDevices; ++i) Check(client, i, true, &results);
  EXPECT_EQ(client.stats().batches, 0u);  // held until Flush
  client.Flush();
  results.Await(kDevices);
  for (int i = 0; i < kDevices; ++i) {
    auto& r = results.by_device.at(DeviceId(i));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->SerializeAsString(),
              GroupAnswer(DeviceId(i)).SerializeAsString())
        << i;
  }
  int items = 0, answers = 0;
  for (auto& s : shards_) {
    EXPECT_LE(s->batch_sizes().size(), 1u);  // one RPC per shard
    for (int n : s->batch_sizes()) items += n;
    answers += s->answers_sent();
    EXPECT_EQ(s->single_calls(), 0);
    for (const auto& [device, token] : s->tokens()) {
      EXPECT_EQ(s->ring->Owner(device).id(), s->id);
      bool matched = false;
      for (int i = 0; i < kDevices; ++i) {
        if (DeviceId(i) == device) matched = token == Token(i);
      }
      EXPECT_TRUE(matched) << device << " came with " << token;
    }
  }
  EXPECT_EQ(items, kDevices);
  EXPECT_LE(answers, 4);  // at most two groups per shard on the wire
  EXPECT_EQ(client.stats().batched_items, static_cast<uint64_t>(kDevices));
}

TEST_F(UpdateBatchTest, FullBatchGoesAtOnceCappedAtTheServiceLimit) {
  StartShards(1);
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(1000));
  Results results;
  for (int i = 0; i < 300; ++i) Check(client, i, true, &results);
  EXPECT_EQ(client.stats().batches, 1u);  // the first 256, sent when full
  client.Flush();
  results.Await(300);
  std::vector<int> sizes = shards_[0]->batch_sizes();
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<int>{44, 256}));
}

TEST_F(UpdateBatchTest, RedirectedItemGoesAloneWithItsTokenToTheOwner) {
  StartShards(2);
  std::vector<int> foreign;
  for (int i = 0; foreign.size() < 3; ++i) {
    if (shards_[0]->ring->Owner(DeviceId(i)).id() == "shard-1") {
      foreign.push_back(i);
    }
  }
  // The client knows only shard-0: every item is batched there first.
  AsyncAttestationClient client({endpoints_[0]}, pki_.client, Batched(16));
  Results results;
  for (int i : foreign) Check(client, i, true, &results);
  client.Flush();
  results.Await(foreign.size());
  for (int i : foreign) {
    auto& r = results.by_device.at(DeviceId(i));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->deployment_id(), GroupAnswer(DeviceId(i)).deployment_id());
    EXPECT_EQ(shards_[1]->tokens().at(DeviceId(i)), Token(i));
  }
  EXPECT_EQ(shards_[1]->single_calls(), 3);
  EXPECT_TRUE(shards_[0]->tokens().empty());
  EXPECT_EQ(client.stats().redirects, 3u);
}

TEST_F(UpdateBatchTest, AnswerIndexPastTheAnswersFailsThatItem) {
  StartShards(1);
  shards_[0]->bad_index = true;
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(16));
  Results results;
  Check(client, 1, true, &results);
  client.Flush();
  results.Await(1);
  const auto& r = results.by_device.at(DeviceId(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("index 99"), std::string::npos)
      << r.status();
}

TEST_F(UpdateBatchTest, CheckWithoutTokenIsASingleCall) {
  StartShards(1);
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(16));
  Results results;
  Check(client, 1, /*token=*/false, &results);
  results.Await(1);  // no Flush needed: never held
  ASSERT_TRUE(results.by_device.at(DeviceId(1)).ok());
  EXPECT_EQ(shards_[0]->single_calls(), 1);
  EXPECT_TRUE(shards_[0]->batch_sizes().empty());
}

}  // namespace
}  // namespace sphere::client
