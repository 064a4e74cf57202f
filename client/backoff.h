// Retry policy of every device-side client: which failures are worth
// retrying, and how long to wait before the next attempt.
//
// Backoff follows gRPC's connection-backoff algorithm
// (doc/connection-backoff.md): the n-th retry waits
//   min(initial * multiplier^n, max) * (1 + U(-jitter, +jitter))
// with initial 1 s, multiplier 1.6, jitter 0.2, max 120 s by default. Tests
// scale the durations down through BackoffPolicy.
//
// Pure functions; thread-safe.
//
// Example:
//   if (IsRetryable(status.code())) {
//     next = now + BackoffDelay(policy, retries++, JitterFraction(seed));
//   }
#ifndef SPHERE_CLIENT_BACKOFF_H_
#define SPHERE_CLIENT_BACKOFF_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace sphere::client {

struct BackoffPolicy {
  absl::Duration initial = absl::Seconds(1);
  double multiplier = 1.6;
  double jitter = 0.2;
  absl::Duration max = absl::Seconds(120);
};

// IsRetryable: UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED are
// transient (a shard restarting, a full window, an overloaded server) and
// are retried. Everything else is a refusal or a bug and is not: retrying a
// FAILED_PRECONDITION (not claimed, revoked), NOT_FOUND (unknown device) or
// PERMISSION_DENIED would only hammer the service with the same answer.
bool IsRetryable(absl::StatusCode code);

// BackoffDelay is the wait before retry number `retries` (0 = first retry).
// `jitter_fraction` is uniform in [0, 1) and picks the point inside the
// jitter band (0.5 = no jitter).
absl::Duration BackoffDelay(const BackoffPolicy& policy, int retries,
                            double jitter_fraction);

// JitterFraction maps any 64-bit seed (e.g. a hash of device id, attempt and
// time) to a well-mixed value in [0, 1) (splitmix64 finaliser), so a fleet
// that failed together does not retry together.
double JitterFraction(uint64_t seed);

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_BACKOFF_H_
