// ShardLeaseTtl: how long management keeps a shard in the shard map without
// a registration, for shards that register (heartbeat) every `heartbeat`.
//
// A lease of a few heartbeats is too short on a loaded machine: a shard
// whose heartbeat thread or Register RPC is held up for a second or two
// (scheduling, a slow management replica, a stop-the-world compaction)
// loses a lease of 4 x 250 ms = 1 s while it is alive, leaves the ring, and
// its devices are redirected elsewhere until it registers again. So the
// lease is kShardLeaseHeartbeats heartbeats, and never shorter than
// kMinShardLeaseTtl, whatever the heartbeat:
//
//   heartbeat 100 ms -> 3 s     250 ms -> 3 s
//   heartbeat 1 s    -> 6 s     5 s    -> 30 s (the default heartbeat)
//
// The price is detection time: a dead shard leaves the map after at most
// this long (plus the sweep interval).
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_SHARD_LEASE_TTL_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_SHARD_LEASE_TTL_H_

#include <algorithm>

#include "absl/time/time.h"

namespace sphere::management {

inline constexpr int kShardLeaseHeartbeats = 6;
inline constexpr absl::Duration kMinShardLeaseTtl = absl::Seconds(3);

inline absl::Duration ShardLeaseTtl(absl::Duration heartbeat) {
  return std::max(kShardLeaseHeartbeats * heartbeat, kMinShardLeaseTtl);
}

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_SHARD_LEASE_TTL_H_
