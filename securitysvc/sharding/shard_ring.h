// The shard ring lives in the client-side library (client/shard_ring.h) so
// that devices never link server code; the shards use the same ring.
#ifndef SPHERE_SECURITYSVC_SHARDING_SHARD_RING_H_
#define SPHERE_SECURITYSVC_SHARDING_SHARD_RING_H_

#include "client/shard_ring.h"

namespace sphere::sharding {

using client::RingHash;
using client::ShardRing;

}  // namespace sphere::sharding

#endif  // SPHERE_SECURITYSVC_SHARDING_SHARD_RING_H_
