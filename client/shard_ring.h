// ShardRing maps device ids to shards by consistent hashing: each shard owns
// `virtual_nodes` points on a 64-bit ring (SHA-256 of "shard-id#i"), a device
// belongs to the first point at or after the hash of its id. Adding a shard
// moves only ~1/N of the devices.
//
// This is the client-side half of sharding: devices, the twin library and
// the load generator compute the owning shard from the ring; shards use the
// same ring (securitysvc/sharding) to decide whether to redirect.
//
// Immutable after construction; thread-safe.
//
// Example:
//   ShardRing ring(MapFromEndpoints(config.shards));
//   const v1::Shard& owner = ring.Owner(device_id);
#ifndef SPHERE_CLIENT_SHARD_RING_H_
#define SPHERE_CLIENT_SHARD_RING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "protos/management.pb.h"

namespace sphere::client {

// Trailing-metadata keys of a redirect: a shard that does not own a device
// answers FAILED_PRECONDITION with these two trailers naming the owner.
inline constexpr char kRedirectShardKey[] = "sphere-redirect-shard";
inline constexpr char kRedirectAddressKey[] = "sphere-redirect-address";

// Points per shard when the map does not say (management's default).
inline constexpr int kDefaultVirtualNodes = 64;

class ShardRing {
 public:
  explicit ShardRing(const v1::ShardMap& map);
  bool empty() const { return points_.empty(); }
  // Owner returns the shard owning `device_id` (the map must not be empty).
  const v1::Shard& Owner(absl::string_view device_id) const;
  // Successors returns up to `max` distinct shards in ring order starting
  // at `device_id`'s owner (the owner first, then the shard that would own
  // the device if the owner left the ring, and so on): the order a client
  // tries when the owner is unreachable. Empty when the ring is.
  std::vector<const v1::Shard*> Successors(absl::string_view device_id,
                                           size_t max) const;
  const v1::ShardMap& map() const { return map_; }

 private:
  v1::ShardMap map_;
  std::vector<std::pair<uint64_t, int>> points_;  // sorted (hash, shard index)
};

uint64_t RingHash(absl::string_view key);

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_SHARD_RING_H_
