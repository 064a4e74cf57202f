// RunLoad: one load-generator run. Opens the fleet against a running
// cluster, measures the floors (ECDSA, empty RPC, RocksDB synced writes),
// runs every phase in order with live progress, measures memory (this
// process's RSS per twin from before manufacture to the idle certified
// fleet; the shards' RSS per device over the same span) and returns the
// report. A phase that fails stops the run: the report is still returned,
// with the failed phase's numbers and the later phases marked skipped, and
// `*failure` says what went wrong.
#ifndef SPHERE_LOADGEN_RUNNER_H_
#define SPHERE_LOADGEN_RUNNER_H_

#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "loadgen/fleet.h"
#include "loadgen/report.h"

namespace sphere::loadgen {

struct RunOptions {
  FleetOptions fleet;
  std::string report_dir = "load-report";
  absl::Duration floor_time = absl::Seconds(1);  // per floor
  FILE* progress = stderr;
  bool progress_tty = false;
  // last_phase: run the phases in order up to and including this one; the
  // later ones are reported skipped ("" = every phase). E.g. "claim" builds,
  // registers and claims the fleet only: idle-twin and after-claim memory at
  // a million twins without the per-device RPC phases.
  std::string last_phase;
};

// PhaseNames: every phase's name, in the order a run drives them.
std::vector<std::string> PhaseNames();

absl::StatusOr<Report> RunLoad(const RunOptions& options,
                               absl::Status* failure);

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_RUNNER_H_
