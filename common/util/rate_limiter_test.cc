#include "common/util/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sphere {
namespace {

RateLimiter::Options Opts(double rate, double burst, size_t max_keys = 1024) {
  RateLimiter::Options o;
  o.rate_per_second = rate;
  o.burst = burst;
  o.max_keys = max_keys;
  return o;
}

TEST(RateLimiterTest, BurstThenRefusedUntilRefill) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(/*rate=*/2, /*burst=*/3));
  EXPECT_TRUE(limiter.TryAcquire("a"));
  EXPECT_TRUE(limiter.TryAcquire("a"));
  EXPECT_TRUE(limiter.TryAcquire("a"));
  EXPECT_FALSE(limiter.TryAcquire("a"));
  EXPECT_EQ(limiter.RetryAfter("a"), absl::Milliseconds(500));
  clock.Advance(absl::Milliseconds(499));
  EXPECT_FALSE(limiter.TryAcquire("a"));
  clock.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(limiter.TryAcquire("a"));
  EXPECT_FALSE(limiter.TryAcquire("a"));
}

TEST(RateLimiterTest, RefillIsCappedAtBurst) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(100, 2));
  EXPECT_TRUE(limiter.TryAcquire("a", 2));
  clock.Advance(absl::Hours(1));
  EXPECT_TRUE(limiter.TryAcquire("a", 2));
  EXPECT_FALSE(limiter.TryAcquire("a"));
}

TEST(RateLimiterTest, Attack_OneCallerCannotSpendAnothersBudget) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(1, 5));
  for (int i = 0; i < 1000; ++i) limiter.TryAcquire("mallory");
  EXPECT_FALSE(limiter.TryAcquire("mallory"));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.TryAcquire("alice")) << i;
  EXPECT_FALSE(limiter.TryAcquire("alice"));
}

TEST(RateLimiterTest, RefusedCallTakesNothing) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(1, 4));
  EXPECT_TRUE(limiter.TryAcquire("a", 3));
  EXPECT_FALSE(limiter.TryAcquire("a", 2));  // 1 left: refused, keeps it
  EXPECT_TRUE(limiter.TryAcquire("a", 1));
}

TEST(RateLimiterTest, CostAboveBurstIsAlwaysRefusedWithSpecificError) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(1, 4));
  absl::Status s = limiter.Acquire("a", "image upload", 5);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(s.message(), "larger than")) << s;
  EXPECT_FALSE(limiter.TryAcquire("a", -1));
  // Nothing was taken.
  EXPECT_TRUE(limiter.TryAcquire("a", 4));
}

TEST(RateLimiterTest, AcquireNamesOperationAndRetryDelay) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(4, 1));
  EXPECT_TRUE(limiter.Acquire("op", "credential issuance").ok());
  absl::Status s = limiter.Acquire("op", "credential issuance");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(s.message(), "credential issuance")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "retry in 250 ms")) << s;
}

TEST(RateLimiterTest, Attack_ManyKeysStayBounded) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(1, 2, /*max_keys=*/64));
  for (int i = 0; i < 10000; ++i) {
    limiter.TryAcquire(absl::StrCat("key-", i));
  }
  EXPECT_LE(limiter.Size(), 64u);
}

TEST(RateLimiterTest, Attack_EvictionDropsRefilledBucketsNotSpentOnes) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(1, 2, /*max_keys=*/64));
  EXPECT_TRUE(limiter.TryAcquire("hot", 2));
  EXPECT_FALSE(limiter.TryAcquire("hot"));
  // An attacker cycling through many fresh keys (whose buckets stay full)
  // must not push the spent bucket out and so reset its budget.
  for (int i = 0; i < 5000; ++i) limiter.TryAcquire(absl::StrCat("k", i), 0);
  EXPECT_LE(limiter.Size(), 64u);
  EXPECT_FALSE(limiter.TryAcquire("hot"));
}

// Issue 14 (a shard's memory per device): a limiter keyed by device id
// must not keep a bucket for every device it has seen until max_keys. Full
// buckets are dropped as new keys arrive; spent ones are kept.
TEST(RateLimiterTest, FullBucketsAreDroppedLongBeforeTheLimit) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(1, 2, /*max_keys=*/65536));
  ASSERT_TRUE(limiter.TryAcquire("hot", 2));  // spent: refills in 2 s
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(limiter.TryAcquire(absl::StrCat("early-", i)));
    clock.Advance(absl::Microseconds(100));  // 0.3 s in all
  }
  EXPECT_FALSE(limiter.TryAcquire("hot"));  // its spent bucket survived
  // 100,000 devices, one call each, 10 ms apart: each bucket is full again
  // 1 s later, so about 100 buckets carry state at any time.
  for (int i = 0; i < 100000; ++i) {
    ASSERT_TRUE(limiter.TryAcquire(absl::StrCat("device-", i)));
    clock.Advance(absl::Milliseconds(10));
  }
  // 16 shards of at most max(kSweepMin, 2 * live) buckets each, far below
  // the 65,536 the limit alone would allow.
  EXPECT_LE(limiter.Size(), 16u * 64u);
  EXPECT_GE(limiter.Size(), 90u);  // the last second's callers are kept
  // And every answer is as before: a recent caller's budget is still spent.
  EXPECT_TRUE(limiter.TryAcquire("device-99999"));
  EXPECT_FALSE(limiter.TryAcquire("device-99999"));
}

TEST(RateLimiterTest, LongKeysAreFoldedButStillDistinct) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(1, 1));
  std::string a(10000, 'x');
  std::string b = a;
  b.back() = 'y';
  EXPECT_TRUE(limiter.TryAcquire(a));
  EXPECT_FALSE(limiter.TryAcquire(a));
  EXPECT_TRUE(limiter.TryAcquire(b));
}

TEST(RateLimiterTest, ConcurrentCallersNeverOverspend) {
  FakeClock clock;
  RateLimiter limiter(&clock, Opts(1, 100));
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        if (limiter.TryAcquire("shared")) ++granted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 100);
}

}  // namespace
}  // namespace sphere
