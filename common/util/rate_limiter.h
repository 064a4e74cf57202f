// RateLimiter: one token bucket per caller key (a certificate identity, a
// device id, a tenant id), so one caller going over its rate is refused
// while every other caller keeps its own budget.
//
// Each key holds up to `burst` tokens, refilled at `rate_per_second`; a call
// costs `cost` tokens (1 by default; e.g. bytes/1 MiB for uploads). A refused
// call takes nothing, so a caller that backs off recovers at the refill rate.
//
// Memory is bounded: at most `max_keys` buckets, split over 16 shards. When a
// shard is full, buckets that have refilled completely are dropped first (a
// full bucket carries no state); if none has, the least recently used bucket
// of that shard is evicted, which errs on the side of admitting its owner
// (the fail-open direction for a key that has been quiet the longest).
// Full buckets are also dropped long before that: whenever a shard has
// doubled since its last sweep (and holds at least kSweepMin buckets), a new
// key first sweeps it and the shard's table shrinks to what is left. So a
// limiter keyed by device id holds about the callers of the last refill
// period, not one bucket per device a shard has ever seen (issue 14: a
// shard's memory per device). Amortised O(1) per new key.
//
// Time comes from the injected Clock, so tests move it explicitly.
// Thread-safe.
//
// Example:
//   RateLimiter limiter(Clock::Real(), {.rate_per_second = 5, .burst = 10});
//   if (absl::Status s = limiter.Acquire(caller, "credential issuance");
//       !s.ok()) {
//     return s;  // RESOURCE_EXHAUSTED naming the operation and retry delay
//   }
#ifndef SPHERE_COMMON_UTIL_RATE_LIMITER_H_
#define SPHERE_COMMON_UTIL_RATE_LIMITER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/util/clock.h"

namespace sphere {

class RateLimiter {
 public:
  struct Options {
    double rate_per_second = 10;  // sustained tokens per second per key
    double burst = 20;            // bucket size (tokens available at once)
    size_t max_keys = 65536;      // buckets kept in memory, all keys together
    size_t max_key_bytes = 256;   // longer keys are hashed down to this
  };

  RateLimiter(const Clock* clock, Options options);
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // TryAcquire takes `cost` tokens from `key`'s bucket when it has them and
  // returns true; otherwise takes nothing and returns false. A cost above
  // the burst can never be satisfied and is refused.
  bool TryAcquire(absl::string_view key, double cost = 1);

  // Acquire is TryAcquire returning RESOURCE_EXHAUSTED ("too many <what>
  // requests from this caller; retry in N ms") when refused.
  absl::Status Acquire(absl::string_view key, absl::string_view what,
                       double cost = 1);

  // RetryAfter is how long until `key` has `cost` tokens (zero if it has).
  absl::Duration RetryAfter(absl::string_view key, double cost = 1) const;

  // Size is the number of buckets held (for tests and metrics).
  size_t Size() const;

  const Options& options() const { return options_; }

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
    uint64_t last_use = 0;  // shard-local use counter, for LRU eviction
  };
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, Bucket> buckets ABSL_GUARDED_BY(mu);
    uint64_t uses ABSL_GUARDED_BY(mu) = 0;
    size_t sweep_at ABSL_GUARDED_BY(mu) = kSweepMin;  // next sweep's size
  };
  static constexpr size_t kShards = 16;
  static constexpr size_t kSweepMin = 64;  // per shard

  std::string NormalizeKey(absl::string_view key) const;
  Shard& ShardFor(absl::string_view key) const;
  double Refilled(const Bucket& b, absl::Time now) const;
  void MakeRoom(Shard& shard, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // DropFull erases the shard's full buckets and shrinks its table.
  void DropFull(Shard& shard, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  const Clock* const clock_;
  const Options options_;
  const size_t max_keys_per_shard_;
  mutable std::array<Shard, kShards> shards_;
};

}  // namespace sphere

#endif  // SPHERE_COMMON_UTIL_RATE_LIMITER_H_
