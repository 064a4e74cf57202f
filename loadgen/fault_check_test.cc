// The loadgen fault check tells "unreachable" (the owner never answered the
// check) from "lost" (an owner that answered lacks an acknowledged write):
// a fake DeviceStatus call per shard, and the backoff waits recorded, not
// slept.
#include "loadgen/fault_check.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sphere::loadgen {
namespace {

struct FakeShards {
  // address -> devices it holds (attested), and failures still to return.
  std::map<std::string, std::vector<std::string>> held;
  std::map<std::string, std::vector<absl::Status>> failures;
  std::map<std::string, std::map<std::string, std::string>> moved;  // id->addr
  std::map<std::string, bool> down;                       // always UNAVAILABLE
  std::map<std::string, std::vector<std::string>> extra;  // answered unasked
  std::map<std::string, int> calls;

  absl::StatusOr<v1::GetDeviceStatusResponse> Fetch(
      const std::string& address, const v1::GetDeviceStatusRequest& req) {
    ++calls[address];
    if (down[address]) return absl::UnavailableError("connection refused");
    auto& f = failures[address];
    if (!f.empty()) {
      absl::Status s = f.front();
      f.erase(f.begin());
      return s;
    }
    v1::GetDeviceStatusResponse resp;
    for (const auto& id : extra[address]) {
      auto* d = resp.add_devices();
      d->set_device_id(id);
      d->set_last_attested_unix_ms(1);
    }
    for (const auto& id : req.device_ids()) {
      const auto& h = held[address];
      if (std::find(h.begin(), h.end(), id) != h.end()) {
        auto* d = resp.add_devices();
        d->set_device_id(id);
        d->set_last_attested_unix_ms(1);
      } else if (auto it = moved[address].find(id);
                 it != moved[address].end()) {
        auto* r = resp.add_not_here();
        r->set_device_id(id);
        r->set_address(it->second);
      }
    }
    return resp;
  }
};

std::vector<std::string> Ids(const std::string& prefix, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(absl::StrCat(prefix, i));
  return out;
}

class FaultCheckTest : public ::testing::Test {
 protected:
  FaultCheckResult Check(
      const std::vector<std::pair<std::string, std::vector<std::string>>>& g) {
    return CheckAcknowledged(
        g,
        [this](const std::string& a, const v1::GetDeviceStatusRequest& r) {
          return shards_.Fetch(a, r);
        },
        [this](absl::Duration d) { waits_.push_back(d); }, {});
  }
  FakeShards shards_;
  std::vector<absl::Duration> waits_;
};

TEST_F(FaultCheckTest, EveryAcknowledgedWriteFoundIsVerified) {
  shards_.held["a"] = Ids("a", 1200);  // three calls of at most 500
  auto r = Check({{"a", Ids("a", 1200)}});
  EXPECT_EQ(r.verified, 1200u);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.unreachable, 0u);
  EXPECT_EQ(shards_.calls["a"], 3);
  EXPECT_TRUE(waits_.empty());
}

TEST_F(FaultCheckTest,
       Fault_ShardBackAfterFailuresIsRetriedWithGrowingBackoff) {
  shards_.held["a"] = Ids("a", 10);
  shards_.failures["a"] = {absl::UnavailableError("restarting"),
                           absl::DeadlineExceededError("slow"),
                           absl::UnavailableError("restarting")};
  auto r = Check({{"a", Ids("a", 10)}});
  EXPECT_EQ(r.verified, 10u);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.unreachable, 0u);
  EXPECT_EQ(r.retries, 3u);
  ASSERT_EQ(waits_.size(), 3u);
  EXPECT_LT(waits_[0], waits_[2]);  // backoff grows (jitter 0.2 < 1.6x)
}

TEST_F(FaultCheckTest, Fault_ShardThatNeverAnswersIsUnreachableNotLost) {
  shards_.held["a"] = Ids("a", 5);
  shards_.down["dead"] = true;
  auto r = Check({{"a", Ids("a", 5)}, {"dead", Ids("d", 7)}});
  EXPECT_EQ(r.verified, 5u);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.unreachable, 7u);
  EXPECT_EQ(shards_.calls["dead"], FaultCheckOptions().attempts);
}

TEST_F(FaultCheckTest, MissingFromAShardThatAnsweredIsLost) {
  shards_.held["a"] = Ids("a", 8);  // a8, a9 acknowledged but not there
  auto r = Check({{"a", Ids("a", 10)}});
  EXPECT_EQ(r.verified, 8u);
  EXPECT_EQ(r.lost, 2u);
  EXPECT_EQ(r.unreachable, 0u);
}

TEST_F(FaultCheckTest, RefusalIsNotRetriedAndNotCountedLost) {
  shards_.failures["a"] = {absl::PermissionDeniedError("not an operator")};
  auto r = Check({{"a", Ids("a", 4)}});
  EXPECT_EQ(shards_.calls["a"], 1);
  EXPECT_EQ(r.unreachable, 4u);
  EXPECT_EQ(r.lost, 0u);
  EXPECT_EQ(r.verified, 0u);
}

TEST_F(FaultCheckTest, Fault_DevicesTheLiveRingMovedAreCheckedAtTheirOwner) {
  // "c" answers that the live ring moved a0..a3: b has a0, a1.
  shards_.held["b"] = {"a0", "a1"};
  shards_.moved["c"] = {{"a0", "b"}, {"a1", "b"}, {"a2", "b"}, {"a3", "d"}};
  shards_.moved["d"] = {{"a3", "c"}};  // moved again: unsettled
  auto r = Check({{"c", {"a0", "a1", "a2", "a3"}}});
  EXPECT_EQ(r.verified, 2u);
  EXPECT_EQ(r.lost, 1u);         // b answered without a2
  EXPECT_EQ(r.unreachable, 1u);  // a3 never settled
}

TEST_F(FaultCheckTest, Attack_AnswerForDevicesNotAskedCountsNothing) {
  // A shard answering for devices nobody asked about (or twice) cannot
  // make up for one it lacks.
  shards_.held["a"] = {"a0"};
  shards_.extra["a"] = {"x", "y", "a0", "a0"};
  auto r = Check({{"a", {"a0", "a1"}}});
  EXPECT_EQ(r.verified, 1u);
  EXPECT_EQ(r.lost, 1u);
}

}  // namespace
}  // namespace sphere::loadgen
