// FakeShardsTest: the server side the client tests share: n in-process fake
// shards over mTLS (test PKI) on port 0, one ring over all of them.
// `Service` is a gRPC callback service with `std::string id` and
// `std::shared_ptr<const ShardRing> ring` members (the fake uses the ring to
// answer or redirect).
#ifndef SPHERE_CLIENT_FAKE_SHARDS_TESTING_H_
#define SPHERE_CLIENT_FAKE_SHARDS_TESTING_H_

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/attestation_client.h"
#include "client/shard_ring.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"

namespace sphere::client {

template <typename Service>
class FakeShardsTest : public ::testing::Test {
 protected:
  // StartShards starts n fake shards sharing one ring.
  void StartShards(int n) {
    for (int i = 0; i < n; ++i) {
      shards_.push_back(std::make_unique<Service>());
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
    BeforeShutdown();
    for (auto& r : runners_) r->Shutdown(absl::Seconds(1));
  }
  // BeforeShutdown: what a test's fakes must do before their servers stop
  // (e.g. answer calls they hold).
  virtual void BeforeShutdown() {}

  test_support::TestPki pki_{"shard", "gateway"};
  std::vector<std::unique_ptr<Service>> shards_;
  std::vector<std::unique_ptr<rpc::ServerRunner>> runners_;
  std::vector<cluster::ShardEndpoint> endpoints_;
};

// TokenRedirectingShard: what the gateway-batch fakes (update_batch_test,
// upload_batch_test) share: a device another shard owns by `ring` is
// redirected (trailers for a single call, redirect_address for a batch
// item); for its own devices it records the session token each came with.
class TokenRedirectingShard {
 public:
  static constexpr char kTokenKey[] = "sphere-session-token";

  std::string id;
  std::shared_ptr<const ShardRing> ring;

  std::vector<int> batch_sizes() {
    absl::MutexLock l(&mu_);
    return batch_sizes_;
  }
  int single_calls() {
    absl::MutexLock l(&mu_);
    return single_calls_;
  }
  std::map<std::string, std::string> tokens() {
    absl::MutexLock l(&mu_);
    return tokens_;
  }

 protected:
  // AcceptSingle: counts a single call for `device`; false (the call
  // finished with the redirect) when another shard owns it, else records
  // the call's token.
  bool AcceptSingle(grpc::CallbackServerContext* ctx,
                    grpc::ServerUnaryReactor* reactor,
                    const std::string& device) {
    std::string token;
    const auto& md = ctx->client_metadata();
    if (auto it = md.find(kTokenKey); it != md.end()) {
      token.assign(it->second.data(), it->second.size());
    }
    const std::string owner = Owner(device);
    absl::MutexLock l(&mu_);
    ++single_calls_;
    if (!owner.empty()) {
      ctx->AddTrailingMetadata(kRedirectShardKey, "elsewhere");
      ctx->AddTrailingMetadata(kRedirectAddressKey, owner);
      reactor->Finish(
          grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "not mine"));
      return false;
    }
    tokens_[device] = token;
    return true;
  }
  // AcceptItem: a batch item for `device` (its result `r`); false (`r`
  // redirected) when another shard owns it, else records `token`.
  template <typename Result>
  bool AcceptItem(Result* r, const std::string& device,
                  const std::string& token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    r->set_device_id(device);
    const std::string owner = Owner(device);
    if (!owner.empty()) {
      r->set_code(static_cast<int>(absl::StatusCode::kFailedPrecondition));
      r->set_message("not mine");
      r->set_redirect_address(owner);
      return false;
    }
    tokens_[device] = token;
    return true;
  }
  // Owner: the owner's address when another shard owns `device`, else "".
  std::string Owner(const std::string& device) const {
    const v1::Shard& owner = ring->Owner(device);
    return owner.id() == id ? "" : owner.address();
  }

  absl::Mutex mu_;
  std::vector<int> batch_sizes_ ABSL_GUARDED_BY(mu_);
  int single_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::string> tokens_ ABSL_GUARDED_BY(mu_);
};

// ResultsByDevice: the answers a test's async calls got, by device; Await
// blocks until n have arrived.
template <typename Response>
struct ResultsByDevice {
  absl::Mutex mu;
  std::map<std::string, absl::StatusOr<Response>> by_device;
  void Await(size_t n) {
    std::pair<ResultsByDevice*, size_t> arg{this, n};
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(
        +[](std::pair<ResultsByDevice*, size_t>* a) {
          return a->first->by_device.size() >= a->second;
        },
        &arg));
  }
};

// Batched: client options holding gateway calls in batches of up to
// max_batch.
inline AsyncAttestationClient::Options Batched(int max_batch) {
  AsyncAttestationClient::Options o;
  o.max_batch = max_batch;
  return o;
}

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_FAKE_SHARDS_TESTING_H_
