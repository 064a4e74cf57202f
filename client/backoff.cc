#include "client/backoff.h"

#include <algorithm>
#include <cmath>

namespace sphere::client {

bool IsRetryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable ||
         code == absl::StatusCode::kResourceExhausted ||
         code == absl::StatusCode::kDeadlineExceeded;
}

absl::Duration BackoffDelay(const BackoffPolicy& policy, int retries,
                            double jitter_fraction) {
  const double initial_s = absl::ToDoubleSeconds(policy.initial);
  const double max_s = absl::ToDoubleSeconds(policy.max);
  // Cap the exponent: 1.6^60 already exceeds any sensible max.
  const int n = std::clamp(retries, 0, 60);
  const double base = std::min(
      initial_s * std::pow(std::max(policy.multiplier, 1.0), n), max_s);
  const double f = std::clamp(jitter_fraction, 0.0, 1.0);
  const double jittered = base * (1.0 + policy.jitter * (2.0 * f - 1.0));
  return absl::Seconds(std::max(jittered, 0.0));
}

double JitterFraction(uint64_t seed) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);  // 2^53
}

}  // namespace sphere::client
