// RolloutController on a FakeClock: soak advances stages, the failure rate
// halts a stage by itself, resume, pause, abort, the error-reporting hook,
// and a failed publish leaving the rollout unchanged.
#include "securitysvc/update/rollout_controller.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace sphere::update {
namespace {

class RolloutControllerTest : public ::testing::Test {
 protected:
  RolloutControllerTest() : clock_(absl::FromUnixSeconds(1700000000)) {
    dep_.set_id("dep-1");
    dep_.set_tenant_id("tenant-a");
    dep_.set_device_group_id("group-a");
    dep_.add_image_ids(std::string(64, 'a'));
  }
  std::unique_ptr<RolloutController> Make(RolloutController::Plan plan = {}) {
    RolloutController::Hooks h;
    h.apply = [this](const v1::Deployment& d) {
      if (!apply_error_.ok()) return apply_error_;
      published_.push_back(d);
      return absl::OkStatus();
    };
    h.counts = [this](const v1::Deployment& d,
                      uint32_t stage) -> absl::StatusOr<v1::StageResultCounts> {
      EXPECT_EQ(d.id(), "dep-1");
      v1::StageResultCounts c = counts_[stage];
      c.set_rollout_stage(stage);
      return c;
    };
    h.extra_failures = [this](const std::string&, absl::Time) {
      return extra_;
    };
    return std::make_unique<RolloutController>(&clock_, h, plan);
  }
  v1::RolloutStatus StatusOf(RolloutController& c) {
    auto s = c.Status("dep-1");
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : v1::RolloutStatus();
  }
  void SetCounts(uint32_t stage, uint64_t installed, uint64_t failed,
                 uint64_t rolled_back = 0) {
    counts_[stage].set_installed(installed);
    counts_[stage].set_failed(failed);
    counts_[stage].set_rolled_back(rolled_back);
  }

  FakeClock clock_;
  v1::Deployment dep_;
  std::vector<v1::Deployment> published_;
  std::map<uint32_t, v1::StageResultCounts> counts_;
  uint64_t extra_ = 0;
  absl::Status apply_error_;
};

TEST_F(RolloutControllerTest, SoakAdvancesStagesOnTheClock) {
  auto c = Make();
  ASSERT_TRUE(c->Start(dep_, 0.2).ok());
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_DOUBLE_EQ(published_.back().rollout_fraction(), 0.01);
  EXPECT_FALSE(published_.back().halted());
  c->Tick();
  clock_.Advance(absl::Minutes(59));
  c->Tick();
  EXPECT_EQ(StatusOf(*c).stage_index(), 0u);  // still soaking
  EXPECT_EQ(published_.size(), 1u);
  const double expected[] = {0.10, 0.50, 1.0};
  for (double f : expected) {
    clock_.Advance(absl::Hours(1));
    c->Tick();
    EXPECT_DOUBLE_EQ(published_.back().rollout_fraction(), f);
  }
  EXPECT_EQ(StatusOf(*c).stage_index(), 3u);
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::RUNNING);
  clock_.Advance(absl::Hours(1));
  c->Tick();
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::COMPLETE);
  EXPECT_DOUBLE_EQ(published_.back().rollout_fraction(), 1.0);
  EXPECT_FALSE(published_.back().halted());
  EXPECT_TRUE(absl::IsAlreadyExists(c->Start(dep_, 0.2)));
}

TEST_F(RolloutControllerTest, HaltsByItselfWhenTheStagePassesTheThreshold) {
  auto c = Make();
  ASSERT_TRUE(c->Start(dep_, 0.2).ok());
  SetCounts(1, 8, 2);  // 2 of 10 = 20 %: not over 20 %
  c->Tick();
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::RUNNING);
  SetCounts(1, 8, 2, 1);  // 3 of 11 = 27 %
  c->Tick();
  v1::RolloutStatus s = StatusOf(*c);
  EXPECT_EQ(s.state(), v1::RolloutStatus::HALTED);
  EXPECT_TRUE(absl::StrContains(s.halt_reason(), "3 of 11")) << s.halt_reason();
  EXPECT_TRUE(absl::StrContains(s.halt_reason(), "threshold of 20.0 %"));
  EXPECT_EQ(s.current().rolled_back(), 1u);
  ASSERT_TRUE(published_.back().halted());
  EXPECT_EQ(published_.back().halt_reason(), s.halt_reason());
  // Halted: no advancing however long it soaks.
  const size_t n = published_.size();
  clock_.Advance(absl::Hours(10));
  c->Tick();
  EXPECT_EQ(StatusOf(*c).stage_index(), 0u);
  EXPECT_EQ(published_.size(), n);
}

TEST_F(RolloutControllerTest, ResumeCountsOnlyNewReportsAndCanHaltAgain) {
  auto c = Make();
  ASSERT_TRUE(c->Start(dep_, 0.2).ok());
  SetCounts(1, 1, 1);
  c->Tick();
  ASSERT_EQ(StatusOf(*c).state(), v1::RolloutStatus::HALTED);
  ASSERT_TRUE(c->Resume("dep-1").ok());
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::RUNNING);
  EXPECT_FALSE(published_.back().halted());
  EXPECT_TRUE(published_.back().halt_reason().empty());
  c->Tick();  // the old failure does not halt it again
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::RUNNING);
  SetCounts(1, 5, 1);  // since resume: 4 installed, 0 failed
  clock_.Advance(absl::Hours(1));
  c->Tick();
  EXPECT_EQ(StatusOf(*c).stage_index(), 1u);
  SetCounts(10, 0, 1);  // next stage: 1 of 1 failed
  c->Tick();
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::HALTED);
  EXPECT_TRUE(absl::StrContains(StatusOf(*c).halt_reason(), "stage 10 %"));
}

TEST_F(RolloutControllerTest, PauseHoldsTheStageAndResumeRestartsTheSoak) {
  auto c = Make();
  ASSERT_TRUE(c->Start(dep_, 0).ok());
  ASSERT_TRUE(c->Pause("dep-1").ok());
  EXPECT_FALSE(published_.back().halted());  // the stage stays served
  EXPECT_DOUBLE_EQ(published_.back().rollout_fraction(), 0.01);
  clock_.Advance(absl::Hours(5));
  c->Tick();
  EXPECT_EQ(StatusOf(*c).stage_index(), 0u);
  EXPECT_TRUE(absl::IsFailedPrecondition(c->Pause("dep-1")));
  ASSERT_TRUE(c->Resume("dep-1").ok());
  c->Tick();
  EXPECT_EQ(StatusOf(*c).stage_index(), 0u);  // soak restarted at resume
  clock_.Advance(absl::Hours(1));
  c->Tick();
  EXPECT_EQ(StatusOf(*c).stage_index(), 1u);
}

TEST_F(RolloutControllerTest, AbortIsFinal) {
  auto c = Make();
  ASSERT_TRUE(c->Start(dep_, 0.2).ok());
  ASSERT_TRUE(c->Abort("dep-1", "bad build").ok());
  v1::RolloutStatus s = StatusOf(*c);
  EXPECT_EQ(s.state(), v1::RolloutStatus::ABORTED);
  EXPECT_EQ(s.halt_reason(), "aborted by operator: bad build");
  EXPECT_TRUE(published_.back().halted());
  const size_t n = published_.size();
  EXPECT_TRUE(absl::IsFailedPrecondition(c->Resume("dep-1")));
  EXPECT_TRUE(absl::IsFailedPrecondition(c->Abort("dep-1", "")));
  clock_.Advance(absl::Hours(5));
  c->Tick();
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::ABORTED);
  EXPECT_EQ(published_.size(), n);
  EXPECT_TRUE(absl::IsNotFound(c->Pause("no-such-deployment")));
}

TEST_F(RolloutControllerTest, CrashesAfterInstallCountAsFailures) {
  auto c = Make();
  ASSERT_TRUE(c->Start(dep_, 0.5).ok());
  SetCounts(1, 4, 0);
  extra_ = 3;  // error reporting saw 3 crashes: 3 of 4 > 50 %
  c->Tick();
  v1::RolloutStatus s = StatusOf(*c);
  EXPECT_EQ(s.state(), v1::RolloutStatus::HALTED);
  EXPECT_EQ(s.extra_failures(), 3u);
  EXPECT_TRUE(absl::StrContains(s.halt_reason(), "3 crashes after install"))
      << s.halt_reason();
}

TEST_F(RolloutControllerTest, ZeroThresholdNeverHalts) {
  auto c = Make();
  ASSERT_TRUE(c->Start(dep_, 0).ok());
  SetCounts(1, 0, 100);
  c->Tick();
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::RUNNING);
}

TEST_F(RolloutControllerTest, Fault_FailedPublishLeavesTheRolloutUnchanged) {
  auto c = Make();
  ASSERT_TRUE(c->Start(dep_, 0.2).ok());
  apply_error_ = absl::UnavailableError("catalog unavailable");
  clock_.Advance(absl::Hours(1));
  c->Tick();
  EXPECT_EQ(StatusOf(*c).stage_index(), 0u);
  EXPECT_TRUE(absl::IsUnavailable(c->Pause("dep-1")));
  EXPECT_EQ(StatusOf(*c).state(), v1::RolloutStatus::RUNNING);
  apply_error_ = absl::OkStatus();  // the next tick publishes
  c->Tick();
  EXPECT_EQ(StatusOf(*c).stage_index(), 1u);
  EXPECT_DOUBLE_EQ(published_.back().rollout_fraction(), 0.10);
}

}  // namespace
}  // namespace sphere::update
