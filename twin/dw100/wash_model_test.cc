// WashModel: the physics is deterministic for a seed, follows the baseline
// when healthy, and the injected faults move exactly what they should.
#include "twin/dw100/wash_model.h"

#include <gtest/gtest.h>

#include <map>

#include "common/util/clock.h"
#include "twin/dw100/scaled_clock.h"

namespace sphere::dw100 {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1767225600);

std::vector<WashSample> RunFor(WashModel& m, absl::Duration d) {
  std::vector<WashSample> out;
  while (m.AdvanceTo(kStart + d, &out) > 0) {
  }
  return out;
}

// Mean drying temperature per cycle.
std::map<uint64_t, double> DryingMeans(const std::vector<WashSample>& s) {
  std::map<uint64_t, std::pair<double, int>> sum;
  for (const WashSample& w : s) {
    if (w.state != CycleState::kDrying) continue;
    sum[w.cycle_id].first += w.drying_c;
    sum[w.cycle_id].second++;
  }
  std::map<uint64_t, double> mean;
  for (const auto& [c, v] : sum) mean[c] = v.first / v.second;
  return mean;
}

// Peak drying temperature per cycle.
std::map<uint64_t, double> DryingPeaks(const std::vector<WashSample>& s) {
  std::map<uint64_t, double> peak;
  for (const WashSample& w : s) {
    if (w.state != CycleState::kDrying) continue;
    peak[w.cycle_id] = std::max(peak[w.cycle_id], w.drying_c);
  }
  return peak;
}

TEST(WashModelTest, SameSeedSameSamplesHoweverAdvanced) {
  WashModel a(7, WashModel::Options(), kStart);
  WashModel b(7, WashModel::Options(), kStart);
  std::vector<WashSample> sa = RunFor(a, absl::Hours(48));
  std::vector<WashSample> sb;
  for (int i = 1; i <= 48 * 7; ++i) {  // odd steps: 1/7 hour
    b.AdvanceTo(kStart + absl::Hours(48) * i / (48 * 7), &sb);
  }
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].time_unix_ms, sb[i].time_unix_ms);
    EXPECT_EQ(sa[i].drying_c, sb[i].drying_c) << i;
    EXPECT_EQ(sa[i].water_c, sb[i].water_c) << i;
    EXPECT_EQ(sa[i].state, sb[i].state) << i;
  }
  WashModel c(8, WashModel::Options(), kStart);
  std::vector<WashSample> sc = RunFor(c, absl::Hours(48));
  ASSERT_EQ(sc.size(), sa.size());
  int differ = 0;
  for (size_t i = 0; i < sa.size(); ++i)
    differ += sa[i].drying_c != sc[i].drying_c;
  EXPECT_GT(differ,
            static_cast<int>(sa.size()) / 2);  // another seed, other noise
}

TEST(WashModelTest, HealthyCycleFollowsThePhasesAndTheBaselineCurve) {
  WashModel m(1, WashModel::Options(), kStart);
  std::vector<WashSample> s = RunFor(m, absl::Hours(24));
  EXPECT_EQ(m.cycles(), 3u);  // one every 8 hours
  std::vector<CycleState> order;
  for (const WashSample& w : s) {
    if (w.cycle_id != 1) continue;
    if (order.empty() || order.back() != w.state) order.push_back(w.state);
  }
  const std::vector<CycleState> want = {
      CycleState::kHeating, CycleState::kWashing, CycleState::kRinsing,
      CycleState::kDrying,  CycleState::kDone,    CycleState::kIdle};
  EXPECT_EQ(order, want);
  for (const auto& [cycle, peak] : DryingPeaks(s)) {
    EXPECT_NEAR(peak, kBaselinePeakDryingC, 2.0) << "cycle " << cycle;
  }
  for (const auto& [cycle, mean] : DryingMeans(s)) {
    EXPECT_NEAR(mean, kBaselineDryingMeanC, 1.5) << "cycle " << cycle;
  }
  for (const WashSample& w : s) {
    if (w.state == CycleState::kWashing)
      EXPECT_NEAR(w.water_c, kWashWaterC, 2.0);
    if (w.state == CycleState::kRinsing)
      EXPECT_NEAR(w.water_c, kRinseWaterC, 2.0);
  }
  // Rinse agent: dosed once per cycle.
  EXPECT_NEAR(m.rinse_agent_pct(), 100.0 - 3 * kRinseAgentPerCyclePct, 1e-9);
  // Idle time is sampled sparsely; a cycle densely.
  size_t idle = 0;
  for (const WashSample& w : s) idle += w.state == CycleState::kIdle;
  EXPECT_LT(idle, s.size() / 2);
}

TEST(WashModelTest, FailingHeaterDriftsColdAndWorsensPerCycle) {
  WashModel m(3, WashModel::Options(), kStart);
  std::vector<WashSample> s = RunFor(m, absl::Hours(8));  // cycle 1 healthy
  m.SetHeaterFault(HeaterFault::kCold);
  std::vector<WashSample> more = RunFor(m, absl::Hours(40));
  std::map<uint64_t, double> peaks = DryingPeaks(more);
  ASSERT_GE(peaks.size(), 4u);
  for (const auto& [cycle, mean] : DryingMeans(more)) {
    // Off the baseline mean by more than a 10 C tolerance, every cycle.
    EXPECT_LT(mean, kBaselineDryingMeanC - 12.0) << "cycle " << cycle;
  }
  double previous = 1e9;
  for (const auto& [cycle, peak] : peaks) {
    EXPECT_LT(peak, kBaselinePeakDryingC - 8.0) << "cycle " << cycle;
    EXPECT_LE(peak, previous + 1.5) << "cycle " << cycle;  // never recovers
    previous = peak;
  }
  EXPECT_NEAR(peaks.rbegin()->second,
              kBaselinePeakDryingC - kHeaterFaultOffsetC, 2.0);
  // Repair: back to the baseline from the next samples on.
  m.SetHeaterFault(HeaterFault::kNone);
  for (const auto& [cycle, peak] : DryingPeaks(RunFor(m, absl::Hours(72)))) {
    EXPECT_NEAR(peak, kBaselinePeakDryingC, 2.0) << "cycle " << cycle;
  }
}

TEST(WashModelTest, FailingHeaterDriftsHot) {
  WashModel m(4, WashModel::Options(), kStart);
  m.SetHeaterFault(HeaterFault::kHot);
  const std::vector<WashSample> s = RunFor(m, absl::Hours(24));
  for (const auto& [cycle, peak] : DryingPeaks(s)) {
    EXPECT_GT(peak, kBaselinePeakDryingC + 8.0) << "cycle " << cycle;
  }
  for (const auto& [cycle, mean] : DryingMeans(s)) {
    EXPECT_GT(mean, kBaselineDryingMeanC + 12.0) << "cycle " << cycle;
  }
}

TEST(WashModelTest, SelfTestFindsTheFailingHeater) {
  WashModel m(5, WashModel::Options(), kStart);
  SelfTestResult ok = m.HeaterSelfTest();
  EXPECT_TRUE(ok.healthy);
  EXPECT_TRUE(ok.findings.empty());
  EXPECT_TRUE(ok.suspected_part.empty());
  EXPECT_GT(ok.heater_ohm, kHeaterMinOhm);
  EXPECT_LT(ok.heater_ohm, kHeaterMaxOhm);
  m.SetHeaterFault(HeaterFault::kCold);
  SelfTestResult cold = m.HeaterSelfTest();
  EXPECT_FALSE(cold.healthy);
  EXPECT_EQ(cold.suspected_part, kHeaterPart);
  EXPECT_EQ(cold.findings[0], "drying heater element resistance high");
  m.SetHeaterFault(HeaterFault::kHot);
  SelfTestResult hot = m.HeaterSelfTest();
  EXPECT_FALSE(hot.healthy);
  EXPECT_EQ(hot.findings[0], "drying heater element resistance low");
}

TEST(WashModelTest, RinseAgentLowAndRefill) {
  WashModel m(6, WashModel::Options(), kStart);
  m.SetRinseAgentLevel(8);
  std::vector<WashSample> s = RunFor(m, absl::Hours(8));
  ASSERT_FALSE(s.empty());
  EXPECT_LT(s.back().rinse_agent_pct, kRinseAgentLowPct);
  EXPECT_NEAR(m.rinse_agent_pct(), 8 - kRinseAgentPerCyclePct, 1e-9);
  m.SetRinseAgentLevel(250);  // clamped
  EXPECT_EQ(m.rinse_agent_pct(), 100.0);
  m.SetRinseAgentLevel(0);
  RunFor(m, absl::Hours(24));
  EXPECT_EQ(m.rinse_agent_pct(), 0.0);  // never negative
}

TEST(WashModelTest, OneAdvanceIsBounded) {
  WashModel::Options o;
  o.max_samples_per_advance = 10;
  WashModel m(9, o, kStart);
  std::vector<WashSample> out;
  EXPECT_EQ(m.AdvanceTo(kStart + absl::Hours(24 * 30), &out), 10u);
  EXPECT_EQ(out.size(), 10u);
  EXPECT_EQ(m.AdvanceTo(kStart + absl::Hours(24 * 30), &out), 10u);
  EXPECT_EQ(out.size(), 20u);
  EXPECT_GT(out[10].time_unix_ms, out[9].time_unix_ms);
}

TEST(ScaledClockTest, DeviceTimeRunsScaled) {
  FakeClock base(kStart);
  ScaledClock device(&base, 1000);
  EXPECT_EQ(device.Now(), kStart);
  base.Advance(absl::Seconds(3));
  EXPECT_EQ(device.Now(), kStart + absl::Seconds(3000));
  EXPECT_EQ(device.ToReal(kStart + absl::Seconds(5000)),
            kStart + absl::Seconds(5));
}

}  // namespace
}  // namespace sphere::dw100
