// ShardRing maps device ids to shards by consistent hashing: each shard owns
// `virtual_nodes` points on a 64-bit ring (SHA-256 of "shard-id#i"), a device
// belongs to the first point at or after the hash of its id. Adding a shard
// moves only ~1/N of the devices.
//
// Immutable after construction; thread-safe.
#ifndef SPHERE_SECURITYSVC_SHARDING_SHARD_RING_H_
#define SPHERE_SECURITYSVC_SHARDING_SHARD_RING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "protos/management.pb.h"

namespace sphere::sharding {

class ShardRing {
 public:
  explicit ShardRing(const v1::ShardMap& map);
  bool empty() const { return points_.empty(); }
  // Owner returns the shard owning `device_id` (the map must not be empty).
  const v1::Shard& Owner(absl::string_view device_id) const;
  const v1::ShardMap& map() const { return map_; }

 private:
  v1::ShardMap map_;
  std::vector<std::pair<uint64_t, int>> points_;  // sorted (hash, shard index)
};

uint64_t RingHash(absl::string_view key);

}  // namespace sphere::sharding

#endif  // SPHERE_SECURITYSVC_SHARDING_SHARD_RING_H_
