// Phases: the steps a load run drives the whole fleet through, one small
// class each, run in order by the runner (loadgen/runner.h):
//
//   manufacture    Pluton key generation + factory OS install (mcu-model)
//   register       bulk factory import (ManagementService.ImportDevices,
//                  one stream per batch of 1,000; latency = batch ack)
//   claim          ClaimDevices (bulk claim straight into the run's
//                  "loadgen/fleet" device group), --claim-batch devices per
//                  call, a few calls in flight; latency = batch answer.
//                  --claim-batch 1: ClaimDevice + AssignDevice per device,
//                  --claim-window in flight
//   attest         challenge + quote + certificate through the twin library
//                  (Twin + TwinDriver) over gateway channels, closed or open
//                  loop; optional shard-restart fault
//   update_check   GetUpdates per certified twin over the gateway channels
//                  (gateway certificate + the twin's session token), each
//                  answer's signed metadata verified as the device does
//                  (update::VerifyMetadata); a bounded window in flight
//   update_install, telemetry
//                  not driven on this branch: Unavailable() probes the
//                  cluster and says why; they are reported skipped, never
//                  faked.
//   error_report   each certified twin's device crashes an app
//                  --error-events times; the twin library (ErrorUploader
//                  via TwinDriver) uploads the ring over the gateway
//                  channels; afterwards every shard's QueryErrors
//                  (operator) must hold each acknowledged event once
//
// Adding a phase: subclass Phase, add it to DefaultPhases().
//
// Thread-safety: a phase runs on the runner's thread; Run may use threads
// of its own and must join them before returning.
#ifndef SPHERE_LOADGEN_PHASES_H_
#define SPHERE_LOADGEN_PHASES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "loadgen/fleet.h"
#include "loadgen/stats.h"

namespace sphere::loadgen {

class Phase {
 public:
  virtual ~Phase() = default;
  virtual const char* name() const = 0;
  // Unavailable: why this phase cannot run against this cluster ("" = it
  // can). Called right before Run.
  virtual std::string Unavailable(Fleet& fleet) { return ""; }
  // Run drives the whole fleet through the phase, recording each operation
  // into `stats` (Start/Finish included). An error stops the run: later
  // phases depend on this one.
  virtual absl::Status Run(Fleet& fleet, PhaseStats& stats) = 0;
};

// DefaultPhases: every phase of issue 14, in order.
std::vector<std::unique_ptr<Phase>> DefaultPhases();

// ProbeMethod calls `method` ("/pkg.Service/Method") on `address` with an
// empty request and returns the status code the server answered (5 s
// deadline). UNIMPLEMENTED means the server does not serve the service.
// `server_name`: the TLS name on the server's certificate (cluster.json).
absl::StatusCode ProbeMethod(const std::string& address,
                             const std::string& server_name,
                             const rpc::TlsFiles& tls,
                             const std::string& method);

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_PHASES_H_
