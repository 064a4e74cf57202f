#include "securitysvc/auth/rate_limiter.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace sphere::auth {
namespace {

TEST(KeyedRateLimiterTest, BurstThenSustainedRate) {
  FakeClock clock;
  KeyedRateLimiter limiter(&clock, {/*per_second=*/2, /*burst=*/3});
  EXPECT_TRUE(limiter.Allow("a"));
  EXPECT_TRUE(limiter.Allow("a"));
  EXPECT_TRUE(limiter.Allow("a"));
  EXPECT_FALSE(limiter.Allow("a"));
  EXPECT_EQ(limiter.RetryAfter("a"), absl::Milliseconds(500));
  clock.Advance(absl::Milliseconds(500));
  EXPECT_TRUE(limiter.Allow("a"));
  EXPECT_FALSE(limiter.Allow("a"));
  // A long pause refills only up to the burst.
  clock.Advance(absl::Hours(1));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Allow("a")) << i;
  EXPECT_FALSE(limiter.Allow("a"));
}

TEST(KeyedRateLimiterTest, Attack_OneKeyCannotSpendAnothersBudget) {
  FakeClock clock;
  KeyedRateLimiter limiter(&clock, {1, 2});
  for (int i = 0; i < 100; ++i) limiter.Allow("flooder");
  EXPECT_FALSE(limiter.Allow("flooder"));
  EXPECT_TRUE(limiter.Allow("victim"));
  EXPECT_TRUE(limiter.Allow("victim"));
  EXPECT_FALSE(limiter.Allow("victim"));
}

TEST(KeyedRateLimiterTest, Attack_DistinctKeyFloodStaysBounded) {
  FakeClock clock;
  KeyedRateLimiter limiter(&clock, {1, 2, /*max_keys=*/160});
  // The victim is active (bucket not full), flooders are all fresh keys.
  EXPECT_TRUE(limiter.Allow("victim"));
  for (int i = 0; i < 10000; ++i) {
    EXPECT_TRUE(limiter.Allow(absl::StrCat("flood-", i)));
  }
  EXPECT_LE(limiter.key_count(), 160u);
  // Idle buckets go first: after they refill, the table is reusable and a
  // key that was dropped behaves like a new one (never worse than absent).
  clock.Advance(absl::Seconds(10));
  EXPECT_TRUE(limiter.Allow("victim"));
  EXPECT_LE(limiter.key_count(), 160u);
}

TEST(KeyedRateLimiterTest, IdleKeysAreRetiredAsNewKeysArrive) {
  FakeClock clock;
  KeyedRateLimiter limiter(&clock, {1, 2});
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(limiter.Allow(absl::StrCat("device-", i)));
    clock.Advance(absl::Milliseconds(100));  // each bucket refills in 1 s
  }
  // Only about the keys of the last second or so remain (16 shards).
  EXPECT_LT(limiter.key_count(), 200u);
}

}  // namespace
}  // namespace sphere::auth
