#include "securitysvc/attestation/nonce_store.h"

#include <string>
#include <thread>
#include <vector>

#include "common/util/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sphere::attestation {
namespace {

using ::testing::HasSubstr;

constexpr char kDeviceA[] = "device-a";
constexpr char kDeviceB[] = "device-b";

TEST(NonceStoreTest, IssuedNonceIsThirtyTwoBytesAndExpiresAfterTtl) {
  FakeClock clock;
  NonceStore nonces(&clock);
  auto c = nonces.Issue(kDeviceA);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->nonce.size(), 32u);
  EXPECT_EQ(c->expires, clock.Now() + absl::Seconds(30));
  EXPECT_EQ(nonces.size(), 1u);
}

TEST(NonceStoreTest, CheckDoesNotConsume) {
  FakeClock clock;
  NonceStore nonces(&clock);
  auto c = nonces.Issue(kDeviceA);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(nonces.Check(kDeviceA, c->nonce).ok());
  EXPECT_TRUE(nonces.Check(kDeviceA, c->nonce).ok());
  EXPECT_TRUE(nonces.Consume(kDeviceA, c->nonce).ok());
}

TEST(NonceStoreTest, SingleUse) {
  FakeClock clock;
  NonceStore nonces(&clock);
  auto c = nonces.Issue(kDeviceA);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(nonces.Consume(kDeviceA, c->nonce).ok());
  EXPECT_EQ(nonces.size(), 0u);

  auto again = nonces.Consume(kDeviceA, c->nonce);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(again.status().message(), HasSubstr("already used"));
  EXPECT_EQ(nonces.Check(kDeviceA, c->nonce).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(NonceStoreTest, UnknownNonceRejected) {
  FakeClock clock;
  NonceStore nonces(&clock);
  ASSERT_TRUE(nonces.Issue(kDeviceA).ok());
  auto s = nonces.Consume(kDeviceA, std::string(32, 'x'));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(s.status().message(), HasSubstr("unknown"));
  EXPECT_EQ(nonces.size(), 1u);
}

TEST(NonceStoreTest, ExpiresAfterTtl) {
  FakeClock clock;
  NonceStore nonces(&clock);
  auto c = nonces.Issue(kDeviceA);
  ASSERT_TRUE(c.ok());
  clock.Advance(absl::Seconds(30));
  EXPECT_TRUE(nonces.Check(kDeviceA, c->nonce).ok()) << "valid up to expiry";
  clock.Advance(absl::Seconds(1));
  absl::Status s = nonces.Check(kDeviceA, c->nonce);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(s.message(), HasSubstr("expired"));
  EXPECT_EQ(nonces.size(), 0u) << "an expired nonce is dropped when seen";
  EXPECT_THAT(nonces.Consume(kDeviceA, c->nonce).status().message(),
              HasSubstr("unknown or already used"));
}

TEST(NonceStoreTest, BoundToDevice) {
  FakeClock clock;
  NonceStore nonces(&clock);
  auto c = nonces.Issue(kDeviceA);
  ASSERT_TRUE(c.ok());
  auto s = nonces.Consume(kDeviceB, c->nonce);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(s.status().message(), HasSubstr("issued to another device"));
  // The wrong device's attempt did not burn the nonce.
  EXPECT_EQ(nonces.size(), 1u);
  EXPECT_TRUE(nonces.Consume(kDeviceA, c->nonce).ok());
}

TEST(NonceStoreTest, RestoreMakesConsumedNonceUsableUntilExpiry) {
  FakeClock clock;
  NonceStore nonces(&clock);
  auto c = nonces.Issue(kDeviceA);
  ASSERT_TRUE(c.ok());
  auto expires = nonces.Consume(kDeviceA, c->nonce);
  ASSERT_TRUE(expires.ok());
  EXPECT_EQ(*expires, c->expires);
  nonces.Restore(kDeviceA, c->nonce, *expires);
  EXPECT_EQ(nonces.size(), 1u);
  clock.Advance(absl::Seconds(31));
  EXPECT_THAT(nonces.Consume(kDeviceA, c->nonce).status().message(),
              HasSubstr("expired"))
      << "Restore keeps the original expiry";
}

TEST(NonceStoreTest, CapacityIsGlobalAndExhaustionIsResourceExhausted) {
  FakeClock clock;
  NonceStore nonces(&clock, {.ttl = absl::Seconds(30), .capacity = 4});
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(nonces.Issue(kDeviceA).ok()) << i;
  auto c = nonces.Issue(kDeviceB);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("retry with backoff"));
  EXPECT_EQ(nonces.size(), 4u);
}

TEST(NonceStoreTest, ConsumingFreesCapacity) {
  FakeClock clock;
  NonceStore nonces(&clock, {.ttl = absl::Seconds(30), .capacity = 2});
  auto a = nonces.Issue(kDeviceA);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(nonces.Issue(kDeviceA).ok());
  EXPECT_FALSE(nonces.Issue(kDeviceB).ok());
  ASSERT_TRUE(nonces.Consume(kDeviceA, a->nonce).ok());
  EXPECT_TRUE(nonces.Issue(kDeviceB).ok());
}

TEST(NonceStoreTest, ExpiredSweepFreesCapacity) {
  FakeClock clock;
  NonceStore nonces(&clock, {.ttl = absl::Seconds(30), .capacity = 3});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(nonces.Issue(kDeviceA).ok());
  ASSERT_EQ(nonces.Issue(kDeviceB).status().code(),
            absl::StatusCode::kResourceExhausted);
  clock.Advance(absl::Seconds(31));
  auto c = nonces.Issue(kDeviceB);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(nonces.size(), 1u) << "the three expired nonces were swept";
  EXPECT_TRUE(nonces.Consume(kDeviceB, c->nonce).ok());
}

TEST(NonceStoreTest, ConcurrentIssueNeverExceedsCapacity) {
  FakeClock clock;
  NonceStore nonces(&clock, {.ttl = absl::Seconds(30), .capacity = 100});
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (nonces.Issue(kDeviceA).ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 100);
  EXPECT_EQ(nonces.size(), 100u);
}

}  // namespace
}  // namespace sphere::attestation
