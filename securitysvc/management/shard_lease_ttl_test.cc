#include "securitysvc/management/shard_lease_ttl.h"

#include <gtest/gtest.h>

#include "common/util/clock.h"
#include "securitysvc/management/shard_leases.h"

namespace sphere::management {
namespace {

TEST(ShardLeaseTtlTest, AMultipleOfTheHeartbeatWithAFloor) {
  EXPECT_EQ(ShardLeaseTtl(absl::Seconds(5)), absl::Seconds(30));
  EXPECT_EQ(ShardLeaseTtl(absl::Seconds(1)), absl::Seconds(6));
  EXPECT_EQ(ShardLeaseTtl(absl::Milliseconds(500)), absl::Seconds(3));
  EXPECT_EQ(ShardLeaseTtl(absl::Milliseconds(250)), kMinShardLeaseTtl);
  EXPECT_EQ(ShardLeaseTtl(absl::Milliseconds(100)), kMinShardLeaseTtl);
  EXPECT_EQ(ShardLeaseTtl(absl::ZeroDuration()), kMinShardLeaseTtl);
  for (absl::Duration hb : {absl::Milliseconds(10), absl::Milliseconds(250),
                            absl::Seconds(1), absl::Seconds(5)}) {
    EXPECT_GE(ShardLeaseTtl(hb), kShardLeaseHeartbeats * hb);
    EXPECT_GE(ShardLeaseTtl(hb), kMinShardLeaseTtl);
  }
}

// Found by the stress run of stop 20: with 250 ms heartbeats the old lease
// (4 heartbeats, 1 s) lapsed for a live shard whose heartbeats were held up
// under load. A live shard heartbeating every 250 ms whose renewals stall
// for 2 s keeps its lease; a shard that stops for the whole lease loses it.
TEST(ShardLeaseTtlTest, Fault_LiveShardWhoseHeartbeatsStallKeepsItsLease) {
  const absl::Duration heartbeat = absl::Milliseconds(250);
  FakeClock clock(absl::FromUnixSeconds(1767225600));
  MemoryShardLeases leases(&clock, ShardLeaseTtl(heartbeat));
  ASSERT_TRUE(leases.Renew("shard-0").ok());
  ASSERT_TRUE(leases.Renew("shard-1").ok());
  for (int i = 0; i < 8; ++i) {  // 2 s of heartbeats from shard-1 only
    clock.Advance(heartbeat);
    ASSERT_TRUE(leases.Renew("shard-1").ok());
  }
  // shard-0 has been silent for 2 s, twice the old 1 s lease: still live.
  auto live = leases.Live("shard-0");
  ASSERT_TRUE(live.ok()) << live.status();
  EXPECT_TRUE(*live);
  ASSERT_TRUE(leases.Renew("shard-0").ok());  // its heartbeat gets through
  // Dead: silent for the whole lease.
  clock.Advance(ShardLeaseTtl(heartbeat));
  live = leases.Live("shard-0");
  ASSERT_TRUE(live.ok()) << live.status();
  EXPECT_FALSE(*live);
  // The old lease of 4 heartbeats would have lapsed in the stall.
  MemoryShardLeases old_policy(&clock, 4 * heartbeat);
  ASSERT_TRUE(old_policy.Renew("shard-0").ok());
  clock.Advance(absl::Seconds(2));
  EXPECT_FALSE(*old_policy.Live("shard-0"));
}

}  // namespace
}  // namespace sphere::management
