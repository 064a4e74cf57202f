// NonceStore issues one-time attestation challenges bound to a device id and
// consumes them exactly once within their time-to-live (30 s by default).
//
// Nonces live in memory on the shard that owns the device: a restart simply
// invalidates outstanding challenges, which is safe (devices ask again).
// Capacity is bounded; when full, expired entries are swept and, if still
// full, Issue fails with ResourceExhausted rather than growing without bound.
//
// Thread-safety: all methods are safe for concurrent use (sharded mutexes).
#ifndef SPHERE_SECURITYSVC_ATTESTATION_NONCE_STORE_H_
#define SPHERE_SECURITYSVC_ATTESTATION_NONCE_STORE_H_

#include <array>
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
  // Issue creates a fresh nonce for `device_id`, replacing any earlier one.
  absl::StatusOr<Challenge> Issue(absl::string_view device_id);

  // Check verifies that `nonce` is outstanding for `device_id` and fresh,
  // without consuming it. Errors (all Unauthenticated, each specific):
  // unknown nonce, nonce issued to another device, expired nonce.
  absl::Status Check(absl::string_view device_id, absl::string_view nonce);

  // Consume checks and then removes the nonce so it can never be used again.
  absl::Status Consume(absl::string_view device_id, absl::string_view nonce);

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
  absl::Status CheckLocked(Shard& shard, absl::string_view device_id,
                           absl::string_view nonce, bool consume);

  Clock* const clock_;
  const Options options_;
  std::array<Shard, kShards> shards_;
};

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_NONCE_STORE_H_
