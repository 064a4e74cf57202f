#include "twin/error_uploader.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "gtest/gtest.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"

namespace sphere::twin {
namespace {

class ErrorUploaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    signing_key_ = new crypto::EcPrivateKey(crypto::EcPrivateKey::Generate());
    auto images = mcu::BuildFactoryImages(*signing_key_, 1);
    ASSERT_TRUE(images.ok()) << images.status();
    images_ = new std::vector<v1::StoredImage>();
    for (const auto& p : *images) images_->push_back(mcu::ToStoredImage(p));
  }
  void SetUp() override {
    policy_.max_batch = 100;
    policy_.batch_delay = absl::Seconds(10);
    policy_.backoff = {absl::Seconds(1), 1.6, 0.2, absl::Seconds(120)};
    auto dev = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                        signing_key_->PublicKey(),
                                        {.seed = "error-uploader-test"});
    ASSERT_TRUE(dev.ok()) << dev.status();
    device_ = std::move(*dev);
    ASSERT_TRUE(device_->InstallFactoryImages(*images_).ok());
    device_->DrainErrorEvents();  // start from an empty ring
  }
  void Tamper(int n) {
    for (int i = 0; i < n; ++i)
      device_->TriggerTamper(absl::StrCat("probe-", i));
  }
  static v1::UploadErrorsResponse Ok(int stored) {
    v1::UploadErrorsResponse r;
    r.set_stored(stored);
    return r;
  }

  static inline crypto::EcPrivateKey* signing_key_ = nullptr;
  static inline std::vector<v1::StoredImage>* images_ = nullptr;
  ErrorUploadPolicy policy_;
  std::unique_ptr<mcu::Device> device_;
  absl::Time now_ = absl::FromUnixSeconds(1767225600);
};

TEST_F(ErrorUploaderTest, WaitsForCompanyThenUploadsAndForgets) {
  ErrorUploader up(&policy_);
  EXPECT_FALSE(up.OnTimer(now_, *device_).has_value());  // nothing yet
  EXPECT_EQ(up.next_wakeup(), absl::InfiniteFuture());
  Tamper(3);
  EXPECT_FALSE(up.OnTimer(now_, *device_).has_value());  // batch delay
  EXPECT_EQ(up.next_wakeup(), now_ + absl::Seconds(10));
  auto req = up.OnTimer(now_ + absl::Seconds(10), *device_);
  ASSERT_TRUE(req.has_value());
  ASSERT_EQ(req->events_size(), 3);
  EXPECT_EQ(req->events(0).kind(), v1::ErrorEvent::TAMPER);
  EXPECT_EQ(req->events(0).component(), "pluton");
  EXPECT_LT(req->events(0).sequence(), req->events(1).sequence());
  EXPECT_LT(req->events(1).sequence(), req->events(2).sequence());
  EXPECT_EQ(req->dropped_events(), 0u);
  EXPECT_TRUE(req->device_id().empty());  // the credential names the device
  EXPECT_TRUE(up.in_flight());
  EXPECT_EQ(up.next_wakeup(), absl::InfiniteFuture());
  // Events recorded while the batch is in flight wait in the ring.
  Tamper(2);
  EXPECT_FALSE(up.OnTimer(now_ + absl::Seconds(11), *device_).has_value());
  up.OnUploaded(now_ + absl::Seconds(12), Ok(3));
  EXPECT_FALSE(up.in_flight());
  EXPECT_EQ(up.uploaded(), 3u);
  EXPECT_EQ(up.pending(), 0u);
  // Acknowledged events left the ring; the two new ones are still there.
  ASSERT_EQ(device_->error_events().size(), 2u);
  EXPECT_GT(device_->error_events()[0].sequence(), req->events(2).sequence());
  auto next = up.OnTimer(now_ + absl::Seconds(12), *device_);
  EXPECT_FALSE(next.has_value());  // the two new ones wait their delay
  next = up.OnTimer(now_ + absl::Seconds(22), *device_);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->events_size(), 2);
  EXPECT_GT(next->events(0).sequence(), req->events(2).sequence());
}

TEST_F(ErrorUploaderTest,
       Fault_TransientFailureResendsSameBatchWithJitteredBackoff) {
  ErrorUploader up(&policy_);
  Tamper(4);
  up.OnTimer(now_, *device_);
  absl::Time t = now_ + absl::Seconds(10);
  auto first = up.OnTimer(t, *device_);
  ASSERT_TRUE(first.has_value());
  absl::Duration previous_max = absl::ZeroDuration();
  for (int attempt = 0; attempt < 5; ++attempt) {
    up.OnUploaded(t, absl::UnavailableError("shard restarting"));
    EXPECT_EQ(up.retries(), attempt + 1);
    const absl::Duration wait = up.next_wakeup() - t;
    // gRPC connection backoff: 1 s * 1.6^n, +-20 %.
    double nominal = 1.0;
    for (int i = 0; i < attempt; ++i) nominal *= 1.6;
    EXPECT_GE(wait, absl::Seconds(nominal * 0.8) - absl::Milliseconds(1))
        << attempt;
    EXPECT_LE(wait, absl::Seconds(nominal * 1.2) + absl::Milliseconds(1))
        << attempt;
    EXPECT_FALSE(up.OnTimer(t + wait - absl::Milliseconds(1), *device_));
    t = up.next_wakeup();
    auto again = up.OnTimer(t, *device_);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());
    previous_max = wait;
  }
  up.OnUploaded(t, Ok(4));
  EXPECT_EQ(up.retries(), 0);
  EXPECT_EQ(up.uploaded(), 4u);
  EXPECT_EQ(up.pending(), 0u);
}

TEST_F(ErrorUploaderTest, DroppedEventsAreCountedAndReportedWithTheNextBatch) {
  const size_t cap = device_->type().error_ring_capacity;
  Tamper(static_cast<int>(cap) + 4);  // the ring drops its 4 oldest
  policy_.max_pending = cap - 6;      // and we keep 6 fewer again
  ErrorUploader up(&policy_);
  auto req = up.OnTimer(now_, *device_);
  EXPECT_FALSE(req.has_value());
  req = up.OnTimer(now_ + absl::Seconds(10), *device_);
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(req->events_size(), static_cast<int>(cap - 6));
  EXPECT_EQ(req->dropped_events(), 4u + 6u);
  EXPECT_EQ(up.dropped(), 6u);
  // A retry reports the same cumulative count (idempotent).
  up.OnUploaded(now_ + absl::Seconds(10), absl::UnavailableError("x"));
  auto again = up.OnTimer(up.next_wakeup(), *device_);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->dropped_events(), 10u);
}

TEST_F(ErrorUploaderTest, Fault_RefusedBatchIsDroppedAndCounted) {
  ErrorUploader up(&policy_);
  Tamper(2);
  up.OnTimer(now_, *device_);
  auto req = up.OnTimer(now_ + absl::Seconds(10), *device_);
  ASSERT_TRUE(req.has_value());
  up.OnUploaded(now_ + absl::Seconds(10),
                absl::InvalidArgumentError("event 0: detail too long"));
  EXPECT_EQ(up.pending(), 0u);
  EXPECT_EQ(up.dropped(), 2u);
  Tamper(1);
  up.OnTimer(now_ + absl::Seconds(11), *device_);
  auto next = up.OnTimer(now_ + absl::Seconds(21), *device_);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->events_size(), 1);
  EXPECT_EQ(next->dropped_events(), 2u);
  // Any other refusal keeps the batch and waits the maximum backoff.
  up.OnUploaded(now_ + absl::Seconds(21),
                absl::PermissionDeniedError("revoked"));
  EXPECT_EQ(up.pending(), 1u);
  EXPECT_EQ(up.next_wakeup(), now_ + absl::Seconds(21) + absl::Seconds(120));
}

TEST_F(ErrorUploaderTest, FullBatchesGoAtOnce) {
  policy_.max_batch = 5;
  ErrorUploader up(&policy_);
  Tamper(12);
  auto a = up.OnTimer(now_, *device_);  // >= max_batch: no delay
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->events_size(), 5);
  up.OnUploaded(now_, Ok(5));
  auto b = up.OnTimer(now_, *device_);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->events_size(), 5);
  up.OnUploaded(now_, Ok(5));
  auto c = up.OnTimer(now_, *device_);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->events_size(), 2);
  up.OnUploaded(now_, Ok(2));
  EXPECT_EQ(up.uploaded(), 12u);
  EXPECT_EQ(up.next_wakeup(), absl::InfiniteFuture());
}

TEST_F(ErrorUploaderTest, Fault_FailedUploadKeepsEventsInTheRing) {
  ErrorUploader up(&policy_);
  Tamper(3);
  up.OnTimer(now_, *device_);
  auto req = up.OnTimer(now_ + absl::Seconds(10), *device_);
  ASSERT_TRUE(req.has_value());
  up.OnUploaded(now_ + absl::Seconds(10), absl::UnavailableError("no route"));
  // Nothing acknowledged: every event is still in the device's ring.
  ASSERT_EQ(device_->error_events().size(), 3u);
  EXPECT_EQ(device_->error_events()[0].sequence(), req->events(0).sequence());
  EXPECT_EQ(up.uploaded(), 0u);
  EXPECT_EQ(up.pending(), 3u);
}

// The twin process dies with a batch in flight (drained from nothing: the
// events stay in the ring) and restarts from its persisted device state:
// the same events, with the same sequences, are uploaded again, and the
// ring's drop count survived too.
TEST_F(ErrorUploaderTest, Fault_TwinRestartResendsUnacknowledgedEvents) {
  const size_t cap = device_->type().error_ring_capacity;
  Tamper(static_cast<int>(cap) + 2);  // the ring drops 2
  policy_.max_batch = 5;
  auto up = std::make_unique<ErrorUploader>(&policy_);
  auto sent = up->OnTimer(now_, *device_);
  ASSERT_TRUE(sent.has_value());
  ASSERT_EQ(sent->events_size(), 5);
  // The process is killed here (no answer). Its last saved state:
  auto saved = device_->Serialize();
  ASSERT_TRUE(saved.ok()) << saved.status();
  up.reset();
  device_.reset();
  auto restored = mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                                       signing_key_->PublicKey(), *saved, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  device_ = std::move(*restored);
  EXPECT_EQ(device_->error_events().size(), cap);
  EXPECT_EQ(device_->dropped_error_events(), 2u);
  ErrorUploader again(&policy_);
  auto resent = again.OnTimer(now_ + absl::Minutes(1), *device_);
  ASSERT_TRUE(resent.has_value());
  ASSERT_EQ(resent->events_size(), 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(resent->events(i).sequence(), sent->events(i).sequence());
    EXPECT_EQ(resent->events(i).detail(), sent->events(i).detail());
  }
  EXPECT_EQ(resent->dropped_events(), 2u);
  again.OnUploaded(now_ + absl::Minutes(1), Ok(5));
  EXPECT_EQ(device_->error_events().size(), cap - 5);
  // New events keep rising above the restored ones.
  const uint64_t newest = device_->error_events().back().sequence();
  Tamper(1);
  EXPECT_EQ(device_->error_events().back().sequence(), newest + 1);
}

}  // namespace
}  // namespace sphere::twin
