#include "appsvc/anomaly_detector.h"

#include <gtest/gtest.h>

namespace contoso::appsvc {
namespace {

DetectorOptions Opts() {
  DetectorOptions o;
  o.baseline_c = 65;
  o.model_tolerance_c = 10;
  o.own_tolerance_c = 6;
  o.own_history_min = 5;
  o.consecutive = 3;
  return o;
}

TEST(DryingAnomalyDetectorTest, NormalCyclesRaiseNothing) {
  DryingAnomalyDetector d(Opts());
  records::DeviceRecord r;
  for (double m : {64.0, 66.0, 65.5, 63.0, 67.0, 65.0}) {
    CycleVerdict v = d.ObserveCycle(m, &r);
    EXPECT_EQ(v.cycle, Direction::kNone);
    EXPECT_EQ(v.raised, Direction::kNone);
  }
  EXPECT_EQ(r.open_anomalies_size(), 0);
  EXPECT_NEAR(d.OwnBaseline(r), 65.08, 0.01);
}

TEST(DryingAnomalyDetectorTest, OneNoisyCycleDoesNotTrigger) {
  DryingAnomalyDetector d(Opts());
  records::DeviceRecord r;
  for (int i = 0; i < 6; ++i) d.ObserveCycle(65, &r);
  CycleVerdict noisy = d.ObserveCycle(90, &r);
  EXPECT_EQ(noisy.cycle, Direction::kHot);
  EXPECT_EQ(noisy.raised, Direction::kNone);
  // Back to normal: the streak restarts, so two more hot cycles do not
  // reach three in a row either.
  d.ObserveCycle(65, &r);
  EXPECT_EQ(d.ObserveCycle(90, &r).raised, Direction::kNone);
  EXPECT_EQ(d.ObserveCycle(90, &r).raised, Direction::kNone);
  EXPECT_EQ(r.open_anomalies_size(), 0);
}

TEST(DryingAnomalyDetectorTest, ConsecutiveHotCyclesRaiseTooHotOnce) {
  DryingAnomalyDetector d(Opts());
  records::DeviceRecord r;
  EXPECT_EQ(d.ObserveCycle(80, &r).raised, Direction::kNone);
  EXPECT_EQ(d.ObserveCycle(81, &r).raised, Direction::kNone);
  CycleVerdict third = d.ObserveCycle(82, &r);
  EXPECT_EQ(third.raised, Direction::kHot);
  ASSERT_EQ(r.open_anomalies_size(), 1);
  EXPECT_EQ(r.open_anomalies(0), "drying-too-hot");
  // Still hot: not raised again while open.
  EXPECT_EQ(d.ObserveCycle(83, &r).raised, Direction::kNone);
  EXPECT_EQ(r.open_anomalies_size(), 1);
}

TEST(DryingAnomalyDetectorTest, ConsecutiveColdCyclesRaiseTooCold) {
  DryingAnomalyDetector d(Opts());
  records::DeviceRecord r;
  d.ObserveCycle(45, &r);
  d.ObserveCycle(48, &r);
  CycleVerdict v = d.ObserveCycle(40, &r);
  EXPECT_EQ(v.raised, Direction::kCold);
  EXPECT_EQ(r.open_anomalies(0), "drying-too-cold");
}

TEST(DryingAnomalyDetectorTest, OwnHistoryCatchesDriftInsideModelTolerance) {
  DryingAnomalyDetector d(Opts());
  records::DeviceRecord r;
  // This unit runs cool but normal for the model: 58 C.
  for (int i = 0; i < 8; ++i) d.ObserveCycle(58, &r);
  // 70 C is within the model's 65 +/- 10 but 12 C above its own mean.
  EXPECT_EQ(d.ObserveCycle(70, &r).cycle, Direction::kHot);
  EXPECT_EQ(d.ObserveCycle(70, &r).raised, Direction::kNone);
  EXPECT_EQ(d.ObserveCycle(70, &r).raised, Direction::kHot);
  // Anomalous cycles do not teach the baseline.
  EXPECT_NEAR(d.OwnBaseline(r), 58, 1e-9);
}

TEST(DryingAnomalyDetectorTest, MixedDirectionsDoNotAddUp) {
  DryingAnomalyDetector d(Opts());
  records::DeviceRecord r;
  d.ObserveCycle(90, &r);
  d.ObserveCycle(40, &r);
  d.ObserveCycle(90, &r);
  d.ObserveCycle(40, &r);
  EXPECT_EQ(r.open_anomalies_size(), 0);
}

TEST(DryingAnomalyDetectorTest, NormalStreakClearsOpenAnomaly) {
  DryingAnomalyDetector d(Opts());
  records::DeviceRecord r;
  for (int i = 0; i < 3; ++i) d.ObserveCycle(90, &r);
  ASSERT_EQ(r.open_anomalies_size(), 1);
  EXPECT_FALSE(d.ObserveCycle(65, &r).cleared);
  EXPECT_FALSE(d.ObserveCycle(65, &r).cleared);
  EXPECT_TRUE(d.ObserveCycle(65, &r).cleared);
  EXPECT_EQ(r.open_anomalies_size(), 0);
}

}  // namespace
}  // namespace contoso::appsvc
