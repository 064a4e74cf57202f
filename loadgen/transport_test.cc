#include "loadgen/transport.h"

#include <gtest/gtest.h>

#include <vector>

namespace sphere::loadgen {
namespace {

// FakeTransport answers every call at once with the next scripted status.
class FakeTransport final : public client::AttestationTransport {
 public:
  std::vector<absl::Status> script;
  size_t next = 0;
  void GetChallenge(v1::GetChallengeRequest, ChallengeCallback done) override {
    absl::Status s = script[next++];
    if (s.ok()) {
      done(v1::GetChallengeResponse());
    } else {
      done(s);
    }
  }
  void Attest(v1::AttestRequest, AttestCallback done) override {
    absl::Status s = script[next++];
    if (s.ok()) {
      done(v1::AttestResponse());
    } else {
      done(s);
    }
  }
};

TEST(TimingTransportTest, CountsFailedRpcsByCodeAndPassesAnswersThrough) {
  FakeTransport fake;
  fake.script = {absl::UnavailableError("down"), absl::OkStatus(),
                 absl::UnauthenticatedError("nonce"), absl::OkStatus()};
  PhaseStats stats("attest");
  TimingTransport t(&fake, &stats);
  v1::GetChallengeRequest c;
  c.set_device_id("d1");
  int ok = 0, failed = 0;
  auto count = [&](const auto& r) { r.ok() ? ++ok : ++failed; };
  t.GetChallenge(c, count);
  t.GetChallenge(c, count);
  v1::AttestRequest a;
  a.set_device_id("d1");
  t.Attest(a, count);
  t.Attest(a, count);
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(failed, 2);
  const auto errs = stats.errors();
  EXPECT_EQ(errs.at("UNAVAILABLE"), 1u);
  EXPECT_EQ(errs.at("UNAUTHENTICATED"), 1u);
  EXPECT_EQ(stats.ops(), 0u);  // successes are the caller's to record
}

TEST(TimingTransportTest, StartIsTheFirstAttemptOrTheScheduledArrival) {
  FakeTransport fake;
  fake.script = {absl::OkStatus(), absl::OkStatus(), absl::OkStatus()};
  PhaseStats stats("attest");
  TimingTransport t(&fake, &stats);
  // Open loop: the scheduled arrival wins over the later send.
  const absl::Time due = absl::Now() - absl::Seconds(5);
  t.MarkStart("d1", due);
  v1::GetChallengeRequest c;
  c.set_device_id("d1");
  t.GetChallenge(c, [](auto) {});
  // A retry keeps the first attempt's start.
  t.GetChallenge(c, [](auto) {});
  EXPECT_EQ(t.TakeStart("d1"), due);
  EXPECT_EQ(t.TakeStart("d1"), absl::InfinitePast());  // forgotten
  const absl::Time before = absl::Now();
  c.set_device_id("d2");
  t.GetChallenge(c, [](auto) {});
  EXPECT_GE(t.TakeStart("d2"), before);
}

}  // namespace
}  // namespace sphere::loadgen
