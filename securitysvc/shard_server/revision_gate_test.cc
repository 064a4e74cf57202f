#include "securitysvc/shard_server/revision_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <limits>
#include <memory>
#include <optional>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace sphere::shard {
namespace {

// Answer records the one status a parked call got.
struct Answer {
  absl::Notification done;
  absl::Status status;
  RevisionGate::Done Callback() {
    return [this](absl::Status s) {
      status = std::move(s);
      done.Notify();
    };
  }
  // Generous: a parked call must be answered, never a timing assertion.
  bool Wait() { return done.WaitForNotificationWithTimeout(absl::Seconds(30)); }
};

class RevisionGateTest : public ::testing::Test {
 protected:
  std::unique_ptr<RevisionGate> Gate(RevisionGate::Options o = {}) {
    return std::make_unique<RevisionGate>([this] { return revision_.load(); },
                                          nullptr, o);
  }
  absl::Time Later() { return absl::Now() + absl::Seconds(60); }
  std::atomic<int64_t> revision_{5};
};

TEST_F(RevisionGateTest, ReachedRevisionAnswersAtOnce) {
  auto gate = Gate();
  Answer a;
  gate->WhenReached(5, Later(), "dev", a.Callback());
  ASSERT_TRUE(a.done.HasBeenNotified());
  EXPECT_TRUE(a.status.ok()) << a.status;
  EXPECT_EQ(gate->parked(), 0u);
}

TEST_F(RevisionGateTest, Attack_FarAheadRevisionIsRefusedAtOnce) {
  auto gate = Gate();
  Answer a;
  gate->WhenReached(std::numeric_limits<int64_t>::max(), Later(), "dev",
                    a.Callback());
  ASSERT_TRUE(a.done.HasBeenNotified());  // answered on the calling thread
  EXPECT_EQ(a.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(
      absl::StrContains(a.status.message(),
                        "catalog at revision 5, requested 9223372036854775807"))
      << a.status;
  EXPECT_TRUE(absl::StrContains(a.status.message(), "retry")) << a.status;
  EXPECT_EQ(gate->parked(), 0u);  // nothing held
}

TEST_F(RevisionGateTest, ParkedCallIsAnsweredWhenTheCatalogCatchesUp) {
  auto gate = Gate();
  Answer a;
  gate->WhenReached(7, Later(), "dev", a.Callback());
  EXPECT_FALSE(a.done.HasBeenNotified());
  EXPECT_EQ(gate->parked(), 1u);
  revision_ = 7;
  gate->Notify();
  ASSERT_TRUE(a.Wait());
  EXPECT_TRUE(a.status.ok()) << a.status;
  EXPECT_EQ(gate->parked(), 0u);
}

TEST_F(RevisionGateTest, Fault_CatalogNeverCatchesUpAnswersAtTheDeadline) {
  RevisionGate::Options o;
  o.tick = absl::Milliseconds(5);
  auto gate = Gate(o);
  Answer a;
  gate->WhenReached(6, absl::Now() + absl::Milliseconds(20), "dev",
                    a.Callback());
  ASSERT_TRUE(a.Wait());
  EXPECT_EQ(a.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(a.status.message(),
                                "catalog at revision 5, requested 6"))
      << a.status;
  EXPECT_EQ(gate->parked(), 0u);
}

TEST_F(RevisionGateTest, Attack_ParkedCallsAreBoundedInAllAndPerCaller) {
  RevisionGate::Options o;
  o.max_parked = 4;
  o.max_per_key = 2;
  auto gate = Gate(o);
  Answer a1, a2, a3;
  gate->WhenReached(6, Later(), "flooder", a1.Callback());
  gate->WhenReached(6, Later(), "flooder", a2.Callback());
  gate->WhenReached(6, Later(), "flooder", a3.Callback());
  ASSERT_TRUE(a3.done.HasBeenNotified());
  EXPECT_EQ(a3.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(a3.status.message(), "2 calls waiting"))
      << a3.status;
  EXPECT_EQ(gate->parked(), 2u);

  Answer b, c, d;
  gate->WhenReached(6, Later(), "b", b.Callback());
  gate->WhenReached(6, Later(), "c", c.Callback());
  gate->WhenReached(6, Later(), "d", d.Callback());
  ASSERT_TRUE(d.done.HasBeenNotified());
  EXPECT_EQ(d.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(d.status.message(), "4 calls already wait"))
      << d.status;
  EXPECT_EQ(gate->parked(), 4u);

  // Shutdown answers every parked call.
  gate->Stop();
  for (Answer* x : {&a1, &a2, &b, &c}) {
    ASSERT_TRUE(x->done.HasBeenNotified());
    EXPECT_EQ(x->status.code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(gate->parked(), 0u);
}

TEST_F(RevisionGateTest, WaitFunctionDrivesProgress) {
  // With a follower-style wait function, no Notify is needed.
  std::atomic<int64_t> rev{1};
  RevisionGate gate([&] { return rev.load(); },
                    [&](int64_t want, absl::Duration) {
                      rev = want;  // the follower applied up to `want`
                      return true;
                    },
                    {});
  Answer a;
  gate.WhenReached(3, Later(), "dev", a.Callback());
  ASSERT_TRUE(a.Wait());
  EXPECT_TRUE(a.status.ok()) << a.status;
}

}  // namespace
}  // namespace sphere::shard
