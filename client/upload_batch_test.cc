// AsyncAttestationClient's gateway error uploads (UploadErrors with a
// session token, max_batch > 1) against in-process fake shards over mTLS on
// port 0: held per owning shard and sent as UploadErrorsBatch, each item
// with its own token; a redirected item goes alone, with its token, to the
// owner; uploads without a token (a device's own certificate) stay single
// calls.
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

namespace sphere::client {
namespace {

using test_support::TestPki;

// FakeErrors answers devices it owns by `ring` (stored = events) and
// redirects the others (trailers for the single call, redirect_address per
// batch item). It records the token each device's events came with.
class FakeErrors final : public v1::ErrorReportingService::CallbackService,
                         public TokenRedirectingShard {
 public:
  grpc::ServerUnaryReactor* UploadErrors(
      grpc::CallbackServerContext* ctx, const v1::UploadErrorsRequest* req,
      v1::UploadErrorsResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!AcceptSingle(ctx, reactor, req->device_id())) return reactor;
    resp->set_stored(req->events_size());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* UploadErrorsBatch(
      grpc::CallbackServerContext* ctx,
      const v1::UploadErrorsBatchRequest* req,
      v1::UploadErrorsBatchResponse* resp) override {
    absl::MutexLock l(&mu_);
    batch_sizes_.push_back(req->items_size());
    for (const auto& item : req->items()) {
      auto* r = resp->add_results();
      if (!AcceptItem(r, item.upload().device_id(), item.session_token())) {
        continue;
      }
      r->mutable_response()->set_stored(item.upload().events_size());
    }
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

std::string DeviceId(int i) {
  return crypto::HexEncode(crypto::Sha256(absl::StrCat("upload-device-", i)));
}
std::string Token(int i) { return absl::StrCat("token-of-", i); }

class UploadBatchTest : public FakeShardsTest<FakeErrors> {
 protected:
  using Results = ResultsByDevice<v1::UploadErrorsResponse>;
  // Upload: device i's 3 events, with Token(i) (or no token).
  static void Upload(AsyncAttestationClient& client, int i, bool token,
                     Results* out) {
    v1::UploadErrorsRequest req;
    req.set_device_id(DeviceId(i));
    for (int k = 1; k <= 3; ++k) req.add_events()->set_sequence(k);
    client.UploadErrors(req, token ? Token(i) : "",
                        [out, id = DeviceId(i)](auto r) {
                          absl::MutexLock l(&out->mu);
                          out->by_device.emplace(id, std::move(r));
                        });
  }
};

TEST_F(UploadBatchTest, OneBatchPerShardEachItemWithItsOwnToken) {
  StartShards(2);
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(64));
  Results results;
  constexpr int kDevices = 20;
  for (int i = 0; i < kDevices; ++i) Upload(client, i, true, &results);
  EXPECT_EQ(client.stats().batches, 0u);  // held until Flush
  client.Flush();
  results.Await(kDevices);
  for (int i = 0; i < kDevices; ++i) {
    auto& r = results.by_device.at(DeviceId(i));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stored(), 3u);
  }
  int items = 0;
  for (auto& s : shards_) {
    EXPECT_LE(s->batch_sizes().size(), 1u);  // one RPC per shard
    for (int n : s->batch_sizes()) items += n;
    EXPECT_EQ(s->single_calls(), 0);
    // Each device's events reached its owner with its own token.
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
  EXPECT_EQ(client.stats().batched_items, static_cast<uint64_t>(kDevices));
}

TEST_F(UploadBatchTest, FullBatchGoesAtOnceCappedAtTheServiceLimit) {
  StartShards(1);
  // max_batch above the service's 256: batches still carry at most 256.
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(1000));
  Results results;
  for (int i = 0; i < 300; ++i) Upload(client, i, true, &results);
  EXPECT_EQ(client.stats().batches, 1u);  // the first 256, sent when full
  client.Flush();
  results.Await(300);
  std::vector<int> sizes = shards_[0]->batch_sizes();  // either order
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<int>{44, 256}));
}

TEST_F(UploadBatchTest, RedirectedItemGoesAloneWithItsTokenToTheOwner) {
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
  for (int i : foreign) Upload(client, i, true, &results);
  client.Flush();
  results.Await(foreign.size());
  for (int i : foreign) {
    auto& r = results.by_device.at(DeviceId(i));
    ASSERT_TRUE(r.ok()) << r.status();
    // The batch took the item's events and token (moved, not copied); the
    // redirect sent them again, whole.
    EXPECT_EQ(r->stored(), 3u);
    EXPECT_EQ(shards_[1]->tokens().at(DeviceId(i)), Token(i));
  }
  EXPECT_EQ(shards_[1]->single_calls(), 3);
  EXPECT_TRUE(shards_[0]->tokens().empty());  // nothing stored at the wrong one
  EXPECT_EQ(client.stats().redirects, 3u);
}

TEST_F(UploadBatchTest, UploadWithoutTokenIsASingleCall) {
  StartShards(1);
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(16));
  Results results;
  Upload(client, 1, /*token=*/false, &results);
  results.Await(1);  // no Flush needed: never held
  ASSERT_TRUE(results.by_device.at(DeviceId(1)).ok());
  EXPECT_EQ(shards_[0]->single_calls(), 1);
  EXPECT_TRUE(shards_[0]->batch_sizes().empty());
}

}  // namespace
}  // namespace sphere::client
