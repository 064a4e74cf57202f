#include "client/backoff.h"

#include <gtest/gtest.h>

#include <set>

namespace sphere::client {
namespace {

TEST(BackoffTest, RetriesOnlyTransientCodes) {
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kResourceExhausted));
  EXPECT_TRUE(IsRetryable(absl::StatusCode::kDeadlineExceeded));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kFailedPrecondition));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kNotFound));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kPermissionDenied));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kUnauthenticated));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(IsRetryable(absl::StatusCode::kOk));
}

TEST(BackoffTest, GrpcDefaultsGrowBy1_6AndCapAt120s) {
  BackoffPolicy p;  // gRPC connection-backoff defaults
  EXPECT_EQ(BackoffDelay(p, 0, 0.5), absl::Seconds(1));
  EXPECT_EQ(BackoffDelay(p, 1, 0.5), absl::Milliseconds(1600));
  EXPECT_NEAR(absl::ToDoubleSeconds(BackoffDelay(p, 2, 0.5)), 2.56, 1e-9);
  EXPECT_EQ(BackoffDelay(p, 30, 0.5), absl::Seconds(120));
  EXPECT_EQ(BackoffDelay(p, 1000, 0.5), absl::Seconds(120));
}

TEST(BackoffTest, JitterStaysWithinTwentyPercent) {
  BackoffPolicy p;
  EXPECT_EQ(BackoffDelay(p, 0, 0.0), absl::Milliseconds(800));
  EXPECT_EQ(BackoffDelay(p, 0, 1.0), absl::Milliseconds(1200));
  EXPECT_EQ(BackoffDelay(p, 30, 1.0), absl::Seconds(144));
  for (uint64_t seed = 0; seed < 1000; ++seed) {
    absl::Duration d = BackoffDelay(p, 3, JitterFraction(seed));
    EXPECT_GE(d, absl::Seconds(4.096 * 0.8) - absl::Nanoseconds(1));
    EXPECT_LE(d, absl::Seconds(4.096 * 1.2) + absl::Nanoseconds(1));
  }
}

TEST(BackoffTest, JitterFractionSpreadsSeeds) {
  std::set<int> buckets;
  for (uint64_t seed = 0; seed < 1000; ++seed) {
    double f = JitterFraction(seed);
    ASSERT_GE(f, 0.0);
    ASSERT_LT(f, 1.0);
    buckets.insert(static_cast<int>(f * 10));
  }
  EXPECT_EQ(buckets.size(), 10u);  // consecutive seeds do not cluster
}

TEST(BackoffTest, ScaledDownPolicyForTests) {
  BackoffPolicy p{absl::Milliseconds(10), 2.0, 0.0, absl::Milliseconds(50)};
  EXPECT_EQ(BackoffDelay(p, 0, 0.9), absl::Milliseconds(10));
  EXPECT_EQ(BackoffDelay(p, 2, 0.1), absl::Milliseconds(40));
  EXPECT_EQ(BackoffDelay(p, 3, 0.1), absl::Milliseconds(50));
}

}  // namespace
}  // namespace sphere::client
