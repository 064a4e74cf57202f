#include "loadgen/stats.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <thread>
#include <vector>

#include "loadgen/progress.h"

namespace sphere::loadgen {
namespace {

TEST(LatencyHistogramTest, BucketsCoverValuesWithBoundedError) {
  for (uint64_t us : {0ull, 1ull, 15ull, 16ull, 17ull, 100ull, 1000ull,
                      123456ull, 10000000ull}) {
    const int b = LatencyHistogram::BucketOf(us);
    const double mid = LatencyHistogram::BucketMidMicros(b);
    EXPECT_NEAR(mid, static_cast<double>(us) + 0.5,
                0.0625 * static_cast<double>(us) + 0.5)
        << us;
  }
  EXPECT_LE(LatencyHistogram::BucketOf(~0ull), LatencyHistogram::kBuckets - 1);
}

TEST(LatencyHistogramTest, PercentilesFollowTheDistribution) {
  LatencyHistogram h;
  EXPECT_EQ(h.PercentileMs(0.5), 0);
  // 900 ops at 1 ms, 90 at 10 ms, 10 at 100 ms.
  for (int i = 0; i < 900; ++i) h.Record(absl::Milliseconds(1));
  for (int i = 0; i < 90; ++i) h.Record(absl::Milliseconds(10));
  for (int i = 0; i < 10; ++i) h.Record(absl::Milliseconds(100));
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_NEAR(h.PercentileMs(0.5), 1, 0.07);
  EXPECT_NEAR(h.PercentileMs(0.95), 10, 0.7);
  EXPECT_NEAR(h.PercentileMs(0.99), 10, 0.7);
  EXPECT_NEAR(h.PercentileMs(0.999), 100, 7);
}

TEST(PhaseStatsTest, CountsOpsErrorsAndThroughputPerSecond) {
  PhaseStats s("attest");
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  s.Start(t0, 10);
  s.RecordOk(t0 + absl::Milliseconds(100), absl::Milliseconds(3));
  s.RecordOk(t0 + absl::Milliseconds(900), absl::Milliseconds(3));
  s.RecordOk(t0 + absl::Milliseconds(2500), absl::Milliseconds(3));
  s.RecordError(absl::StatusCode::kUnavailable);
  s.RecordError(absl::StatusCode::kUnavailable);
  s.RecordError(absl::StatusCode::kUnauthenticated);
  s.Finish(t0 + absl::Seconds(3));
  EXPECT_EQ(s.ops(), 3u);
  EXPECT_EQ(s.total(), 10u);
  EXPECT_EQ(s.error_count(), 3u);
  const auto errs = s.errors();
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_EQ(errs.at("UNAVAILABLE"), 2u);
  EXPECT_EQ(errs.at("UNAUTHENTICATED"), 1u);
  EXPECT_DOUBLE_EQ(s.elapsed_s(t0 + absl::Seconds(100)), 3.0);
  EXPECT_DOUBLE_EQ(s.ops_per_s(t0 + absl::Seconds(100)), 1.0);
  EXPECT_EQ(s.throughput_series(t0 + absl::Seconds(100)),
            (std::vector<uint64_t>{2, 0, 1}));
  EXPECT_FALSE(s.skipped());
}

TEST(PhaseStatsTest, RecordsFromManyThreads) {
  PhaseStats s("claim");
  const absl::Time t0 = absl::Now();
  s.Start(t0, 40000);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 10000; ++k) s.RecordOk(t0, absl::Microseconds(k));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(s.ops(), 40000u);
  EXPECT_EQ(s.latency().count(), 40000u);
}

TEST(PhaseStatsTest, SkipKeepsTheReason) {
  PhaseStats s("telemetry");
  s.Skip("no appsvc");
  EXPECT_TRUE(s.skipped());
  EXPECT_EQ(s.skip_reason(), "no appsvc");
  EXPECT_EQ(s.ops(), 0u);
}

TEST(ProgressTest, LineNamesPhaseCountsRateLatencyAndErrors) {
  PhaseStats s("attest");
  const absl::Time t0 = absl::Now();
  s.Start(t0, 100);
  for (int i = 0; i < 42; ++i) s.RecordOk(t0, absl::Milliseconds(2));
  s.RecordError(absl::StatusCode::kUnavailable);
  const std::string line = Progress::Line(s, t0, 1234);
  EXPECT_NE(line.find("attest"), std::string::npos) << line;
  EXPECT_NE(line.find("42/100"), std::string::npos) << line;
  EXPECT_NE(line.find("1234/s"), std::string::npos) << line;
  EXPECT_NE(line.find("UNAVAILABLE=1"), std::string::npos) << line;
  EXPECT_NE(line.find("p99"), std::string::npos) << line;
}

TEST(ProgressTest, NotATerminalPrintsOneLinePerPhaseEnd) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* out = open_memstream(&buf, &len);
  ASSERT_NE(out, nullptr);
  {
    // A long quiet interval: only the final line of each phase is printed.
    Progress p(out, /*tty=*/false, absl::Hours(1));
    PhaseStats a("manufacture"), b("register");
    a.Start(absl::Now(), 1);
    a.RecordOk(absl::Now(), absl::Milliseconds(1));
    a.Finish(absl::Now());
    p.Watch(&a);
    b.Start(absl::Now(), 1);
    p.Watch(&b);
    p.Stop();
  }
  std::fclose(out);
  const std::string text(buf, len);
  free(buf);
  EXPECT_NE(text.find("manufacture"), std::string::npos) << text;
  EXPECT_NE(text.find("register"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << text;
}

}  // namespace
}  // namespace sphere::loadgen

namespace sphere::loadgen {
namespace {

TEST(StopTest, SignalRequestsAStopOnce) {
  InstallStopHandlers();
  EXPECT_FALSE(StopRequested());
  raise(SIGTERM);  // handled: the process keeps running
  EXPECT_TRUE(StopRequested());
}

}  // namespace
}  // namespace sphere::loadgen
