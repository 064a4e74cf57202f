// RevocationQueue tests: delivery, retries of transient failures, final
// failures, deduplication and the bound. No sleeps: the fake revoke blocks
// on notifications the test controls, and WaitIdle waits on the queue state.
#include "securitysvc/attestation/revocation_queue.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace sphere::attestation {
namespace {

RevocationRequest Req(const std::string &id) {
  return {id, "tenant-contoso", "automatic: tamper"};
}

RevocationQueue::Options Fast() {
  RevocationQueue::Options o;
  o.initial_backoff = absl::Microseconds(10);
  o.max_backoff = absl::Microseconds(100);
  return o;
}

TEST(RevocationQueueTest, DeliversEachDecision) {
  absl::Mutex mu;
  std::vector<RevocationRequest> seen;
  RevocationQueue q(
      [&](const RevocationRequest &r) {
        absl::MutexLock l(&mu);
        seen.push_back(r);
        return absl::OkStatus();
      },
      Fast());
  q.RequestRevocation(Req("a"));
  q.RequestRevocation(Req("b"));
  ASSERT_TRUE(q.WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(q.delivered(), 2u);
  absl::MutexLock l(&mu);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].device_id, "a");
  EXPECT_EQ(seen[0].tenant_id, "tenant-contoso");
  EXPECT_EQ(seen[0].reason, "automatic: tamper");
  EXPECT_EQ(seen[1].device_id, "b");
}

TEST(RevocationQueueTest, RetriesTransientFailures) {
  std::atomic<int> calls{0};
  RevocationQueue q(
      [&](const RevocationRequest &) {
        return ++calls < 3 ? absl::UnavailableError("management down")
                           : absl::OkStatus();
      },
      Fast());
  q.RequestRevocation(Req("a"));
  ASSERT_TRUE(q.WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(q.delivered(), 1u);
  EXPECT_EQ(q.failed(), 0u);
}

TEST(RevocationQueueTest, GivesUpOnFinalErrorsAndAfterMaxAttempts) {
  std::atomic<int> calls{0};
  RevocationQueue::Options o = Fast();
  o.max_attempts = 4;
  RevocationQueue q(
      [&](const RevocationRequest &r) {
        ++calls;
        return r.device_id == "denied"
                   ? absl::PermissionDeniedError("not allowed")
                   : absl::UnavailableError("down");
      },
      o);
  q.RequestRevocation(Req("denied"));
  ASSERT_TRUE(q.WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(calls, 1) << "a final error is not retried";
  q.RequestRevocation(Req("flaky"));
  ASSERT_TRUE(q.WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(q.failed(), 2u);
  EXPECT_EQ(q.delivered(), 0u);
}

TEST(RevocationQueueTest, BoundedAndDeduplicated) {
  absl::Notification entered, release;
  std::atomic<int> calls{0};
  RevocationQueue::Options o = Fast();
  o.capacity = 2;
  RevocationQueue q(
      [&](const RevocationRequest &) {
        if (++calls == 1) {
          entered.Notify();
          release.WaitForNotification();
        }
        return absl::OkStatus();
      },
      o);
  q.RequestRevocation(Req("first"));  // taken by the worker, blocks
  entered.WaitForNotification();
  q.RequestRevocation(Req("first"));  // in flight: deduplicated
  q.RequestRevocation(Req("a"));
  q.RequestRevocation(Req("a"));  // queued: deduplicated
  q.RequestRevocation(Req("b"));
  q.RequestRevocation(Req("c"));  // full: dropped
  EXPECT_EQ(q.dropped(), 1u);
  release.Notify();
  ASSERT_TRUE(q.WaitIdle(absl::Seconds(10)));
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(q.delivered(), 3u);
}

TEST(RevocationQueueTest, StopDuringBackoffReturnsPromptly) {
  absl::Notification called;
  RevocationQueue::Options o;
  o.initial_backoff = absl::Hours(1);
  RevocationQueue q(
      [&](const RevocationRequest &) {
        if (!called.HasBeenNotified()) called.Notify();
        return absl::UnavailableError("down");
      },
      o);
  q.RequestRevocation(Req("a"));
  called.WaitForNotification();
  q.Stop();  // would hang for an hour if the backoff ignored Stop
  EXPECT_EQ(q.delivered(), 0u);
}

}  // namespace
}  // namespace sphere::attestation
