// Fault check: after a fault run, every attestation the fleet saw
// acknowledged (a certificate received) must be in its owning shard's
// records (DeviceStatusService, at most kIdsPerCall ids per call) with a
// last-attested time.
//
// A shard that cannot be asked is not evidence of loss: each call is
// retried with jittered backoff (client/backoff.h) on transient codes
// (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED), at most
// FaultCheckOptions::attempts times; the devices of a call that never got
// an answer count as "unreachable". "Lost" is only an acknowledged device
// that a shard which DID answer does not have (or has without a
// last-attested time): acknowledged = verified + lost + unreachable.
// A refusal (PERMISSION_DENIED, INVALID_ARGUMENT, ...) is not retried and
// its devices count as unreachable (not verified, not shown lost).
// Devices a shard answers "not here" for (its live ring, which follows
// shard leases, names another owner) are asked at that owner, one hop; a
// device moved again is unreachable.
//
// The core (CheckAcknowledged) takes the shard call and the wait as
// functions, so it is tested without a cluster or real time.
//
// Thread-safety: plain functions; call from one thread (it waits).
#ifndef SPHERE_LOADGEN_FAULT_CHECK_H_
#define SPHERE_LOADGEN_FAULT_CHECK_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/backoff.h"
#include "protos/attestation.pb.h"

namespace sphere::loadgen {

class Fleet;
struct FaultReport;

inline constexpr size_t kIdsPerCall = 500;

struct FaultCheckOptions {
  int attempts = 6;  // per DeviceStatus call, the first included
  client::BackoffPolicy backoff = {absl::Milliseconds(250), 1.6, 0.2,
                                   absl::Seconds(5)};
  absl::Duration deadline = absl::Seconds(30);  // per call
};

struct FaultCheckResult {
  uint64_t verified = 0;
  uint64_t lost = 0;
  uint64_t unreachable = 0;
  uint64_t retries = 0;  // calls re-sent after a transient failure
};

// StatusFetch asks the shard at `address` for `request`'s devices.
using StatusFetch = std::function<absl::StatusOr<v1::GetDeviceStatusResponse>(
    const std::string& address, const v1::GetDeviceStatusRequest& request)>;

// CheckAcknowledged checks `by_shard` (owning shard address -> acknowledged
// device ids); `wait` is called with each backoff delay.
FaultCheckResult CheckAcknowledged(
    const std::vector<std::pair<std::string, std::vector<std::string>>>&
        by_shard,
    const StatusFetch& fetch, const std::function<void(absl::Duration)>& wait,
    const FaultCheckOptions& options);

// VerifyAcknowledged: CheckAcknowledged over the fleet's certified twins and
// their owners by cluster.json's ring, with the operator credential; fills
// report->acknowledged, verified, lost and unreachable.
void VerifyAcknowledged(Fleet& fleet, FaultReport* report);

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_FAULT_CHECK_H_
