#include "cli/retry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

namespace sphere::cli {
namespace {

using ::testing::HasSubstr;

absl::Status LostRace() {
  return absl::AbortedError(
      "another management replica changed the catalog at the same time (now "
      "at revision 9); nothing changed; retry the request");
}

struct Recorder {
  std::vector<absl::Duration> sleeps;
  std::function<void(absl::Duration)> Sleep() {
    return [this](absl::Duration d) { sleeps.push_back(d); };
  }
};

TEST(CliRetryTest, LostRaceIsRetriedUntilItSucceeds) {
  int calls = 0;
  Recorder r;
  absl::Status s =
      CallWithRetry([&] { return ++calls < 3 ? LostRace() : absl::OkStatus(); },
                    RetryOptions(), r.Sleep());
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(calls, 3);
  ASSERT_EQ(r.sleeps.size(), 2u);
  // 50 ms then 100 ms, each within +-20 % jitter.
  EXPECT_GE(r.sleeps[0], absl::Milliseconds(40));
  EXPECT_LE(r.sleeps[0], absl::Milliseconds(60));
  EXPECT_GE(r.sleeps[1], absl::Milliseconds(80));
  EXPECT_LE(r.sleeps[1], absl::Milliseconds(120));
}

TEST(CliRetryTest, GivesUpAfterMaxAttemptsWithAClearError) {
  int calls = 0;
  Recorder r;
  absl::Status s = CallWithRetry(
      [&] {
        ++calls;
        return LostRace();
      },
      RetryOptions(), r.Sleep());
  EXPECT_TRUE(absl::IsAborted(s)) << s;
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(r.sleeps.size(), 4u);
  EXPECT_THAT(s.message(), HasSubstr("gave up after 5 attempts"));
  EXPECT_THAT(s.message(), HasSubstr("nothing changed"));
  EXPECT_THAT(s.message(), HasSubstr("now at revision 9"));
}

TEST(CliRetryTest, WaitingIsBoundedInTotal) {
  RetryOptions o;
  o.max_attempts = 100;
  o.max_total_wait = absl::Milliseconds(500);
  Recorder r;
  int calls = 0;
  absl::Status s = CallWithRetry(
      [&] {
        ++calls;
        return LostRace();
      },
      o, r.Sleep());
  EXPECT_TRUE(absl::IsAborted(s));
  absl::Duration total;
  for (absl::Duration d : r.sleeps) {
    total += d;
    EXPECT_LE(d, absl::Milliseconds(1200)) << "above max backoff + jitter";
  }
  EXPECT_LE(total, absl::Milliseconds(500));
  EXPECT_LT(calls, 100);
}

TEST(CliRetryTest, OtherFailuresAreNotRetried) {
  for (absl::Status answer :
       {absl::UnavailableError("management unreachable"),
        absl::DeadlineExceededError("no answer"),
        absl::FailedPreconditionError("device already claimed"),
        absl::AbortedError("the catalog change log was compacted past "
                           "revision 3 while this watcher was replaying it"),
        absl::OkStatus()}) {
    int calls = 0;
    Recorder r;
    absl::Status s = CallWithRetry(
        [&] {
          ++calls;
          return answer;
        },
        RetryOptions(), r.Sleep());
    EXPECT_EQ(s, answer);
    EXPECT_EQ(calls, 1) << answer;
    EXPECT_TRUE(r.sleeps.empty());
  }
}

TEST(CliRetryTest, JitterSeedsSpreadRetries) {
  std::vector<absl::Duration> first;
  for (uint64_t seed : {1u, 2u, 3u, 4u}) {
    RetryOptions o;
    o.jitter_seed = seed * 0x9e3779b97f4a7c15ull;
    Recorder r;
    int calls = 0;
    (void)CallWithRetry(
        [&] { return ++calls < 2 ? LostRace() : absl::OkStatus(); }, o,
        r.Sleep());
    ASSERT_EQ(r.sleeps.size(), 1u);
    first.push_back(r.sleeps[0]);
  }
  bool differ = false;
  for (absl::Duration d : first) differ |= d != first[0];
  EXPECT_TRUE(differ) << "every client would retry at the same moment";
}

}  // namespace
}  // namespace sphere::cli
