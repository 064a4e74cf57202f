// The gateways' batch calls (GetChallenges, AttestBatch) on an in-process
// shard: many devices in two calls, each item answered as its single call
// would be, and the attacks a batch must not open.
#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "mcu-model/device.h"
#include "protos/attestation.grpc.pb.h"
#include "securitysvc/attestation/attestation_plugin.h"
#include "securitysvc/shard_server/test_platform.h"

namespace sphere::shard {
namespace {

constexpr int kDevices = 13;

class BatchAttestationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    platform_ = new TestPlatform;
    TestPlatform::Options o;
    ASSERT_TRUE(platform_->Start(o).ok());
    for (int i = 0; i < kDevices; ++i) {
      auto d = platform_->NewDevice(absl::StrCat("batch-test-device-", i));
      ASSERT_TRUE(d.ok()) << d.status();
      devices_->push_back(*std::move(d));
    }
  }
  static void TearDownTestSuite() {
    delete platform_;
    platform_ = nullptr;
    devices_->clear();
  }
  TestPlatform& p() { return *platform_; }
  mcu::Device& Dev(int i) { return *(*devices_)[i]; }
  bool HasRecord(int i) {
    return p().attestation().attestor()->LastRecord(Dev(i).device_id()).ok();
  }

  grpc::Status Challenges(v1::AttestationService::Stub* stub,
                          const std::vector<std::string>& ids,
                          v1::GetChallengesResponse* resp) {
    v1::GetChallengesRequest req;
    for (const auto& id : ids) req.add_device_ids(id);
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    return stub->GetChallenges(&ctx, req, resp);
  }
  grpc::Status AttestBatch(v1::AttestationService::Stub* stub,
                           const v1::AttestBatchRequest& req,
                           v1::AttestBatchResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    return stub->AttestBatch(&ctx, req, resp);
  }
  v1::AttestRequest QuoteFor(mcu::Device& d, const std::string& nonce) {
    v1::AttestRequest r;
    r.set_device_id(d.device_id());
    auto q = d.Quote(nonce);
    EXPECT_TRUE(q.ok()) << q.status();
    *r.mutable_quote() = *std::move(q);
    return r;
  }

  static TestPlatform* platform_;
  static std::vector<std::unique_ptr<mcu::Device>>* devices_;
};

TestPlatform* BatchAttestationTest::platform_ = nullptr;
std::vector<std::unique_ptr<mcu::Device>>* BatchAttestationTest::devices_ =
    new std::vector<std::unique_ptr<mcu::Device>>;

TEST_F(BatchAttestationTest, GatewayAttestsManyDevicesInTwoCalls) {
  auto stub = p().Stub(p().gateway_tls());
  std::vector<int> batch = {0, 1, 2, 3};
  std::vector<std::string> ids;
  for (int i : batch) ids.push_back(Dev(i).device_id());
  v1::GetChallengesResponse challenges;
  grpc::Status st = Challenges(stub.get(), ids, &challenges);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(challenges.results_size(), 4);
  v1::AttestBatchRequest req;
  for (size_t k = 0; k < batch.size(); ++k) {
    const auto& c = challenges.results(k);
    ASSERT_EQ(c.code(), 0) << c.message();
    EXPECT_EQ(c.device_id(), ids[k]);
    EXPECT_EQ(c.challenge().nonce().size(), 32u);
    *req.add_requests() = QuoteFor(Dev(batch[k]), c.challenge().nonce());
  }
  v1::AttestBatchResponse resp;
  st = AttestBatch(stub.get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 4);
  for (size_t k = 0; k < batch.size(); ++k) {
    const auto& r = resp.results(k);
    ASSERT_EQ(r.code(), 0) << r.message();
    EXPECT_EQ(r.device_id(), ids[k]);
    EXPECT_EQ(r.response().outcome(), v1::UP_TO_DATE);
    EXPECT_FALSE(r.response().certificate_chain_pem().empty());
    EXPECT_FALSE(r.response().session_token().empty());
    // Answered only once durable: the record is there.
    auto rec = p().attestation().attestor()->LastRecord(ids[k]);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_EQ(rec->certificate_serial(), r.response().certificate_serial());
  }
}

TEST_F(BatchAttestationTest, Attack_BadItemsFailAloneAndChangeNothing) {
  auto stub = p().Stub(p().gateway_tls());
  const std::string unknown =
      crypto::HexEncode(crypto::Sha256("never registered"));
  v1::GetChallengesResponse challenges;
  grpc::Status st = Challenges(
      stub.get(), {Dev(4).device_id(), "NOT-HEX", unknown, Dev(5).device_id()},
      &challenges);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(challenges.results_size(), 4);
  EXPECT_EQ(challenges.results(0).code(), 0);
  EXPECT_EQ(challenges.results(1).code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(challenges.results(1).device_id().empty());  // not echoed
  EXPECT_EQ(challenges.results(2).code(),
            static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_FALSE(challenges.results(2).has_challenge());
  ASSERT_EQ(challenges.results(3).code(), 0);

  v1::AttestBatchRequest req;
  // Device 4 with its own nonce: fine.
  *req.add_requests() =
      QuoteFor(Dev(4), challenges.results(0).challenge().nonce());
  // Device 5 quoting a nonce never issued to it (device 4's): refused.
  *req.add_requests() =
      QuoteFor(Dev(5), challenges.results(0).challenge().nonce());
  // Device 6's quote presented under device 7's id: refused.
  v1::AttestRequest swapped =
      QuoteFor(Dev(6), challenges.results(3).challenge().nonce());
  swapped.set_device_id(Dev(7).device_id());
  *req.add_requests() = swapped;
  v1::AttestBatchResponse resp;
  st = AttestBatch(stub.get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 3);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).message();
  EXPECT_EQ(resp.results(1).code(),
            static_cast<int>(absl::StatusCode::kUnauthenticated))
      << resp.results(1).message();
  EXPECT_FALSE(resp.results(1).has_response());
  EXPECT_EQ(resp.results(2).code(),
            static_cast<int>(absl::StatusCode::kUnauthenticated))
      << resp.results(2).message();
  EXPECT_TRUE(HasRecord(4));
  EXPECT_FALSE(HasRecord(5));
  EXPECT_FALSE(HasRecord(6));
  EXPECT_FALSE(HasRecord(7));
  // Device 5's own nonce was not burnt by the forged item.
  v1::AttestBatchRequest retry;
  *retry.add_requests() =
      QuoteFor(Dev(5), challenges.results(3).challenge().nonce());
  v1::AttestBatchResponse retry_resp;
  ASSERT_TRUE(AttestBatch(stub.get(), retry, &retry_resp).ok());
  EXPECT_EQ(retry_resp.results(0).code(), 0) << retry_resp.results(0).message();
  EXPECT_TRUE(HasRecord(5));
}

TEST_F(BatchAttestationTest, Attack_ReplayedBatchIsRefused) {
  auto stub = p().Stub(p().gateway_tls());
  v1::GetChallengesResponse challenges;
  ASSERT_TRUE(Challenges(stub.get(), {Dev(8).device_id()}, &challenges).ok());
  ASSERT_EQ(challenges.results(0).code(), 0);
  v1::AttestBatchRequest req;
  *req.add_requests() =
      QuoteFor(Dev(8), challenges.results(0).challenge().nonce());
  v1::AttestBatchResponse first, replay;
  ASSERT_TRUE(AttestBatch(stub.get(), req, &first).ok());
  ASSERT_EQ(first.results(0).code(), 0);
  auto before = p().attestation().attestor()->History(Dev(8).device_id());
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(AttestBatch(stub.get(), req, &replay).ok());
  EXPECT_EQ(replay.results(0).code(),
            static_cast<int>(absl::StatusCode::kUnauthenticated));
  EXPECT_FALSE(replay.results(0).has_response());
  // The last successful record is still the first one.
  auto last = p().attestation().attestor()->LastRecord(Dev(8).device_id());
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->certificate_serial(),
            first.results(0).response().certificate_serial());
}

TEST_F(BatchAttestationTest, Attack_DeviceCredentialMayNotUseBatches) {
  auto stub = p().Stub(p().ManufacturingTls(Dev(9)));
  v1::GetChallengesResponse challenges;
  grpc::Status st = Challenges(stub.get(), {Dev(9).device_id()}, &challenges);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  EXPECT_EQ(challenges.results_size(), 0);
  v1::AttestBatchRequest req;
  *req.add_requests() = QuoteFor(Dev(9), crypto::RandomBytes(32));
  v1::AttestBatchResponse resp;
  st = AttestBatch(stub.get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  EXPECT_EQ(resp.results_size(), 0);
  EXPECT_FALSE(HasRecord(9));
}

// A full batch (kMaxBatch distinct devices) is answered item by item, every
// record is durable when it returns, and both messages stay well inside the
// shard's limits (shard_main: --max_request_bytes 1 MiB, 8 MiB messages), so
// gateways may always send kMaxBatch items.
TEST_F(BatchAttestationTest, FullBatchIsAnsweredWithinTheShardsMessageLimits) {
  constexpr int kFull = attestation::AttestationServiceImpl::kMaxBatch;
  std::vector<std::unique_ptr<mcu::Device>> fleet;
  std::vector<std::string> ids;
  for (int i = 0; i < kFull; ++i) {
    auto d = p().NewDevice(absl::StrCat("full-batch-device-", i));
    ASSERT_TRUE(d.ok()) << d.status();
    ids.push_back((*d)->device_id());
    fleet.push_back(*std::move(d));
  }
  auto stub = p().Stub(p().gateway_tls());
  v1::GetChallengesResponse challenges;
  grpc::Status st = Challenges(stub.get(), ids, &challenges);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(challenges.results_size(), kFull);
  v1::AttestBatchRequest req;
  for (int k = 0; k < kFull; ++k) {
    ASSERT_EQ(challenges.results(k).code(), 0) << challenges.results(k).message();
    *req.add_requests() =
        QuoteFor(*fleet[k], challenges.results(k).challenge().nonce());
  }
  EXPECT_LT(req.ByteSizeLong(), size_t{1} << 19);  // half the request limit
  v1::AttestBatchResponse resp;
  st = AttestBatch(stub.get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), kFull);
  EXPECT_LT(resp.ByteSizeLong(), size_t{2} << 20);  // a quarter of 8 MiB
  for (int k = 0; k < kFull; ++k) {
    const auto& r = resp.results(k);
    ASSERT_EQ(r.code(), 0) << k << ": " << r.message();
    EXPECT_EQ(r.device_id(), ids[k]);
    EXPECT_EQ(r.response().outcome(), v1::UP_TO_DATE);
    auto rec = p().attestation().attestor()->LastRecord(ids[k]);
    ASSERT_TRUE(rec.ok()) << rec.status();
    EXPECT_EQ(rec->certificate_serial(), r.response().certificate_serial());
  }
}

TEST_F(BatchAttestationTest, Attack_OversizedBatchIsRefusedWhole) {
  auto stub = p().Stub(p().gateway_tls());
  std::vector<std::string> ids(
      attestation::AttestationServiceImpl::kMaxBatch + 1, Dev(10).device_id());
  v1::GetChallengesResponse challenges;
  grpc::Status st = Challenges(stub.get(), ids, &challenges);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << st.error_message();
  EXPECT_EQ(challenges.results_size(), 0);
  // No challenge was issued for it: the device's rate budget is untouched,
  // so a full burst of single challenges still succeeds.
  const int burst = static_cast<int>(
      attestation::AttestationPlugin::DefaultChallengeRate().burst);
  for (int i = 0; i < burst; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    v1::GetChallengeRequest one;
    one.set_device_id(Dev(10).device_id());
    v1::GetChallengeResponse c;
    ASSERT_TRUE(stub->GetChallenge(&ctx, one, &c).ok()) << i;
  }
  EXPECT_FALSE(HasRecord(10));
}

// Read-your-writes for a whole batch: a gateway names the catalog revision
// holding its devices' claims; the shard waits for it (parked on the
// RevisionGate, not on a callback thread) and answers every item from a
// catalog that holds the claim.
TEST_F(BatchAttestationTest,
       BatchForANewerRevisionIsAnsweredOnceTheCatalogHasIt) {
  auto stub = p().Stub(p().gateway_tls());
  const std::string claimed_now =
      crypto::HexEncode(crypto::Sha256("batch: claimed just now"));
  const int64_t next = p().catalog().revision() + 1;
  v1::GetChallengesRequest req;
  req.add_device_ids(claimed_now);
  req.add_device_ids(Dev(11).device_id());
  req.set_min_catalog_revision(next);
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
  v1::GetChallengesResponse resp;
  grpc::Status status;
  absl::Notification done;
  stub->async()->GetChallenges(&ctx, &req, &resp, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  // Meanwhile another batch without a revision is answered.
  v1::GetChallengesResponse other;
  grpc::Status st = Challenges(stub.get(), {Dev(0).device_id()}, &other);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(other.results_size(), 1);
  EXPECT_EQ(other.results(0).code(), 0) << other.results(0).message();

  v1::WatchEvent ev;
  ev.set_revision(next);
  ev.mutable_device()->set_id(claimed_now);
  ev.mutable_device()->set_tenant_id(TestPlatform::kTenant);
  ev.mutable_device()->set_state(v1::CLAIMED);
  ASSERT_TRUE(p().catalog().Apply(ev).ok());
  p().server().context().revision_gate->Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).device_id(), claimed_now);
  EXPECT_EQ(resp.results(1).device_id(), Dev(11).device_id());
  for (const auto& r : resp.results()) {
    EXPECT_EQ(r.code(), 0) << r.message();
    EXPECT_EQ(r.challenge().nonce().size(), 32u);
  }
}

// A forged far-future revision: every item is refused at once with the
// single call's UNAVAILABLE, nothing is parked, and no challenge is issued
// (the device's rate budget is untouched).
TEST_F(BatchAttestationTest,
       Attack_BatchWithAFarFutureRevisionIsRefusedAtOnce) {
  auto stub = p().Stub(p().gateway_tls());
  v1::GetChallengesRequest req;
  req.add_device_ids(Dev(12).device_id());
  req.add_device_ids("not-a-device-id");
  req.set_min_catalog_revision(std::numeric_limits<int64_t>::max());
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
  v1::GetChallengesResponse resp;
  grpc::Status st = stub->GetChallenges(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(),
            static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(absl::StrContains(resp.results(0).message(),
                                "requested 9223372036854775807"))
      << resp.results(0).message();
  EXPECT_FALSE(resp.results(0).has_challenge());
  // The malformed id is refused as malformed, and not echoed.
  EXPECT_EQ(resp.results(1).code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(resp.results(1).device_id().empty());
  EXPECT_EQ(p().server().context().revision_gate->parked(), 0u);
  const int burst = static_cast<int>(
      attestation::AttestationPlugin::DefaultChallengeRate().burst);
  for (int i = 0; i < burst; ++i) {
    grpc::ClientContext one_ctx;
    one_ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    v1::GetChallengeRequest one;
    one.set_device_id(Dev(12).device_id());
    v1::GetChallengeResponse c;
    ASSERT_TRUE(stub->GetChallenge(&one_ctx, one, &c).ok()) << i;
  }
  EXPECT_FALSE(HasRecord(12));
}

// A revoked device in a GetChallenges batch is refused on its own (the
// catalog is read once per item: AdmitChallenge's checks stand for
// GetChallenge's), gets no nonce and no record; its neighbour is answered.
TEST_F(BatchAttestationTest, Attack_RevokedDeviceInABatchGetsNoChallenge) {
  auto revoked_dev = p().NewDevice("batch-revoked-device");
  auto good_dev = p().NewDevice("batch-neighbour-device");
  ASSERT_TRUE(revoked_dev.ok() && good_dev.ok());
  const std::string id = (*revoked_dev)->device_id();
  auto rec = p().catalog().GetDevice(id);
  ASSERT_TRUE(rec.ok()) << rec.status();
  v1::Device revoked = *rec;
  revoked.set_state(v1::REVOKED);
  p().catalog().PutDevice(revoked);
  auto stub = p().Stub(p().gateway_tls());
  v1::GetChallengesResponse challenges;
  grpc::Status st =
      Challenges(stub.get(), {id, (*good_dev)->device_id()}, &challenges);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(challenges.results_size(), 2);
  EXPECT_EQ(challenges.results(0).code(),
            static_cast<int>(absl::StatusCode::kPermissionDenied));
  EXPECT_TRUE(absl::StrContains(challenges.results(0).message(), "revoked"))
      << challenges.results(0).message();
  EXPECT_FALSE(challenges.results(0).has_challenge());
  EXPECT_EQ(challenges.results(1).code(), 0) << challenges.results(1).message();
  EXPECT_EQ(challenges.results(1).challenge().nonce().size(), 32u);
  // Nothing changed for the revoked device: no record, still revoked.
  EXPECT_FALSE(p().attestation().attestor()->LastRecord(id).ok());
  EXPECT_EQ(p().catalog().GetDevice(id)->state(), v1::REVOKED);
}

}  // namespace
}  // namespace sphere::shard
