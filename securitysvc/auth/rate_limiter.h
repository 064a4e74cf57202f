// KeyedRateLimiter: one token bucket per key (e.g. per device id), so one
// caller exhausting its budget never takes from another's.
//
// Each key starts with `burst` tokens and regains `per_second` tokens per
// second up to `burst`; Allow takes one token or refuses. Memory is bounded:
// each new key first retires up to two idle buckets (refilled completely:
// they behave exactly like absent ones), so the table tracks the keys active
// lately; and at most `max_keys` buckets are kept (sharded 16 ways). When a
// shard is
// full, buckets that have refilled completely (idle keys, which behave
// exactly like absent ones) are dropped first; if every bucket is still
// active, the oldest-inserted one in that shard is dropped (that key then
// starts afresh: lenient, but a flood of distinct keys can never make the
// table grow or refuse everyone else).
//
// Time comes from the injected Clock. Thread-safe.
//
// Example:
//   KeyedRateLimiter limiter(Clock::Real(), {.per_second = 1, .burst = 20});
//   if (!limiter.Allow(device_id)) return absl::ResourceExhaustedError(...);
#ifndef SPHERE_SECURITYSVC_AUTH_RATE_LIMITER_H_
#define SPHERE_SECURITYSVC_AUTH_RATE_LIMITER_H_

#include <array>
#include <cstddef>
#include <deque>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/util/clock.h"

namespace sphere::auth {

class KeyedRateLimiter {
 public:
  struct Options {
    double per_second = 1.0;  // sustained rate per key (> 0)
    double burst = 20.0;      // bucket size (>= 1)
    size_t max_keys = 1 << 20;
  };
  KeyedRateLimiter(Clock* clock, Options options);

  // Allow takes one token from `key`'s bucket; false when it is empty.
  bool Allow(absl::string_view key);
  // RetryAfter: how long until `key` has a token again (zero when it has).
  absl::Duration RetryAfter(absl::string_view key) const;
  // key_count: buckets currently held (for tests and metrics).
  size_t key_count() const;

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, Bucket> buckets ABSL_GUARDED_BY(mu);
    std::deque<std::string> order ABSL_GUARDED_BY(mu);  // insertion order
  };
  static constexpr size_t kShards = 16;

  Shard& ShardFor(absl::string_view key) const;
  double Refilled(const Bucket& b, absl::Time now) const;
  void MakeRoom(Shard& s, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  void DropIdle(Shard& s, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

  Clock* const clock_;
  const Options options_;
  const size_t per_shard_max_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace sphere::auth

#endif  // SPHERE_SECURITYSVC_AUTH_RATE_LIMITER_H_
