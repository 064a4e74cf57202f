#include "client/shard_ring.h"

#include <gtest/gtest.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::client {
namespace {

v1::ShardMap MapOf(int n) {
  v1::ShardMap m;
  m.set_virtual_nodes(64);
  for (int i = 0; i < n; ++i) {
    auto* s = m.add_shards();
    s->set_id(absl::StrCat("shard-", i));
    s->set_address(absl::StrCat("127.0.0.1:", 9000 + i));
  }
  return m;
}

std::string DeviceId(int i) {
  return crypto::HexEncode(crypto::Sha256(absl::StrCat("device-", i)));
}

TEST(ShardRingTest, SpreadsDevicesOverAllShards) {
  ShardRing ring(MapOf(3));
  std::map<std::string, int> counts;
  for (int i = 0; i < 3000; ++i) counts[ring.Owner(DeviceId(i)).id()]++;
  ASSERT_EQ(counts.size(), 3u);
  for (const auto& [id, n] : counts) {
    EXPECT_GT(n, 600) << id;  // roughly 1000 each
    EXPECT_LT(n, 1400) << id;
  }
}

TEST(ShardRingTest, AddingAShardMovesOnlyAFraction) {
  ShardRing three(MapOf(3)), four(MapOf(4));
  int moved = 0;
  for (int i = 0; i < 4000; ++i) {
    const std::string& before = three.Owner(DeviceId(i)).id();
    const std::string& after = four.Owner(DeviceId(i)).id();
    if (before != after) {
      ++moved;
      EXPECT_EQ(after, "shard-3");  // devices move only to the new shard
    }
  }
  EXPECT_GT(moved, 500);
  EXPECT_LT(moved, 1600);  // ~1/4 of 4000
}

TEST(ShardRingTest, DeterministicAcrossInstances) {
  ShardRing a(MapOf(5)), b(MapOf(5));
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(a.Owner(DeviceId(i)).id(), b.Owner(DeviceId(i)).id());
  }
}

// The second successor is exactly the owner once the first leaves the ring:
// a client failing over from a dead owner asks the shard the live ring
// (without the dead one) most likely names, so no redirect is needed.
TEST(ShardRingTest, SuccessorsAreDistinctAndNameTheOwnerAfterTheOwnerLeaves) {
  const v1::ShardMap map = MapOf(4);
  ShardRing ring(map);
  for (int i = 0; i < 200; ++i) {
    auto order = ring.Successors(DeviceId(i), 10);
    ASSERT_EQ(order.size(), 4u);
    EXPECT_EQ(order[0]->id(), ring.Owner(DeviceId(i)).id());
    for (size_t a = 0; a < order.size(); ++a) {
      for (size_t b = a + 1; b < order.size(); ++b) {
        EXPECT_NE(order[a]->id(), order[b]->id());
      }
    }
    v1::ShardMap without;
    without.set_virtual_nodes(map.virtual_nodes());
    for (const auto& s : map.shards()) {
      if (s.id() != order[0]->id()) *without.add_shards() = s;
    }
    EXPECT_EQ(ShardRing(without).Owner(DeviceId(i)).id(), order[1]->id());
  }
  EXPECT_EQ(ring.Successors(DeviceId(1), 2).size(), 2u);
  EXPECT_TRUE(ShardRing(v1::ShardMap()).Successors(DeviceId(1), 3).empty());
}

}  // namespace
}  // namespace sphere::client
