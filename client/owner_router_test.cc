// OwnerRouter on a fake clock: ring routing, failover after consecutive
// transport failures, learned owners that expire, probes after down_for,
// refusals that never count, and the bounds.
#include "client/owner_router.h"

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/util/clock.h"

namespace sphere::client {
namespace {

v1::ShardMap MapOf(int n) {
  v1::ShardMap m;
  m.set_virtual_nodes(64);
  for (int i = 0; i < n; ++i) {
    auto* s = m.add_shards();
    s->set_id(absl::StrCat("shard-", i));
    s->set_address(absl::StrCat("10.0.0.", i, ":443"));
  }
  return m;
}

std::string DeviceId(int i) {
  return crypto::HexEncode(crypto::Sha256(absl::StrCat("device-", i)));
}

class OwnerRouterTest : public ::testing::Test {
 protected:
  OwnerRouterTest() : map_(MapOf(3)), ring_(map_) {}
  std::string Owner(const std::string& id) { return ring_.Owner(id).address(); }
  std::string Second(const std::string& id) {
    return ring_.Successors(id, 2)[1]->address();
  }
  FakeClock clock_;
  v1::ShardMap map_;
  ShardRing ring_;
};

TEST_F(OwnerRouterTest, RoutesByTheRingWhileEveryShardAnswers) {
  OwnerRouter router(map_, {}, &clock_);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(router.Route(DeviceId(i), {}), Owner(DeviceId(i)));
  }
  EXPECT_EQ(router.stats().failovers, 0u);
}

TEST_F(OwnerRouterTest,
       Fault_FailsOverToTheNextShardOnlyAfterRepeatedFailures) {
  OwnerRouter router(map_, {}, &clock_);
  const std::string id = DeviceId(7);
  const std::string owner = Owner(id);
  // One failure (one blip) moves nothing: the caller backs off and retries.
  EXPECT_FALSE(router.ReportUnreachable(owner));
  EXPECT_EQ(router.Route(id, {}), owner);
  // The second consecutive failure marks it down: the next distinct shard.
  EXPECT_TRUE(router.ReportUnreachable(owner));
  EXPECT_TRUE(router.IsDown(owner));
  EXPECT_EQ(router.Route(id, {}), Second(id));
  EXPECT_EQ(router.stats().failovers, 1u);
  EXPECT_EQ(router.stats().marked_down, 1u);
  // A device another shard owns is not disturbed.
  for (int i = 0; i < 50; ++i) {
    if (Owner(DeviceId(i)) != owner) {
      EXPECT_EQ(router.Route(DeviceId(i), {}), Owner(DeviceId(i)));
    }
  }
}

TEST_F(OwnerRouterTest, Fault_AnswerInBetweenResetsTheFailureCount) {
  OwnerRouter router(map_, {}, &clock_);
  const std::string id = DeviceId(3);
  EXPECT_FALSE(router.ReportUnreachable(Owner(id)));
  router.ReportReachable(Owner(id));
  EXPECT_FALSE(router.ReportUnreachable(Owner(id)));
  EXPECT_EQ(router.Route(id, {}), Owner(id));
}

TEST_F(OwnerRouterTest, Fault_SecondShardDownToo_ThenTheThird) {
  OwnerRouter router(map_, {}, &clock_);
  const std::string id = DeviceId(11);
  auto order = ring_.Successors(id, 3);
  ASSERT_EQ(order.size(), 3u);
  for (int i = 0; i < 2; ++i) router.ReportUnreachable(order[0]->address());
  for (int i = 0; i < 2; ++i) router.ReportUnreachable(order[1]->address());
  EXPECT_EQ(router.Route(id, {}), order[2]->address());
  // Excluding what this call already tried: nothing left but probes.
  EXPECT_EQ(router.Route(id, {order[2]->address()}), order[0]->address());
  EXPECT_EQ(router.Route(id, {order[0]->address(), order[1]->address(),
                              order[2]->address()}),
            "");
}

TEST_F(OwnerRouterTest, EveryShardDownProbesTheRingOwner) {
  OwnerRouter router(map_, {}, &clock_);
  for (const auto& s : map_.shards()) {
    router.ReportUnreachable(s.address());
    router.ReportUnreachable(s.address());
  }
  EXPECT_EQ(router.Route(DeviceId(5), {}), Owner(DeviceId(5)));
}

TEST_F(OwnerRouterTest,
       Fault_DownShardIsProbedAfterDownForAndFollowedWhenBack) {
  OwnerRouter::Options options;
  options.down_for = absl::Seconds(30);
  OwnerRouter router(map_, options, &clock_);
  const std::string id = DeviceId(21);
  const std::string owner = Owner(id);
  router.ReportUnreachable(owner);
  router.ReportUnreachable(owner);
  EXPECT_EQ(router.Route(id, {}), Second(id));
  clock_.Advance(absl::Seconds(31));
  // Probe: the ring owner again. Still dead: one failure is enough now.
  EXPECT_EQ(router.Route(id, {}), owner);
  EXPECT_TRUE(router.ReportUnreachable(owner));
  EXPECT_EQ(router.Route(id, {}), Second(id));
  clock_.Advance(absl::Seconds(31));
  // Back: it answers and is used again.
  EXPECT_EQ(router.Route(id, {}), owner);
  router.ReportReachable(owner);
  EXPECT_FALSE(router.IsDown(owner));
  EXPECT_FALSE(router.ReportUnreachable(owner));  // count starts over
  EXPECT_EQ(router.Route(id, {}), owner);
}

TEST_F(OwnerRouterTest, LearnedOwnerIsUsedUntilItExpires) {
  OwnerRouter::Options options;
  options.owner_ttl = absl::Minutes(5);
  OwnerRouter router(map_, options, &clock_);
  const std::string id = DeviceId(2);
  const std::string elsewhere = Second(id);
  router.Learn(id, elsewhere);
  EXPECT_EQ(router.Route(id, {}), elsewhere);
  clock_.Advance(absl::Minutes(4));
  EXPECT_EQ(router.Route(id, {}), elsewhere);
  clock_.Advance(absl::Minutes(2));
  // Expired: the ring again, so a ring that changed back is followed.
  EXPECT_EQ(router.Route(id, {}), Owner(id));
  EXPECT_EQ(router.stats().cached_owners, 0u);
}

TEST_F(OwnerRouterTest, Fault_LearnedOwnerThatIsDownIsSkipped) {
  OwnerRouter router(map_, {}, &clock_);
  const std::string id = DeviceId(9);
  router.Learn(id, "10.9.9.9:443");  // a shard cluster.json does not list
  EXPECT_EQ(router.Route(id, {}), "10.9.9.9:443");
  router.ReportUnreachable("10.9.9.9:443");
  router.ReportUnreachable("10.9.9.9:443");
  EXPECT_EQ(router.Route(id, {}), Owner(id));
  router.Forget(id);
  EXPECT_EQ(router.stats().cached_owners, 0u);
}

TEST_F(OwnerRouterTest, RefusalsAndAnswersAreNotTransportFailures) {
  for (auto code :
       {absl::StatusCode::kFailedPrecondition,
        absl::StatusCode::kPermissionDenied, absl::StatusCode::kNotFound,
        absl::StatusCode::kInvalidArgument, absl::StatusCode::kOk,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kAborted}) {
    EXPECT_FALSE(IsTransportFailure(code, false)) << code;
    EXPECT_FALSE(IsTransportFailure(code, true)) << code;
  }
  // A connected shard answering UNAVAILABLE ("catalog stale") is alive.
  EXPECT_FALSE(IsTransportFailure(absl::StatusCode::kUnavailable, true));
  EXPECT_FALSE(IsTransportFailure(absl::StatusCode::kDeadlineExceeded, true));
  EXPECT_TRUE(IsTransportFailure(absl::StatusCode::kUnavailable, false));
  EXPECT_TRUE(IsTransportFailure(absl::StatusCode::kDeadlineExceeded, false));
}

TEST_F(OwnerRouterTest, Attack_CachesStayBounded) {
  OwnerRouter::Options options;
  options.max_cached_owners = 8;
  options.max_addresses = 4;
  OwnerRouter router(map_, options, &clock_);
  for (int i = 0; i < 1000; ++i) {
    router.Learn(DeviceId(i), absl::StrCat("10.1.0.", i % 250, ":443"));
    router.ReportUnreachable(absl::StrCat("10.2.0.", i % 250, ":443"));
  }
  EXPECT_EQ(router.stats().cached_owners, 8u);
  EXPECT_LE(router.stats().down_addresses, 4u);
  // The newest learned owner is always kept.
  EXPECT_EQ(router.Route(DeviceId(999), {}), "10.1.0.249:443");
}

}  // namespace
}  // namespace sphere::client
