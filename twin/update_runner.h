// RunUpdateCheck: one complete update check of one twin, driven on the
// calling thread (the twin binary's `twin update`, its TwinControl
// CheckForUpdates). It feeds the UpdateAgent's requests to an
// UpdateTransport, re-attests the twin through a TwinDriver after an install
// reboot, and sends the result reports, waiting for each answer (never with
// a sleep: on a notification, bounded by the transports' deadlines).
//
// Not for callback threads: it blocks until the check is done. A load
// generator drives UpdateAgent itself instead.
#ifndef SPHERE_TWIN_UPDATE_RUNNER_H_
#define SPHERE_TWIN_UPDATE_RUNNER_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/attestation_client.h"
#include "client/update_transport.h"
#include "common/util/clock.h"
#include "twin/driver.h"
#include "twin/twin.h"
#include "twin/update_agent.h"

namespace sphere::twin {

// RunUpdateCheck runs agent.CheckNow and everything it leads to until the
// agent is idle again or `deadline` (clock time) passes. Returns the agent's
// last_error() (OK: up to date or installed; see agent.last_results()), or
// DeadlineExceeded. The twin must be certified (attest first). `observer`
// sees the re-attestation's answer (the new certificate chain).
absl::Status RunUpdateCheck(Twin& twin, UpdateAgent& agent,
                            client::UpdateTransport& updates,
                            client::AttestationTransport& attestation,
                            Clock* clock, absl::Time deadline,
                            TwinDriver::AttestObserver observer = nullptr);

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_UPDATE_RUNNER_H_
