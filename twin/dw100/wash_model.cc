#include "twin/dw100/wash_model.h"

#include <algorithm>
#include <cmath>

namespace sphere::dw100 {

const char* CycleStateName(CycleState s) {
  switch (s) {
    case CycleState::kIdle:
      return "IDLE";
    case CycleState::kHeating:
      return "HEATING";
    case CycleState::kWashing:
      return "WASHING";
    case CycleState::kRinsing:
      return "RINSING";
    case CycleState::kDrying:
      return "DRYING";
    case CycleState::kDone:
      return "DONE";
  }
  return "?";
}

WashModel::WashModel(uint64_t seed, Options options, absl::Time start)
    : options_(options),
      start_(start),
      interval_(std::max(options.sample_interval, absl::Seconds(1))),
      rng_(seed ^ 0x9e3779b97f4a7c15ull),
      rinse_pct_(std::clamp(options.initial_rinse_pct, 0.0, 100.0)) {
  options_.idle_every = std::max(options_.idle_every, 1);
  options_.max_samples_per_advance =
      std::max<size_t>(options_.max_samples_per_advance, 1);
  const absl::Duration cycle = options_.heating + options_.washing +
                               options_.rinsing + options_.drying +
                               options_.done;
  // The period must hold a cycle and the start offset.
  options_.cycle_period =
      std::max(options_.cycle_period, cycle + 2 * interval_);
}

uint64_t WashModel::Next() {  // splitmix64
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double WashModel::Gaussian() {  // Box-Muller
  const double u1 =
      (static_cast<double>(Next() >> 11) + 1.0) / 9007199254740993.0;
  const double u2 = static_cast<double>(Next() >> 11) / 9007199254740992.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

CycleState WashModel::StateAt(absl::Duration t) const {
  if (t < options_.heating) return CycleState::kHeating;
  t -= options_.heating;
  if (t < options_.washing) return CycleState::kWashing;
  t -= options_.washing;
  if (t < options_.rinsing) return CycleState::kRinsing;
  t -= options_.rinsing;
  if (t < options_.drying) return CycleState::kDrying;
  t -= options_.drying;
  if (t < options_.done) return CycleState::kDone;
  return CycleState::kIdle;
}

double WashModel::HeaterOffsetC(uint64_t cycle_id) const {
  if (heater_fault_ == HeaterFault::kNone || cycle_id < fault_cycle_) return 0;
  // The drift worsens with each cycle: 60 %, 80 %, then 100 % of the range.
  const double severity =
      std::min(1.0, 0.6 + 0.2 * static_cast<double>(cycle_id - fault_cycle_));
  const double sign = heater_fault_ == HeaterFault::kHot ? 1.0 : -1.0;
  return sign * kHeaterFaultOffsetC * severity;
}

double WashModel::IdealDrying(absl::Duration t, uint64_t cycle_id) const {
  const absl::Duration dry_start =
      options_.heating + options_.washing + options_.rinsing;
  switch (StateAt(t)) {
    case CycleState::kIdle:
      return kAmbientC;
    case CycleState::kHeating:
    case CycleState::kWashing:
    case CycleState::kRinsing:
      return kAmbientC + 6.0;
    case CycleState::kDrying: {
      const double f = absl::FDivDuration(t - dry_start, options_.drying);
      double ideal;
      // The cabinet is warm from the hot rinse: rise over the first 20 %,
      // hold the peak to 70 %, then ease off.
      if (f < 0.2) {
        ideal =
            kDryingStartC + (kBaselinePeakDryingC - kDryingStartC) * (f / 0.2);
      } else if (f <= 0.7) {
        ideal = kBaselinePeakDryingC;
      } else {
        ideal = kBaselinePeakDryingC -
                (kBaselinePeakDryingC - kBaselineEndDryingC) * (f - 0.7) / 0.3;
      }
      // A failing heater moves the heated part of the curve.
      const double rise =
          (ideal - kAmbientC) / (kBaselinePeakDryingC - kAmbientC);
      return ideal + HeaterOffsetC(cycle_id) * rise;
    }
    case CycleState::kDone: {
      const double f =
          absl::FDivDuration(t - dry_start - options_.drying, options_.done);
      return kBaselineEndDryingC - (kBaselineEndDryingC - kAmbientC) * f;
    }
  }
  return kAmbientC;
}

double WashModel::IdealWater(absl::Duration t) const {
  switch (StateAt(t)) {
    case CycleState::kHeating:
      return kInletWaterC + (kWashWaterC - kInletWaterC) *
                                absl::FDivDuration(t, options_.heating);
    case CycleState::kWashing:
      return kWashWaterC;
    case CycleState::kRinsing:
      return kRinseWaterC;
    case CycleState::kDrying: {
      const double f = absl::FDivDuration(
          t - options_.heating - options_.washing - options_.rinsing,
          options_.drying);
      return kRinseWaterC - (kRinseWaterC - 35.0) * f;
    }
    case CycleState::kDone:
      return 35.0;
    case CycleState::kIdle:
      return 20.0;
  }
  return 20.0;
}

size_t WashModel::AdvanceTo(absl::Time now, std::vector<WashSample>* out) {
  const absl::Duration offset = interval_ * 2;  // first cycle starts here
  size_t added = 0;
  while (added < options_.max_samples_per_advance) {
    const absl::Time t = start_ + (step_ + 1) * interval_;
    if (t > now) break;
    ++step_;
    const absl::Duration since = t - start_ - offset;
    uint64_t cycle_id = 0;
    CycleState state = CycleState::kIdle;
    absl::Duration into = absl::ZeroDuration();
    if (since >= absl::ZeroDuration()) {
      const int64_t k = absl::IDivDuration(since, options_.cycle_period, &into);
      cycle_id = static_cast<uint64_t>(k) + 1;
      state = StateAt(into);
    }
    if (cycle_id > cycles_started_) cycles_started_ = cycle_id;
    if (state == CycleState::kRinsing && dosed_cycle_ != cycle_id) {
      dosed_cycle_ = cycle_id;
      rinse_pct_ = std::max(0.0, rinse_pct_ - kRinseAgentPerCyclePct);
    }
    if (state == CycleState::kIdle && step_ % options_.idle_every != 0) {
      continue;
    }
    WashSample s;
    s.time_unix_ms = absl::ToUnixMillis(t);
    s.state = state;
    s.cycle_id = cycle_id;
    s.water_c = (state == CycleState::kIdle ? 20.0 : IdealWater(into)) +
                options_.noise_c * Gaussian();
    s.drying_c =
        (state == CycleState::kIdle ? kAmbientC : IdealDrying(into, cycle_id)) +
        options_.noise_c * Gaussian();
    s.rinse_agent_pct =
        std::clamp(rinse_pct_ + options_.noise_pct * Gaussian(), 0.0, 100.0);
    out->push_back(s);
    ++added;
  }
  return added;
}

void WashModel::SetHeaterFault(HeaterFault fault) {
  if (fault != HeaterFault::kNone && heater_fault_ == HeaterFault::kNone) {
    fault_cycle_ = cycles_started_;  // the cycle in progress drifts already
  }
  heater_fault_ = fault;
}

void WashModel::SetRinseAgentLevel(double pct) {
  rinse_pct_ = std::clamp(pct, 0.0, 100.0);
}

SelfTestResult WashModel::HeaterSelfTest() {
  SelfTestResult r;
  double nominal = 26.5;
  if (heater_fault_ == HeaterFault::kCold) nominal = 41.0;  // element ageing
  if (heater_fault_ == HeaterFault::kHot) nominal = 18.5;   // shorted turns
  r.heater_ohm = nominal + 0.3 * Gaussian();
  if (r.heater_ohm > kHeaterMaxOhm) {
    r.findings.push_back("drying heater element resistance high");
    r.findings.push_back("drying air stays below the baseline curve");
  } else if (r.heater_ohm < kHeaterMinOhm) {
    r.findings.push_back("drying heater element resistance low");
    r.findings.push_back("drying air overshoots the baseline curve");
  }
  r.healthy = r.findings.empty();
  if (!r.healthy) r.suspected_part = kHeaterPart;
  return r;
}

}  // namespace sphere::dw100
