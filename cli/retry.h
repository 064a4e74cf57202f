// Retrying a management call that lost a compare race (issue 15).
//
// With several management replicas on one etcd, a catalog mutation is one
// etcd transaction that compares the catalog's revision key: when another
// replica committed in between, the compare fails, NOTHING is applied and
// management answers ABORTED ("another management replica changed the
// catalog at the same time ... nothing changed; retry the request"). Such a
// call is safe to send again whatever it does, because the lost attempt had
// no effect. Every other failure is not retried here: an UNAVAILABLE or
// DEADLINE_EXCEEDED mutation may have been applied (its outcome is unknown),
// and a refusal (FAILED_PRECONDITION, NOT_FOUND, ...) would only repeat.
// ABORTED for another reason (a watch compacted mid-replay) is not a lost
// race and is not retried either.
//
// Attempts wait a jittered exponential backoff (client/backoff: gRPC's
// connection-backoff algorithm), are bounded in number and in total waiting
// time, and giving up returns ABORTED saying how many attempts were made and
// that nothing changed.
//
// Thread-safety: pure functions; `sleep` and `attempt` are the caller's.
#ifndef SPHERE_CLI_RETRY_H_
#define SPHERE_CLI_RETRY_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/backoff.h"

namespace sphere::cli {

struct RetryOptions {
  int max_attempts = 5;  // first attempt included
  client::BackoffPolicy backoff{.initial = absl::Milliseconds(50),
                                .multiplier = 2.0,
                                .jitter = 0.2,
                                .max = absl::Seconds(1)};
  // Total time spent waiting between attempts, at most.
  absl::Duration max_total_wait = absl::Seconds(5);
  uint64_t jitter_seed = 0;  // e.g. pid ^ time: replicas' clients spread out
};

// IsLostCompareRace: `status` is management's answer to a catalog write
// that lost a compare race with another replica (ABORTED + "nothing
// changed"), which is always safe to send again.
bool IsLostCompareRace(const absl::Status& status);

// CallWithRetry runs `attempt` until it answers anything but a lost compare
// race, waiting with `sleep` between attempts. When the attempts or the
// waiting budget run out it returns ABORTED: "gave up after N attempts: ...".
absl::Status CallWithRetry(const std::function<absl::Status()>& attempt,
                           const RetryOptions& options,
                           const std::function<void(absl::Duration)>& sleep);

}  // namespace sphere::cli

#endif  // SPHERE_CLI_RETRY_H_
