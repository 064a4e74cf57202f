// Telemetry phase (issue 14): certified twins send batched DW100 readings to
// appsvc over gateway channels (contoso.v1.ContosoGateway).
//
//   1. Each selected twin proves itself to appsvc once, with the device
//      certificate it kept from the attest phase (twin.h,
//      TwinConfig::keep_certificate; the tenant CA is one copy per
//      process). A twin without a valid kept certificate (never issued,
//      expired, --keep-certificates false, or dropped by
//      --prove-reattest-every) attests again first (TwinDriver,
//      AttestObserver sees the chain). The phase gets appsvc's challenges
//      (GetChallenges, 128 twins per call), has each device sign its proof
//      with its certificate key and sends them in one ProveBatch call (each
//      proof checked on its own); the PEM chain is dropped right after.
//      Twins go through this in groups of kProveGroup; a group is proven on
//      its own thread while the next one is prepared, so at most two
//      groups' chains are held at once; what stays per twin is appsvc's
//      token.
//   2. Sender threads send `--telemetry-batches` batches of
//      `--telemetry-batch` readings per twin, 16 twins per
//      ReportTelemetryBatch call (each item with its twin's token). A
//      reading counts as acknowledged when its item's result is OK (appsvc
//      answers after the one write for the call is durable).
//   3. End check: CountTelemetry for every twin; the stored total must equal
//      the acknowledged readings exactly, else the phase fails.
//
// Metrics: readings_per_s, acknowledged, stored, prove_s (proven_per_s), its
// split prove_reattest_s (re-attesting) and prove_wait_s (waiting for
// appsvc beyond that), prove_from_kept_certificate and prove_reattested
// (twins), prove_batch, token_bytes_per_twin.
// Skipped, with the reason, when cluster.json names no appsvc or appsvc
// does not serve ContosoGateway.
#ifndef SPHERE_LOADGEN_TELEMETRY_PHASE_H_
#define SPHERE_LOADGEN_TELEMETRY_PHASE_H_

#include <memory>

#include "loadgen/phases.h"

namespace sphere::loadgen {

std::unique_ptr<Phase> NewTelemetryPhase();

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_TELEMETRY_PHASE_H_
