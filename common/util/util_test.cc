#include <gtest/gtest.h>

#include "common/util/clock.h"
#include "common/util/log.h"
#include "common/util/metrics.h"

namespace sphere {
namespace {

TEST(FakeClockTest, MovesOnlyWhenTold) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1000));
  clock.Advance(absl::Seconds(31));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1031));
}

TEST(MetricsTest, CounterSeriesAndRendering) {
  auto* c = metrics::Counter("test_events_total", "Test events");
  c->Increment("kind=\"a\"");
  c->Increment("kind=\"a\"", 2);
  c->Increment("kind=\"b\"");
  EXPECT_EQ(c->Value("kind=\"a\""), 3u);
  EXPECT_EQ(c->Value("kind=\"b\""), 1u);
  EXPECT_EQ(metrics::Counter("test_events_total", "x"), c);
  std::string text = metrics::RenderAll();
  EXPECT_NE(text.find("test_events_total{kind=\"a\"} 3"), std::string::npos);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  auto* h = metrics::Histogram("test_latency_seconds", "Latency");
  h->Observe(0.00001);  // first bucket
  h->Observe(0.5);
  h->Observe(100);  // overflow
  EXPECT_EQ(h->Count(), 3u);
  std::string text = metrics::RenderAll();
  EXPECT_NE(text.find("test_latency_seconds_bucket{le=\"5e-05\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("test_latency_seconds_bucket{le=\"+Inf\"} 3"),
            std::string::npos);
  EXPECT_NE(text.find("test_latency_seconds_count 3"), std::string::npos);
}

TEST(LogTest, WritesOneJsonLine) {
  testing::internal::CaptureStderr();
  log::SetComponent("unit");
  log::Info("hello", {{"device", "ab\"12"}});
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("\"component\":\"unit\""), std::string::npos);
  EXPECT_NE(out.find("\"msg\":\"hello\""), std::string::npos);
  EXPECT_NE(out.find("\"device\":\"ab\\\"12\""), std::string::npos);
  EXPECT_EQ(out.back(), '\n');
}

}  // namespace
}  // namespace sphere
