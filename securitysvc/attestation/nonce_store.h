// NonceStore issues one-time attestation challenges bound to a device id and
// consumes them exactly once within their time-to-live (30 s by default).
//
// Nonces live in memory on the shard that owns the device: a restart simply
// invalidates outstanding challenges, which is safe (devices ask again).
// Capacity is bounded across all shards; when full, expired entries are swept
// (at most once per second, so a flood of Issue calls cannot turn every call
// into a full sweep) and, if still full, Issue fails with ResourceExhausted
// rather than growing without bound.
//
// Thread-safety: all methods are safe for concurrent use (sharded mutexes).
#ifndef SPHERE_SECURITYSVC_ATTESTATION_NONCE_STORE_H_
#define SPHERE_SECURITYSVC_ATTESTATION_NONCE_STORE_H_

#include <array>
#include <atomic>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/util/clock.h"

namespace sphere::attestation {

class NonceStore {
 public:
  struct Options {
    absl::Duration ttl = absl::Seconds(30);
    size_t capacity = 4 << 20;  // outstanding nonces across all devices
  };
  NonceStore(Clock* clock, Options options);
  explicit NonceStore(Clock* clock) : NonceStore(clock, Options()) {}

  struct Challenge {
    std::string nonce;  // 32 random bytes
    absl::Time expires;
  };
  // Issue creates a fresh nonce for `device_id`. Earlier outstanding nonces of
  // the same device stay valid until used or expired (a device that retried
  // GetChallenge may hold more than one). ResourceExhausted when full.
  absl::StatusOr<Challenge> Issue(absl::string_view device_id);

  // Check verifies that `nonce` is outstanding for `device_id` and fresh,
  // without consuming it. Errors (all Unauthenticated, each specific):
  // unknown nonce, nonce issued to another device, expired nonce.
  absl::Status Check(absl::string_view device_id, absl::string_view nonce);

  // Consume checks and then removes the nonce so it can never be used again.
  // Returns the nonce's expiry (for Restore).
  absl::StatusOr<absl::Time> Consume(absl::string_view device_id,
                                     absl::string_view nonce);

  // Restore puts back a nonce that Consume removed when the caller could not
  // finish (e.g. the attestation record could not be stored), so the device
  // can retry with the same challenge until `expires`. Never fails; ignores
  // capacity (the entry was counted before Consume).
  void Restore(absl::string_view device_id, absl::string_view nonce,
               absl::Time expires);

  // size returns the number of outstanding (possibly expired) nonces.
  size_t size() const;

 private:
  struct Entry {
    std::string device_id;
    absl::Time expires;
  };
  static constexpr int kShards = 16;
  struct Shard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, Entry> by_nonce ABSL_GUARDED_BY(mu);
  };
  Shard& ShardFor(absl::string_view nonce);
  absl::StatusOr<absl::Time> CheckLocked(Shard& shard,
                                         absl::string_view device_id,
                                         absl::string_view nonce, bool consume)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // SweepExpired drops expired entries from every shard, unless a sweep ran
  // less than a second ago.
  void SweepExpired(absl::Time now);

  Clock* const clock_;
  const Options options_;
  std::array<Shard, kShards> shards_;
  // Outstanding entries across all shards (capacity is global, not per shard).
  std::atomic<size_t> count_{0};
  absl::Mutex sweep_mu_;
  absl::Time last_sweep_ ABSL_GUARDED_BY(sweep_mu_) = absl::InfinitePast();
};

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_NONCE_STORE_H_
