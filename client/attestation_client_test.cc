// AsyncAttestationClient against in-process fake shards (gRPC callback
// services over mTLS on port 0): ring routing, redirects and the owner
// cache, the redirect bound, the window, and errors passed through once.
#include "client/attestation_client.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"

namespace sphere::client {
namespace {

struct TestPki {
  crypto::EcPrivateKey root_key = crypto::EcPrivateKey::Generate();
  std::string root_pem;
  rpc::TlsFiles server, client;

  TestPki() {
    crypto::CertificateSpec root;
    root.common_name = "Test Root";
    root.subject_public_key = root_key.PublicKey();
    root.not_before = absl::Now() - absl::Hours(1);
    root.not_after = absl::Now() + absl::Hours(24);
    root.usage = crypto::KeyUsage::kCa;
    root_pem = *crypto::IssueCertificate(root, root_key, "");
    server = Leaf("shard", crypto::KeyUsage::kServerAuth);
    client = Leaf("gateway", crypto::KeyUsage::kClientAuth);
  }
  rpc::TlsFiles Leaf(const std::string& cn, crypto::KeyUsage usage) {
    auto key = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec spec;
    spec.common_name = cn;
    spec.subject_public_key = key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    spec.usage = usage;
    spec.dns_sans = {"localhost"};
    spec.ip_sans = {"127.0.0.1"};
    rpc::TlsFiles tls;
    tls.cert_pem = *crypto::IssueCertificate(spec, root_key, root_pem);
    tls.key_pem = key.ToPem();
    tls.ca_pem = root_pem;
    return tls;
  }
};

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
    return Handle(ctx, req->device_id());
  }

  int calls() {
    absl::MutexLock l(&mu_);
    return calls_;
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
      reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                   "not mine"));
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

  absl::Mutex mu_;
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

class AsyncAttestationClientTest : public ::testing::Test {
 protected:
  // StartShards starts n fake shards sharing one ring.
  void StartShards(int n) {
    for (int i = 0; i < n; ++i) {
      shards_.push_back(std::make_unique<FakeShard>());
      shards_.back()->id = absl::StrCat("shard-", i);
      rpc::ServerOptions options;
      options.tls = pki_.server;
      runners_.push_back(std::make_unique<rpc::ServerRunner>(options));
      runners_.back()->AddService(shards_.back().get());
      ASSERT_TRUE(runners_.back()->Start().ok());
      endpoints_.push_back(
          {shards_.back()->id,
           absl::StrCat("127.0.0.1:", runners_.back()->port())});
    }
    auto ring = std::make_shared<ShardRing>(ShardMapFromEndpoints(endpoints_));
    for (auto& s : shards_) s->ring = ring;
  }
  void TearDown() override {
    for (auto& s : shards_) s->Release();
    for (auto& r : runners_) r->Shutdown(absl::Seconds(1));
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

  TestPki pki_;
  std::vector<std::unique_ptr<FakeShard>> shards_;
  std::vector<std::unique_ptr<rpc::ServerRunner>> runners_;
  std::vector<cluster::ShardEndpoint> endpoints_;
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
  for (auto code : {absl::StatusCode::kNotFound,
                    absl::StatusCode::kFailedPrecondition,
                    absl::StatusCode::kPermissionDenied,
                    absl::StatusCode::kUnavailable}) {
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

}  // namespace
}  // namespace sphere::client
