// WashModel: the physics of one DW100 dishwasher, sampled on a fixed grid of
// device time. A wash cycle runs HEATING (water warms from the inlet
// temperature to the wash temperature) -> WASHING -> RINSING (rinse agent
// dosed once per cycle) -> DRYING (the drying air follows a rise-then-decay
// curve holding kBaselinePeakDryingC from 20 % to 70 % of the phase; its
// mean is kBaselineDryingMeanC) -> DONE, then IDLE until the next
// cycle, which starts every Options::cycle_period.
//
// Sensors: water temperature, drying temperature, rinse-agent level and cycle
// state, each with Gaussian noise from a seeded generator. Samples lie on the
// grid start + k * sample_interval (only every idle_every-th one while
// idle), and noise is drawn per grid point in order, so a model with the same
// seed and options yields the same samples however its AdvanceTo calls are
// split: runs are reproducible.
//
// Faults: a failing drying heater drifts hot or cold (the drying curve moves
// by up to kHeaterFaultOffsetC, worse each cycle after the fault); the rinse
// agent can drop low. HeaterSelfTest models the DW100's heater self-test
// (element resistance, thermostat) that remote diagnostics run.
//
// Time is the caller's: pass device time (twin/dw100/scaled_clock.h for
// --time-scale). Thread-safety: not thread-safe; one owner.
//
// Example:
//   WashModel model(/*seed=*/42, WashModel::Options(), start);
//   std::vector<WashSample> samples;
//   model.AdvanceTo(start + absl::Hours(24), &samples);
#ifndef SPHERE_TWIN_DW100_WASH_MODEL_H_
#define SPHERE_TWIN_DW100_WASH_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace sphere::dw100 {

// Model baseline (what a healthy DW100 does); the Contoso cloud compares the
// drying temperature against it.
inline constexpr double kInletWaterC = 15.0;
inline constexpr double kWashWaterC = 60.0;
inline constexpr double kRinseWaterC = 65.0;
inline constexpr double kAmbientC = 24.0;
inline constexpr double kDryingStartC = 55.0;  // warm from the rinse
inline constexpr double kBaselinePeakDryingC = 68.0;
inline constexpr double kBaselineEndDryingC = 58.0;
// Mean drying-air temperature over a healthy DRYING phase (what the cloud's
// anomaly detector compares a cycle's mean with).
inline constexpr double kBaselineDryingMeanC = 65.0;
// Largest drift of a failing heater at the drying peak.
inline constexpr double kHeaterFaultOffsetC = 25.0;
inline constexpr double kRinseAgentPerCyclePct = 1.5;
inline constexpr double kRinseAgentLowPct = 15.0;
// Healthy drying-heater element resistance band (ohms).
inline constexpr double kHeaterMinOhm = 24.0;
inline constexpr double kHeaterMaxOhm = 29.0;
// Part number of the drying heater assembly.
inline constexpr char kHeaterPart[] = "DW100-HTR-220";

enum class CycleState : uint8_t {
  kIdle = 1,
  kWashing = 2,
  kRinsing = 3,
  kDrying = 4,
  kDone = 5,
  kHeating = 6,
};  // values match contoso.v1.Telemetry.CycleState
const char* CycleStateName(CycleState s);

enum class HeaterFault : uint8_t { kNone, kHot, kCold };

struct WashSample {
  int64_t time_unix_ms = 0;  // device time
  double water_c = 0;
  double drying_c = 0;
  double rinse_agent_pct = 0;
  CycleState state = CycleState::kIdle;
  uint64_t cycle_id = 0;  // 0 before the first cycle
};

struct SelfTestResult {
  bool healthy = true;
  double heater_ohm = 0;
  std::vector<std::string> findings;
  std::string suspected_part;  // empty when healthy
};

class WashModel {
 public:
  struct Options {
    absl::Duration cycle_period = absl::Hours(8);  // one cycle starts each
    absl::Duration heating = absl::Minutes(15);
    absl::Duration washing = absl::Minutes(35);
    absl::Duration rinsing = absl::Minutes(20);
    absl::Duration drying = absl::Minutes(30);
    absl::Duration done = absl::Minutes(5);
    absl::Duration sample_interval = absl::Minutes(5);
    int idle_every = 12;      // while idle keep one grid point in N
    double noise_c = 0.4;     // temperature sensor noise (1 sigma)
    double noise_pct = 0.05;  // level sensor noise (1 sigma)
    double initial_rinse_pct = 100.0;
    size_t max_samples_per_advance = 4096;  // bounds one AdvanceTo
  };

  WashModel(uint64_t seed, Options options, absl::Time start);

  // AdvanceTo appends the samples of every grid point in (last, now] to
  // `out` (at most max_samples_per_advance; the rest follow on the next
  // call) and returns how many it appended.
  size_t AdvanceTo(absl::Time now, std::vector<WashSample>* out);

  // Faults. SetHeaterFault(kHot/kCold) starts a drift that grows with each
  // cycle that begins afterwards; kNone repairs the heater.
  void SetHeaterFault(HeaterFault fault);
  HeaterFault heater_fault() const { return heater_fault_; }
  // SetRinseAgentLevel sets the tank level (e.g. 8 for "rinse agent low",
  // 100 after a refill), clamped to [0, 100].
  void SetRinseAgentLevel(double pct);
  double rinse_agent_pct() const { return rinse_pct_; }

  // HeaterSelfTest measures the drying-heater element and thermostat.
  // Uses the model's noise generator (deterministic for a seed).
  SelfTestResult HeaterSelfTest();

  // Cycles started so far (by the time of the last AdvanceTo).
  uint64_t cycles() const { return cycles_started_; }
  absl::Time last_time() const { return start_ + step_ * interval_; }
  // Drift of the drying temperature at its peak in cycle `cycle_id` (0 when
  // the heater is healthy).
  double HeaterOffsetC(uint64_t cycle_id) const;

 private:
  double Gaussian();
  uint64_t Next();
  // State and ideal (noise-free) readings at offset `t` into the period.
  CycleState StateAt(absl::Duration into_cycle) const;
  double IdealDrying(absl::Duration into_cycle, uint64_t cycle_id) const;
  double IdealWater(absl::Duration into_cycle) const;

  Options options_;
  absl::Time start_;
  absl::Duration interval_;
  int64_t step_ = 0;  // grid points consumed
  uint64_t rng_;
  double rinse_pct_;
  uint64_t cycles_started_ = 0;
  uint64_t dosed_cycle_ = 0;  // last cycle that dosed rinse agent
  uint64_t fault_cycle_ = 0;  // first cycle started after the fault
  HeaterFault heater_fault_ = HeaterFault::kNone;
};

}  // namespace sphere::dw100

#endif  // SPHERE_TWIN_DW100_WASH_MODEL_H_
