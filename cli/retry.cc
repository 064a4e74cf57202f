#include "cli/retry.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sphere::cli {

bool IsLostCompareRace(const absl::Status& status) {
  return absl::IsAborted(status) &&
         absl::StrContains(status.message(), "nothing changed");
}

absl::Status CallWithRetry(const std::function<absl::Status()>& attempt,
                           const RetryOptions& options,
                           const std::function<void(absl::Duration)>& sleep) {
  absl::Duration waited = absl::ZeroDuration();
  absl::Status last;
  int attempts = 0;
  for (int retries = 0;; ++retries) {
    last = attempt();
    ++attempts;
    if (!IsLostCompareRace(last)) return last;
    if (attempts >= options.max_attempts) break;
    const absl::Duration delay = client::BackoffDelay(
        options.backoff, retries,
        client::JitterFraction(options.jitter_seed + retries));
    if (waited + delay > options.max_total_wait) break;
    sleep(delay);
    waited += delay;
  }
  return absl::AbortedError(absl::StrCat(
      "gave up after ", attempts, " attempts (", absl::FormatDuration(waited),
      " of backoff): other management replicas kept changing the catalog at "
      "the same time; nothing changed; run the command again. Last answer: ",
      last.message()));
}

}  // namespace sphere::cli
