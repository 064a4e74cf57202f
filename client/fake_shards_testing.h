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
