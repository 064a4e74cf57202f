// PhaseCpu: CPU seconds used so far by loadgen, by every shard together, by
// management (DIR/run/management.pid) and by the telemetry phase's appsvc
// (DIR/run/appsvc.pid, or DIR/run/loadgen-appsvc.pid with --appsvc), so every phase reports the CPU one
// of its operations costs in each process (issue 14: instructions per device
// at two fleet sizes show what grows with the fleet). The runner takes it
// around each phase; attest and error_report also take it around their own
// window. A process whose pid or stat cannot be read makes that figure
// unknown (-1).
#ifndef SPHERE_LOADGEN_PHASE_CPU_H_
#define SPHERE_LOADGEN_PHASE_CPU_H_

#include <cstdint>

#include "loadgen/fleet.h"
#include "loadgen/stats.h"

namespace sphere::loadgen {

struct PhaseCpu {
  double loadgen = -1;
  double shards = -1;
  double management = -1;
  double appsvc = -1;

  static PhaseCpu Take(const Fleet& fleet);

  // Report sets <process>_cpu_us_per_op (CPU over `ops` operations) on
  // `stats` for each process whose figure is known at both ends, leaving a
  // figure already set as it is (the runner keeps the one a phase measured
  // over its own window).
  static void Report(const PhaseCpu& before, const PhaseCpu& after,
                     uint64_t ops, PhaseStats& stats);
};

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_PHASE_CPU_H_
