// AsyncAttestationClient against in-process fake shards (gRPC callback
// services over mTLS on port 0): ring routing, redirects and the owner
// cache, the redirect bound, the window, and errors passed through once.
#include "client/attestation_client.h"
#include "client/fake_shards_testing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"

namespace sphere::client {
namespace {

// The shard serves as "shard"; the client is the "gateway".
using test_support::TestPki;

// FakeShard serves GetChallenge and Attest: devices it owns (by `ring`) get
// an answer, others a redirect to their owner; or every call is redirected
// to `redirect_to`, failed with `fail`, or held until Release().
class FakeShard final : public v1::AttestationService::CallbackService {
 public:
  std::string id;
  std::shared_ptr<const ShardRing> ring;
  std::string redirect_to;
  absl::Status fail;
  bool hold = false;

  grpc::ServerUnaryReactor* GetChallenge(
      grpc::CallbackServerContext* ctx, const v1::GetChallengeRequest* req,
      v1::GetChallengeResponse* resp) override {
    resp->set_nonce(absl::StrCat("nonce-from-", id));
    return Handle(ctx, req->device_id());
  }
  grpc::ServerUnaryReactor* Attest(grpc::CallbackServerContext* ctx,
                                   const v1::AttestRequest* req,
                                   v1::AttestResponse* resp) override {
    resp->set_tenant_id(id);
    {
      absl::MutexLock l(&mu_);
      quotes_[req->device_id()] = req->quote().signature();
    }
    return Handle(ctx, req->device_id());
  }

  // Batch calls: each item answered like its single call (owned -> OK,
  // else redirect_address); `item_fail` fails the named devices' items,
  // `fail_batch` the whole call, `scramble` answers in reverse order.
  std::map<std::string, absl::Status> item_fail;
  absl::Status fail_batch;
  bool scramble = false;
  std::string item_redirect_to;

  grpc::ServerUnaryReactor* GetChallenges(
      grpc::CallbackServerContext* ctx, const v1::GetChallengesRequest* req,
      v1::GetChallengesResponse* resp) override {
    {
      absl::MutexLock l(&mu_);
      batch_revisions_.emplace_back(req->min_catalog_revision(),
                                    req->device_ids_size());
    }
    for (const auto& id : req->device_ids()) {
      auto* r = resp->add_results();
      r->set_device_id(id);
      if (AnswerItem(id, r)) {
        r->mutable_challenge()->set_nonce(
            absl::StrCat("nonce-from-", this->id));
      }
    }
    return FinishBatch(ctx, req->device_ids_size(), resp->mutable_results());
  }
  grpc::ServerUnaryReactor* AttestBatch(
      grpc::CallbackServerContext* ctx, const v1::AttestBatchRequest* req,
      v1::AttestBatchResponse* resp) override {
    for (const auto& item : req->requests()) {
      {
        absl::MutexLock l(&mu_);
        quotes_[item.device_id()] = item.quote().signature();
      }
      auto* r = resp->add_results();
      r->set_device_id(item.device_id());
      if (AnswerItem(item.device_id(), r)) {
        r->mutable_response()->set_tenant_id(id);
      }
    }
    return FinishBatch(ctx, req->requests_size(), resp->mutable_results());
  }
  std::vector<int> batch_sizes() {
    absl::MutexLock l(&mu_);
    return batch_sizes_;
  }
  // (min_catalog_revision, items) of each GetChallenges batch, sorted.
  std::vector<std::pair<int64_t, int>> batch_revisions() {
    absl::MutexLock l(&mu_);
    auto r = batch_revisions_;
    std::sort(r.begin(), r.end());
    return r;
  }

  int calls() {
    absl::MutexLock l(&mu_);
    return calls_;
  }
  // The quote signature each device's last Attest or AttestBatch item
  // carried here.
  std::map<std::string, std::string> quotes() {
    absl::MutexLock l(&mu_);
    return quotes_;
  }
  std::vector<std::string> devices() {
    absl::MutexLock l(&mu_);
    return devices_;
  }
  void ExpectHeld(size_t n) {
    absl::MutexLock l(&mu_);
    held_and_target_.second = n;
    mu_.Await(absl::Condition(
        +[](std::pair<std::vector<grpc::ServerUnaryReactor*>*, size_t>* p) {
          return p->first->size() >= p->second;
        },
        &held_and_target_));
  }
  size_t max_held() {
    absl::MutexLock l(&mu_);
    return max_held_;
  }
  // Release answers held calls now and every later call at once.
  void Release() {
    std::vector<grpc::ServerUnaryReactor*> held;
    {
      absl::MutexLock l(&mu_);
      hold = false;
      held.swap(held_);
    }
    for (auto* r : held) r->Finish(grpc::Status::OK);
  }

 private:
  grpc::ServerUnaryReactor* Handle(grpc::CallbackServerContext* ctx,
                                   const std::string& device_id) {
    auto* reactor = ctx->DefaultReactor();
    absl::MutexLock l(&mu_);
    ++calls_;
    devices_.push_back(device_id);
    std::string target = redirect_to;
    if (target.empty() && ring != nullptr) {
      const v1::Shard& owner = ring->Owner(device_id);
      if (owner.id() != id) target = owner.address();
    }
    if (!target.empty()) {
      ctx->AddTrailingMetadata(kRedirectShardKey, "elsewhere");
      ctx->AddTrailingMetadata(kRedirectAddressKey, target);
      reactor->Finish(
          grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "not mine"));
    } else if (!fail.ok()) {
      reactor->Finish(rpc::ToGrpcStatus(fail));
    } else if (hold) {
      held_.push_back(reactor);
      max_held_ = std::max(max_held_, held_.size());
    } else {
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }

  // AnswerItem fills an item's code/redirect; true when it is answered OK.
  template <typename Result>
  bool AnswerItem(const std::string& device_id, Result* r) {
    absl::MutexLock l(&mu_);
    devices_.push_back(device_id);
    std::string target = item_redirect_to;
    if (target.empty() && ring != nullptr) {
      const v1::Shard& owner = ring->Owner(device_id);
      if (owner.id() != id) target = owner.address();
    }
    if (!target.empty()) {
      r->set_code(static_cast<int>(absl::StatusCode::kFailedPrecondition));
      r->set_message("not mine");
      r->set_redirect_address(target);
      return false;
    }
    if (auto it = item_fail.find(device_id); it != item_fail.end()) {
      r->set_code(static_cast<int>(it->second.code()));
      r->set_message(std::string(it->second.message()));
      return false;
    }
    return true;
  }
  template <typename Results>
  grpc::ServerUnaryReactor* FinishBatch(grpc::CallbackServerContext* ctx, int n,
                                        Results* results) {
    auto* reactor = ctx->DefaultReactor();
    {
      absl::MutexLock l(&mu_);
      ++calls_;
      batch_sizes_.push_back(n);
    }
    if (scramble) std::reverse(results->begin(), results->end());
    reactor->Finish(fail_batch.ok() ? grpc::Status::OK
                                    : rpc::ToGrpcStatus(fail_batch));
    return reactor;
  }

  absl::Mutex mu_;
  std::map<std::string, std::string> quotes_ ABSL_GUARDED_BY(mu_);
  std::vector<int> batch_sizes_;
  std::vector<std::pair<int64_t, int>> batch_revisions_;
  int calls_ = 0;
  std::vector<std::string> devices_;
  std::vector<grpc::ServerUnaryReactor*> held_;
  std::pair<std::vector<grpc::ServerUnaryReactor*>*, size_t> held_and_target_{
      &held_, 0};
  size_t max_held_ = 0;
};

std::string DeviceId(int i) {
  return crypto::HexEncode(crypto::Sha256(absl::StrCat("device-", i)));
}

class AsyncAttestationClientTest : public FakeShardsTest<FakeShard> {
 protected:
  // The fakes answer the calls they hold before their servers stop.
  void BeforeShutdown() override {
    for (auto& s : shards_) s->Release();
  }

  static absl::StatusOr<v1::GetChallengeResponse> Challenge(
      AsyncAttestationClient& client, const std::string& device_id) {
    absl::Notification done;
    absl::StatusOr<v1::GetChallengeResponse> result;
    v1::GetChallengeRequest req;
    req.set_device_id(device_id);
    client.GetChallenge(req, [&](auto r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }
};

TEST_F(AsyncAttestationClientTest, RoutesEachDeviceToItsOwnerByTheRing) {
  StartShards(3);
  AsyncAttestationClient client(endpoints_, pki_.client, {});
  for (int i = 0; i < 30; ++i) {
    auto r = Challenge(client, DeviceId(i));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  EXPECT_EQ(client.stats().redirects, 0u);
  EXPECT_EQ(client.stats().cached_owners, 0u);
  int total = 0;
  for (auto& s : shards_) {
    total += s->calls();
    EXPECT_GT(s->calls(), 0) << s->id;  // spread over every shard
    for (const auto& d : s->devices()) {
      EXPECT_EQ(s->ring->Owner(d).id(), s->id);
    }
  }
  EXPECT_EQ(total, 30);
}

TEST_F(AsyncAttestationClientTest, FollowsRedirectAndCachesTheOwner) {
  StartShards(2);
  // The client only knows shard-0: its ring sends everything there, and
  // shard-0 redirects what shard-1 owns.
  int foreign = 0;
  while (shards_[0]->ring->Owner(DeviceId(foreign)).id() != "shard-1") {
    ++foreign;
  }
  AsyncAttestationClient client({endpoints_[0]}, pki_.client, {});
  auto r = Challenge(client, DeviceId(foreign));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->nonce(), "nonce-from-shard-1");
  EXPECT_EQ(client.stats().redirects, 1u);
  EXPECT_EQ(client.stats().cached_owners, 1u);
  // The Attest that follows goes straight to the owner.
  absl::Notification done;
  v1::AttestRequest req;
  req.set_device_id(DeviceId(foreign));
  client.Attest(req, [&](absl::StatusOr<v1::AttestResponse> a) {
    EXPECT_TRUE(a.ok()) << a.status();
    if (a.ok()) EXPECT_EQ(a->tenant_id(), "shard-1");
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(client.stats().redirects, 1u);
  EXPECT_EQ(shards_[0]->calls(), 1);
  EXPECT_EQ(shards_[1]->calls(), 2);
}

TEST_F(AsyncAttestationClientTest, OwnerCacheStaysBounded) {
  StartShards(2);
  AsyncAttestationClient::Options options;
  options.max_cached_owners = 3;
  AsyncAttestationClient client({endpoints_[0]}, pki_.client, options);
  int redirected = 0;
  for (int i = 0; redirected < 10; ++i) {
    if (shards_[0]->ring->Owner(DeviceId(i)).id() != "shard-1") continue;
    ASSERT_TRUE(Challenge(client, DeviceId(i)).ok());
    ++redirected;
    EXPECT_LE(client.stats().cached_owners, 3u);
  }
  EXPECT_EQ(client.stats().redirects, 10u);
  EXPECT_EQ(client.stats().cached_owners, 3u);
}

TEST_F(AsyncAttestationClientTest, Attack_RedirectLoopIsBoundedAndFails) {
  StartShards(1);
  shards_[0]->redirect_to = endpoints_[0].address;  // to itself, forever
  AsyncAttestationClient client(endpoints_, pki_.client, {});
  auto r = Challenge(client, DeviceId(1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "more than 3"))
      << r.status();
  EXPECT_EQ(shards_[0]->calls(), 4);  // first try + 3 hops, then stop
}

TEST_F(AsyncAttestationClientTest, Attack_OverlongRedirectTargetIsRefused) {
  StartShards(1);
  shards_[0]->redirect_to = std::string(300, 'a') + ":1";
  AsyncAttestationClient client(endpoints_, pki_.client, {});
  auto r = Challenge(client, DeviceId(1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "longer than 255"))
      << r.status();
  EXPECT_EQ(client.stats().cached_owners, 0u);  // nothing remembered
  EXPECT_EQ(shards_[0]->calls(), 1);
}

TEST_F(AsyncAttestationClientTest, RefusalsArePassedBackOnceWithTheirCode) {
  StartShards(1);
  for (auto code :
       {absl::StatusCode::kNotFound, absl::StatusCode::kFailedPrecondition,
        absl::StatusCode::kPermissionDenied, absl::StatusCode::kUnavailable}) {
    shards_[0]->fail = absl::Status(code, "refused by fake");
    AsyncAttestationClient client(endpoints_, pki_.client, {});
    const int before = shards_[0]->calls();
    auto r = Challenge(client, DeviceId(7));
    EXPECT_EQ(r.status().code(), code);
    EXPECT_TRUE(absl::StrContains(r.status().message(), "refused by fake"));
    EXPECT_TRUE(absl::StrContains(r.status().message(), "GetChallenge at "));
    EXPECT_EQ(shards_[0]->calls(), before + 1);  // the client never retries
  }
}

TEST_F(AsyncAttestationClientTest, WindowBoundsCallsInFlightAndQueue) {
  StartShards(1);
  shards_[0]->hold = true;
  AsyncAttestationClient::Options options;
  options.max_in_flight = 2;
  options.max_queued = 1;
  AsyncAttestationClient client(endpoints_, pki_.client, options);
  absl::Mutex mu;
  std::vector<absl::Status> results;
  auto record = [&](absl::StatusOr<v1::GetChallengeResponse> r) {
    absl::MutexLock l(&mu);
    results.push_back(r.status());
  };
  for (int i = 0; i < 4; ++i) {
    v1::GetChallengeRequest req;
    req.set_device_id(DeviceId(i));
    client.GetChallenge(req, record);
  }
  // The fourth found the window and the queue full: refused at once.
  {
    absl::MutexLock l(&mu);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].code(), absl::StatusCode::kResourceExhausted);
  }
  shards_[0]->ExpectHeld(2);
  EXPECT_EQ(shards_[0]->calls(), 2);  // the third waits in the client
  shards_[0]->Release();
  absl::MutexLock l(&mu);
  mu.Await(absl::Condition(
      +[](std::vector<absl::Status>* r) { return r->size() == 4; }, &results));
  for (size_t i = 1; i < results.size(); ++i) EXPECT_TRUE(results[i].ok());
  EXPECT_EQ(shards_[0]->max_held(), 2u);
  EXPECT_EQ(client.stats().max_in_flight_seen, 2);
  EXPECT_EQ(client.stats().rejected, 1u);
}

TEST_F(AsyncAttestationClientTest, Fault_UnreachableShardIsUnavailable) {
  StartShards(1);
  std::vector<cluster::ShardEndpoint> gone = {{"shard-0", "127.0.0.1:1"}};
  AsyncAttestationClient::Options options;
  options.deadline = absl::Seconds(5);
  AsyncAttestationClient client(gone, pki_.client, options);
  auto r = Challenge(client, DeviceId(1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(shards_[0]->calls(), 0);
}

TEST_F(AsyncAttestationClientTest, Fault_NoShardsFailsWithoutHanging) {
  AsyncAttestationClient client({}, pki_.client, {});
  auto r = Challenge(client, DeviceId(1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "lists no shards"));
}

// Failover: cluster.json lists shard-0, shard-1 and a shard that is dead
// (nothing listens); the live shards' ring (their lease-based membership) is
// shard-0, shard-1 and shard-2, which cluster.json does not list. A device
// the dead shard owns by cluster.json's ring: the first call comes back
// UNAVAILABLE (the caller backs off), the second marks the dead shard down
// and goes at once to the next shard on the ring, which redirects by its
// live ring to shard-2; the owner is cached, so the third call goes
// straight there.
TEST_F(AsyncAttestationClientTest,
       Fault_DeadOwnerFailsOverAndFollowsTheLiveRingsRedirect) {
  StartShards(3);
  std::vector<cluster::ShardEndpoint> listed = {
      endpoints_[0], endpoints_[1], {"shard-dead", "127.0.0.1:1"}};
  const ShardRing cluster_ring(ShardMapFromEndpoints(listed));
  std::string id;
  for (int i = 0; i < 2000 && id.empty(); ++i) {
    if (cluster_ring.Owner(DeviceId(i)).id() == "shard-dead" &&
        shards_[0]->ring->Owner(DeviceId(i)).id() == "shard-2") {
      id = DeviceId(i);
    }
  }
  ASSERT_FALSE(id.empty());
  AsyncAttestationClient::Options options;
  options.deadline = absl::Seconds(10);
  AsyncAttestationClient client(listed, pki_.client, options);

  auto first = Challenge(client, id);
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable)
      << first.status();
  EXPECT_EQ(client.stats().failovers, 0u);
  EXPECT_EQ(shards_[0]->calls() + shards_[1]->calls() + shards_[2]->calls(), 0);

  auto second = Challenge(client, id);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->nonce(), "nonce-from-shard-2");
  EXPECT_EQ(client.stats().failovers, 1u);
  EXPECT_EQ(client.stats().redirects, 1u);
  EXPECT_EQ(client.stats().unreachable, 2u);
  const std::string next = cluster_ring.Successors(id, 2)[1]->id();
  const int via = next == "shard-0" ? 0 : 1;
  EXPECT_EQ(shards_[via]->calls(), 1);  // redirected
  EXPECT_EQ(shards_[2]->calls(), 1);

  auto third = Challenge(client, id);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(shards_[via]->calls(), 1);  // not asked again: owner cached
  EXPECT_EQ(shards_[2]->calls(), 2);
  EXPECT_EQ(client.stats().unreachable, 2u);  // the dead shard skipped
  EXPECT_EQ(client.stats().cached_owners, 1u);
}

// Attest follows the same route (the same router) as GetChallenge.
TEST_F(AsyncAttestationClientTest, Fault_AttestFailsOverLikeGetChallenge) {
  StartShards(2);
  std::vector<cluster::ShardEndpoint> listed = {
      endpoints_[0], endpoints_[1], {"shard-dead", "127.0.0.1:1"}};
  const ShardRing cluster_ring(ShardMapFromEndpoints(listed));
  std::string id;
  for (int i = 0; i < 2000 && id.empty(); ++i) {
    if (cluster_ring.Owner(DeviceId(i)).id() == "shard-dead") id = DeviceId(i);
  }
  ASSERT_FALSE(id.empty());
  AsyncAttestationClient client(listed, pki_.client, {});
  auto attest = [&] {
    absl::Notification done;
    absl::StatusOr<v1::AttestResponse> result;
    v1::AttestRequest req;
    req.set_device_id(id);
    client.Attest(req, [&](auto r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  };
  EXPECT_EQ(attest().status().code(), absl::StatusCode::kUnavailable);
  auto r = attest();
  ASSERT_TRUE(r.ok()) << r.status();
  // Answered by the live ring's owner (after at most one redirect).
  EXPECT_EQ(r->tenant_id(), shards_[0]->ring->Owner(id).id());
  EXPECT_EQ(client.stats().failovers, 1u);
}

// Refusals are answers: they never count towards failover, whatever their
// number, and no other shard is asked.
TEST_F(AsyncAttestationClientTest, RefusalsNeverFailOver) {
  StartShards(3);
  const std::string id = DeviceId(4);
  const std::string owner = shards_[0]->ring->Owner(id).id();
  for (auto& s : shards_) {
    if (s->id == owner) s->fail = absl::PermissionDeniedError("revoked");
  }
  AsyncAttestationClient client(endpoints_, pki_.client, {});
  for (int i = 0; i < 4; ++i) {
    auto r = Challenge(client, id);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  }
  for (auto& s : shards_) {
    EXPECT_EQ(s->calls(), s->id == owner ? 4 : 0) << s->id;
  }
  EXPECT_EQ(client.stats().failovers, 0u);
  EXPECT_EQ(client.stats().unreachable, 0u);
}

// A connected shard that answers UNAVAILABLE (catalog stale) is alive: no
// failover (another shard would only redirect back to it).
TEST_F(AsyncAttestationClientTest, Fault_ServerSentUnavailableDoesNotFailOver) {
  StartShards(3);
  const std::string id = DeviceId(5);
  const std::string owner = shards_[0]->ring->Owner(id).id();
  for (auto& s : shards_) {
    if (s->id == owner) s->fail = absl::UnavailableError("catalog stale");
  }
  AsyncAttestationClient client(endpoints_, pki_.client, {});
  for (int i = 0; i < 4; ++i) {
    auto r = Challenge(client, id);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(absl::StrContains(r.status().message(), "catalog stale"));
  }
  for (auto& s : shards_) {
    EXPECT_EQ(s->calls(), s->id == owner ? 4 : 0) << s->id;
  }
  EXPECT_EQ(client.stats().failovers, 0u);
}

// Every listed shard dead: calls end UNAVAILABLE, bounded (no loop).
TEST_F(AsyncAttestationClientTest, Fault_EveryShardDeadEndsUnavailable) {
  std::vector<cluster::ShardEndpoint> dead = {{"shard-0", "127.0.0.1:1"},
                                              {"shard-1", "127.0.0.1:2"},
                                              {"shard-2", "127.0.0.1:3"}};
  AsyncAttestationClient client(dead, pki_.client, {});
  for (int i = 0; i < 4; ++i) {
    auto r = Challenge(client, DeviceId(6));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  }
  // Each call tries at most 1 + max_failovers shards.
  EXPECT_LE(client.stats().unreachable, 4u * 3u);
}

// Batching (gateways): calls held per owning shard, one RPC per batch.
class BatchingTest : public AsyncAttestationClientTest {
 protected:
  struct Results {
    absl::Mutex mu;
    std::map<std::string, absl::StatusOr<v1::GetChallengeResponse>> challenges;
    std::map<std::string, absl::StatusOr<v1::AttestResponse>> attests;
    size_t size() {
      absl::MutexLock l(&mu);
      return challenges.size() + attests.size();
    }
    void Await(size_t n) {
      std::pair<Results*, size_t> arg{this, n};
      absl::MutexLock l(&mu);
      mu.Await(absl::Condition(
          +[](std::pair<Results*, size_t>* a) {
            return a->first->challenges.size() + a->first->attests.size() >=
                   a->second;
          },
          &arg));
    }
  };
  void Challenge(AsyncAttestationClient& client, const std::string& id,
                 Results* out) {
    v1::GetChallengeRequest req;
    req.set_device_id(id);
    client.GetChallenge(req, [out, id](auto r) {
      absl::MutexLock l(&out->mu);
      out->challenges.emplace(id, std::move(r));
    });
  }
  void Attest(AsyncAttestationClient& client, const std::string& id,
              Results* out) {
    v1::AttestRequest req;
    req.set_device_id(id);
    req.mutable_quote()->set_signature(absl::StrCat("quote-of-", id));
    client.Attest(req, [out, id](auto r) {
      absl::MutexLock l(&out->mu);
      out->attests.emplace(id, std::move(r));
    });
  }
  // SplitByOwner: three devices shard-1 owns (`foreign`) and three it does
  // not (`local`), from two started shards.
  void SplitByOwner(std::vector<std::string>* foreign,
                    std::vector<std::string>* local) {
    for (int i = 0; foreign->size() < 3 || local->size() < 3; ++i) {
      (shards_[0]->ring->Owner(DeviceId(i)).id() == "shard-1" ? foreign
                                                               : local)
          ->push_back(DeviceId(i));
    }
    foreign->resize(3);
    local->resize(3);
  }
};

TEST_F(BatchingTest, OneRpcPerShardBatchAndEveryItemAnsweredByItsOwner) {
  StartShards(3);
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(8));
  Results results;
  for (int i = 0; i < 20; ++i) Challenge(client, DeviceId(i), &results);
  for (int i = 0; i < 20; ++i) Attest(client, DeviceId(i), &results);
  client.Flush();
  results.Await(40);
  for (int i = 0; i < 20; ++i) {
    auto& c = results.challenges.at(DeviceId(i));
    ASSERT_TRUE(c.ok()) << c.status();
    const std::string owner = shards_[0]->ring->Owner(DeviceId(i)).id();
    EXPECT_EQ(c->nonce(), absl::StrCat("nonce-from-", owner));
    auto& a = results.attests.at(DeviceId(i));
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->tenant_id(), owner);
  }
  int rpcs = 0, items = 0;
  for (auto& s : shards_) {
    for (int n : s->batch_sizes()) {
      ++rpcs;
      items += n;
      EXPECT_LE(n, 8);
    }
    for (const auto& d : s->devices()) EXPECT_EQ(s->ring->Owner(d).id(), s->id);
  }
  EXPECT_EQ(items, 40);
  const auto stats = client.stats();
  EXPECT_EQ(stats.batches, static_cast<uint64_t>(rpcs));
  EXPECT_EQ(stats.batched_items, 40u);
  EXPECT_EQ(stats.calls, 40u);
  EXPECT_LT(rpcs, 40);  // fewer RPCs than calls: 2 kinds x 3 shards x ~1
  EXPECT_EQ(stats.redirects, 0u);
}

TEST_F(BatchingTest, FullBatchGoesAtOnceTheRestWaitsForFlush) {
  StartShards(1);
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(4));
  Results results;
  for (int i = 0; i < 5; ++i) Challenge(client, DeviceId(i), &results);
  EXPECT_EQ(client.stats().batches, 1u);  // the first four, sent when full
  EXPECT_EQ(client.stats().batched_items, 4u);
  results.Await(4);
  client.Flush();
  results.Await(5);
  EXPECT_EQ(shards_[0]->batch_sizes(), (std::vector<int>{4, 1}));
  for (auto& [id, r] : results.challenges) EXPECT_TRUE(r.ok()) << r.status();
  client.Flush();  // nothing held: no RPC
  EXPECT_EQ(client.stats().batches, 2u);
}

TEST_F(BatchingTest, RedirectedItemIsSentAloneToTheOwnerAndCached) {
  StartShards(2);
  std::vector<std::string> foreign, local;
  SplitByOwner(&foreign, &local);
  // The client knows only shard-0, so everything is batched there.
  AsyncAttestationClient client({endpoints_[0]}, pki_.client, Batched(16));
  Results results;
  for (int i = 0; i < 3; ++i) {
    Challenge(client, foreign[i], &results);
    Challenge(client, local[i], &results);
  }
  client.Flush();
  results.Await(6);
  for (const auto& id : foreign) {
    auto& r = results.challenges.at(id);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->nonce(), "nonce-from-shard-1");
  }
  for (const auto& id : local) {
    EXPECT_EQ(results.challenges.at(id)->nonce(), "nonce-from-shard-0");
  }
  EXPECT_EQ(client.stats().redirects, 3u);
  EXPECT_EQ(client.stats().cached_owners, 3u);
  EXPECT_EQ(shards_[1]->calls(), 3);  // three single GetChallenge calls
  EXPECT_TRUE(shards_[1]->batch_sizes().empty());
  // Attest for a redirected device now goes to its owner's batch directly.
  Attest(client, foreign[0], &results);
  client.Flush();
  results.Await(7);
  EXPECT_EQ(results.attests.at(foreign[0])->tenant_id(), "shard-1");
  EXPECT_EQ(shards_[1]->batch_sizes(), (std::vector<int>{1}));
  EXPECT_EQ(client.stats().redirects, 3u);
}

// An AttestBatch item redirected by the shard is sent alone to the owner
// with its own quote (the batch holds the items' requests, not copies).
TEST_F(BatchingTest, RedirectedAttestItemIsResentAloneWithItsQuote) {
  StartShards(2);
  std::vector<std::string> foreign, local;
  SplitByOwner(&foreign, &local);
  AsyncAttestationClient client({endpoints_[0]}, pki_.client, Batched(16));
  Results results;
  for (int i = 0; i < 3; ++i) {
    Attest(client, foreign[i], &results);
    Attest(client, local[i], &results);
  }
  client.Flush();
  results.Await(6);
  EXPECT_EQ(shards_[0]->batch_sizes(), (std::vector<int>{6}));
  EXPECT_EQ(shards_[1]->calls(), 3);  // three single Attest calls
  const auto seen0 = shards_[0]->quotes();
  const auto seen1 = shards_[1]->quotes();
  for (const auto& id : foreign) {
    auto& r = results.attests.at(id);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tenant_id(), "shard-1");
    EXPECT_EQ(seen0.at(id), absl::StrCat("quote-of-", id));
    EXPECT_EQ(seen1.at(id), absl::StrCat("quote-of-", id));
  }
  for (const auto& id : local) {
    EXPECT_EQ(results.attests.at(id)->tenant_id(), "shard-0");
    EXPECT_EQ(seen0.at(id), absl::StrCat("quote-of-", id));
    EXPECT_EQ(seen1.count(id), 0u);
  }
  EXPECT_EQ(client.stats().redirects, 3u);
}

TEST_F(BatchingTest, ItemRefusalsKeepTheirCodeOthersSucceed) {
  StartShards(1);
  shards_[0]->item_fail[DeviceId(1)] = absl::NotFoundError("unknown device");
  shards_[0]->item_fail[DeviceId(2)] =
      absl::PermissionDeniedError("device revoked");
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(8));
  Results results;
  for (int i = 0; i < 4; ++i) Attest(client, DeviceId(i), &results);
  client.Flush();
  results.Await(4);
  EXPECT_TRUE(results.attests.at(DeviceId(0)).ok());
  EXPECT_TRUE(results.attests.at(DeviceId(3)).ok());
  const absl::Status nf = results.attests.at(DeviceId(1)).status();
  EXPECT_EQ(nf.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(nf.message(), "unknown device")) << nf;
  EXPECT_TRUE(absl::StrContains(nf.message(), "Attest at ")) << nf;
  EXPECT_EQ(results.attests.at(DeviceId(2)).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(shards_[0]->calls(), 1);  // one RPC, never retried
}

TEST_F(BatchingTest, Fault_FailedBatchRpcFailsEveryItemWithItsCode) {
  StartShards(1);
  shards_[0]->fail_batch =
      absl::PermissionDeniedError("batch calls are for gateways");
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(8));
  Results results;
  for (int i = 0; i < 3; ++i) Challenge(client, DeviceId(i), &results);
  client.Flush();
  results.Await(3);
  for (auto& [id, r] : results.challenges) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_TRUE(absl::StrContains(r.status().message(), "GetChallenges at "))
        << r.status();
  }
  EXPECT_EQ(shards_[0]->calls(), 1);
}

TEST_F(BatchingTest, Attack_ResultsOutOfOrderAreRefusedNotMisattributed) {
  StartShards(1);
  shards_[0]->scramble = true;
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(8));
  Results results;
  for (int i = 0; i < 3; ++i) Attest(client, DeviceId(i), &results);
  client.Flush();
  results.Await(3);
  // Reversed: the middle item lines up, the others name another device.
  EXPECT_TRUE(results.attests.at(DeviceId(1)).ok());
  for (int i : {0, 2}) {
    const absl::Status s = results.attests.at(DeviceId(i)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "not in request order")) << s;
  }
}

TEST_F(BatchingTest, Attack_OverlongItemRedirectIsRefusedAndNotCached) {
  StartShards(1);
  shards_[0]->item_redirect_to = std::string(300, 'a') + ":1";
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(8));
  Results results;
  Challenge(client, DeviceId(1), &results);
  client.Flush();
  results.Await(1);
  const absl::Status s = results.challenges.at(DeviceId(1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(s.message(), "longer than 255")) << s;
  EXPECT_EQ(client.stats().cached_owners, 0u);
  EXPECT_EQ(client.stats().redirects, 0u);
  EXPECT_EQ(shards_[0]->calls(), 1);
}

TEST_F(BatchingTest, ChallengesAreBatchedPerCatalogRevision) {
  StartShards(1);
  AsyncAttestationClient client(endpoints_, pki_.client, Batched(8));
  Results results;
  auto challenge = [&](int i, int64_t revision) {
    v1::GetChallengeRequest req;
    req.set_device_id(DeviceId(i));
    req.set_min_catalog_revision(revision);
    client.GetChallenge(req, [&results, id = DeviceId(i)](auto r) {
      absl::MutexLock l(&results.mu);
      results.challenges.emplace(id, std::move(r));
    });
  };
  challenge(1, 7);
  challenge(2, 7);
  challenge(3, 9);  // another revision: the two held for 7 leave first
  challenge(4, 0);
  client.Flush();
  results.Await(4);
  for (auto& [id, r] : results.challenges) EXPECT_TRUE(r.ok()) << r.status();
  // Each batch asks for exactly its items' revision, never a mix.
  EXPECT_EQ(shards_[0]->batch_revisions(),
            (std::vector<std::pair<int64_t, int>>{{0, 1}, {7, 2}, {9, 1}}));
  EXPECT_EQ(client.stats().batches, 3u);
  EXPECT_EQ(client.stats().batched_items, 4u);
}

TEST_F(BatchingTest, Fault_HeldItemsAreCancelledWhenTheClientCloses) {
  StartShards(1);
  Results results;
  {
    AsyncAttestationClient client(endpoints_, pki_.client, Batched(8));
    Challenge(client, DeviceId(1), &results);
    Attest(client, DeviceId(2), &results);
  }
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results.challenges.at(DeviceId(1)).status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(results.attests.at(DeviceId(2)).status().code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(shards_[0]->calls(), 0);  // nothing was sent
}

}  // namespace
}  // namespace sphere::client
