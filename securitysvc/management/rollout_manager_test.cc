// RolloutManager on a real Catalog (memory store), a FakeClock and a fake
// shard count source; a shard-side InMemoryCatalog follows the catalog's
// Watch, so every test also checks what the shards would serve.
#include "securitysvc/management/rollout_manager.h"

#include <gtest/gtest.h>

#include <map>

#include "absl/strings/match.h"
#include "common/crypto/crypto.h"
#include "common/store/memory_store.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/management/catalog_test_support.h"

namespace sphere::management {
namespace {

class FakeCounts : public DeploymentCountSource {
 public:
  absl::StatusOr<v1::StageResultCounts> Counts(const v1::Deployment& d,
                                               uint32_t stage) override {
    const std::string& id = d.id();
    absl::MutexLock l(&mu_);
    if (!error.ok()) return error;
    v1::StageResultCounts c = counts[{id, stage}];
    c.set_rollout_stage(stage);
    return c;
  }
  void Set(const std::string& id, uint32_t stage, uint64_t installed,
           uint64_t failed, uint64_t rolled_back = 0) {
    absl::MutexLock l(&mu_);
    auto& c = counts[{id, stage}];
    c.set_installed(installed);
    c.set_failed(failed);
    c.set_rolled_back(rolled_back);
  }
  absl::Mutex mu_;
  std::map<std::pair<std::string, uint32_t>, v1::StageResultCounts> counts;
  absl::Status error;
};

class RolloutManagerTest : public CatalogFixture {
 protected:
  void SetUp() override {
    catalog_options_.new_deployment_rollout_fraction = 0.01;
    CatalogFixture::SetUp();
    if (HasFatalFailure()) return;
    view_ = std::make_unique<catalog::InMemoryCatalog>(master_key_);
    ASSERT_TRUE(catalog_->CreateProduct(contoso_op_, "", "DW100", "").ok());
    v1::CreateDeviceGroupRequest g;
    g.set_product("DW100");
    g.set_name("Canary");
    g.set_rollout_failure_threshold(0.2);
    auto group = catalog_->CreateDeviceGroup(contoso_op_, g);
    ASSERT_TRUE(group.ok()) << group.status();
    group_ = *group;

    v1::Image app;
    app.set_id(crypto::HexEncode(crypto::Sha256("app package")));
    app.set_tenant_id(contoso_.id());
    app.set_component("dw100-app");
    app.set_version(3);
    app.set_kind(v1::IMAGE_KIND_APPLICATION);
    app.set_image_hash(crypto::Sha256("app image"));
    ASSERT_TRUE(catalog_->RecordImage(contoso_op_, app).ok());
    v1::CreateDeploymentRequest d;
    d.set_device_group_id(group_.id());
    d.add_image_ids(app.id());
    auto dep = catalog_->CreateDeployment(contoso_op_, d);
    ASSERT_TRUE(dep.ok()) << dep.status();
    dep_ = *dep;

    // The shard side: a view following the catalog's Watch.
    auto stream = catalog_->OpenWatch(Caller::Internal(), 0, {});
    ASSERT_TRUE(stream.ok()) << stream.status();
    watch_ = *std::move(stream);
  }

  std::unique_ptr<RolloutManager> OpenManager() {
    RolloutManager::Options o;
    o.plan.soak = absl::Hours(1);
    o.is_leader = [this] { return leader_; };
    auto m = RolloutManager::Open(catalog_.get(), &clock_, &counts_, o);
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *std::move(m) : nullptr;
  }

  // Served: the deployment as the shard's view holds it after following
  // the Watch up to now.
  v1::Deployment Served() {
    std::vector<v1::WatchEvent> events;
    do {
      events.clear();
      EXPECT_TRUE(watch_->Next(1000, &events).ok());
      for (const auto& e : events) {
        absl::Status s = view_->Apply(e);
        EXPECT_TRUE(s.ok()) << s;
      }
    } while (!events.empty());
    auto d = view_->CurrentDeployment(group_.id());
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : v1::Deployment();
  }

  v1::RolloutStatus StatusOf(RolloutManager& m) {
    auto s = m.Status(contoso_op_, "", dep_.id());
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : v1::RolloutStatus();
  }

  v1::DeviceGroup group_;
  v1::Deployment dep_;
  FakeCounts counts_;
  bool leader_ = true;
  std::unique_ptr<Catalog::WatchStream> watch_;
  std::unique_ptr<catalog::InMemoryCatalog> view_;
};

TEST_F(RolloutManagerTest, StartsStagedDeploymentAndAdvancesAfterSoak) {
  // Created staged: shards serve it to 1 % of the group from the start.
  EXPECT_DOUBLE_EQ(Served().rollout_fraction(), 0.01);
  auto m = OpenManager();
  // Asking for it before the first tick starts it: no "no rollout" window.
  v1::RolloutStatus s = StatusOf(*m);
  EXPECT_EQ(s.state(), v1::RolloutStatus::RUNNING);
  EXPECT_EQ(s.stage_index(), 0u);
  EXPECT_DOUBLE_EQ(s.failure_threshold(), 0.2);

  counts_.Set(dep_.id(), 1, 5, 0);
  clock_.Advance(absl::Minutes(59));
  m->Tick();
  EXPECT_EQ(StatusOf(*m).stage_index(), 0u);  // still soaking
  EXPECT_DOUBLE_EQ(Served().rollout_fraction(), 0.01);
  EXPECT_EQ(StatusOf(*m).current().installed(), 5u);  // fresh counts

  clock_.Advance(absl::Minutes(1));
  m->Tick();
  EXPECT_EQ(StatusOf(*m).stage_index(), 1u);
  EXPECT_DOUBLE_EQ(Served().rollout_fraction(), 0.10);
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Hours(1));
    m->Tick();
  }
  EXPECT_EQ(StatusOf(*m).state(), v1::RolloutStatus::COMPLETE);
  v1::Deployment served = Served();
  EXPECT_DOUBLE_EQ(served.rollout_fraction(), 1.0);
  EXPECT_FALSE(served.halted());
}

TEST_F(RolloutManagerTest, HaltsAtThresholdShardsSeeItAndResumeRestartsSoak) {
  auto m = OpenManager();
  m->Tick();
  counts_.Set(dep_.id(), 1, 7, 2, 1);  // 3 of 10 = 30 % > 20 %
  m->Tick();
  v1::RolloutStatus s = StatusOf(*m);
  EXPECT_EQ(s.state(), v1::RolloutStatus::HALTED);
  EXPECT_TRUE(absl::StrContains(s.halt_reason(), "3 of 10")) << s.halt_reason();
  EXPECT_EQ(s.current().failed(), 2u);
  EXPECT_EQ(s.current().rolled_back(), 1u);
  v1::Deployment served = Served();
  EXPECT_TRUE(served.halted());
  EXPECT_EQ(served.halt_reason(), s.halt_reason());
  EXPECT_DOUBLE_EQ(served.rollout_fraction(), 0.01);
  // A halted rollout stays put however long it waits.
  clock_.Advance(absl::Hours(5));
  m->Tick();
  EXPECT_EQ(StatusOf(*m).state(), v1::RolloutStatus::HALTED);

  ASSERT_TRUE(m->Resume(contoso_op_, "", dep_.id()).ok());
  EXPECT_FALSE(Served().halted());
  // Only failures since the resume count: 10 more successes do not halt.
  counts_.Set(dep_.id(), 1, 17, 2, 1);
  m->Tick();
  EXPECT_EQ(StatusOf(*m).state(), v1::RolloutStatus::RUNNING);
  clock_.Advance(absl::Hours(1));
  m->Tick();
  EXPECT_EQ(StatusOf(*m).stage_index(), 1u);
  EXPECT_DOUBLE_EQ(Served().rollout_fraction(), 0.10);
}

TEST_F(RolloutManagerTest, PauseHoldsTheStageAndAbortIsFinal) {
  auto m = OpenManager();
  m->Tick();
  ASSERT_TRUE(m->Pause(contoso_op_, "", dep_.id()).ok());
  clock_.Advance(absl::Hours(3));
  m->Tick();
  EXPECT_EQ(StatusOf(*m).state(), v1::RolloutStatus::PAUSED);
  EXPECT_DOUBLE_EQ(Served().rollout_fraction(), 0.01);
  // Pausing twice is a precondition error, and changes nothing.
  const int64_t rev = catalog_->revision();
  EXPECT_TRUE(absl::IsFailedPrecondition(m->Pause(contoso_op_, "", dep_.id())));
  EXPECT_EQ(catalog_->revision(), rev);

  ASSERT_TRUE(m->Abort(contoso_op_, "", dep_.id(), "bad build").ok());
  v1::Deployment served = Served();
  EXPECT_TRUE(served.halted());
  EXPECT_TRUE(absl::StrContains(served.halt_reason(), "bad build"));
  const int64_t after_abort = catalog_->revision();
  absl::Status resume = m->Resume(contoso_op_, "", dep_.id());
  EXPECT_TRUE(absl::IsFailedPrecondition(resume)) << resume;
  EXPECT_TRUE(absl::StrContains(resume.message(), "ABORTED")) << resume;
  EXPECT_EQ(catalog_->revision(), after_abort);
  EXPECT_EQ(StatusOf(*m).state(), v1::RolloutStatus::ABORTED);
}

TEST_F(RolloutManagerTest, Attack_AnotherTenantSeesNotFoundAndChangesNothing) {
  auto m = OpenManager();
  m->Tick();
  const int64_t rev = catalog_->revision();
  EXPECT_TRUE(
      absl::IsNotFound(m->Status(fabrikam_op_, "", dep_.id()).status()));
  EXPECT_TRUE(absl::IsNotFound(m->Pause(fabrikam_op_, "", dep_.id())));
  EXPECT_TRUE(absl::IsNotFound(m->Abort(fabrikam_op_, "", dep_.id(), "")));
  EXPECT_TRUE(absl::IsNotFound(m->Resume(fabrikam_op_, "", dep_.id())));
  // A tenant operator cannot publish rollout state directly either.
  v1::Deployment forged = dep_;
  forged.set_rollout_fraction(1);
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->SetDeploymentRollout(contoso_op_, forged).status()));
  EXPECT_EQ(catalog_->revision(), rev);
  EXPECT_EQ(StatusOf(*m).state(), v1::RolloutStatus::RUNNING);
  EXPECT_DOUBLE_EQ(Served().rollout_fraction(), 0.01);
}

TEST_F(RolloutManagerTest, Attack_OversizedRolloutStateRefusedNothingChanged) {
  const int64_t rev = catalog_->revision();
  v1::Deployment big = dep_;
  big.set_halt_reason(std::string(limits::kMaxRolloutReasonBytes + 1, 'x'));
  EXPECT_TRUE(absl::IsInvalidArgument(
      catalog_->SetDeploymentRollout(platform_, big).status()));
  big = dep_;
  big.set_rollout_status(std::string(limits::kMaxRolloutStatusBytes + 1, 'x'));
  EXPECT_TRUE(absl::IsInvalidArgument(
      catalog_->SetDeploymentRollout(platform_, big).status()));
  big = dep_;
  big.set_rollout_fraction(1.5);
  EXPECT_TRUE(absl::IsInvalidArgument(
      catalog_->SetDeploymentRollout(platform_, big).status()));
  EXPECT_EQ(catalog_->revision(), rev);
  EXPECT_DOUBLE_EQ(Served().rollout_fraction(), 0.01);
}

TEST_F(RolloutManagerTest, SurvivesManagementRestart) {
  {
    auto m = OpenManager();
    m->Tick();
    clock_.Advance(absl::Hours(1));
    m->Tick();  // stage 10 %
    counts_.Set(dep_.id(), 10, 1, 5);
    m->Tick();  // halted
    ASSERT_EQ(StatusOf(*m).state(), v1::RolloutStatus::HALTED);
    ASSERT_TRUE(m->Resume(contoso_op_, "", dep_.id()).ok());  // baseline 6
    ASSERT_TRUE(m->Pause(contoso_op_, "", dep_.id()).ok());
  }
  // A new management process: catalog reopened from the same store.
  watch_.reset();
  catalog_ = OpenCatalog();
  auto m = OpenManager();
  v1::RolloutStatus s = StatusOf(*m);
  EXPECT_EQ(s.state(), v1::RolloutStatus::PAUSED);
  EXPECT_EQ(s.stage_index(), 1u);
  ASSERT_TRUE(m->Resume(contoso_op_, "", dep_.id()).ok());
  // The old failures stay behind the restored baseline: no halt.
  counts_.Set(dep_.id(), 10, 3, 5);
  m->Tick();
  EXPECT_EQ(StatusOf(*m).state(), v1::RolloutStatus::RUNNING);
  // And the restarted manager does not start the deployment over.
  EXPECT_EQ(StatusOf(*m).stage_index(), 1u);
}

TEST_F(RolloutManagerTest, Fault_CountsUnavailableNeitherAdvancesNorHalts) {
  auto m = OpenManager();
  m->Tick();
  counts_.error = absl::UnavailableError("shard 2 down");
  clock_.Advance(absl::Hours(2));
  const int64_t rev = catalog_->revision();
  m->Tick();
  EXPECT_EQ(catalog_->revision(), rev);
  auto s = m->Status(contoso_op_, "", dep_.id());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->stage_index(), 0u);
  EXPECT_FALSE(s->has_current());
  counts_.error = absl::OkStatus();
  m->Tick();
  EXPECT_EQ(StatusOf(*m).stage_index(), 1u);
}

TEST_F(RolloutManagerTest, DeletedDeploymentEndsItsRollout) {
  auto m = OpenManager();
  m->Tick();
  ASSERT_TRUE(catalog_->DeleteDeployment(contoso_op_, "", dep_.id()).ok());
  const int64_t rev = catalog_->revision();
  clock_.Advance(absl::Hours(1));
  m->Tick();  // the publish fails NOT_FOUND: the rollout is dropped
  EXPECT_EQ(catalog_->revision(), rev);
  EXPECT_TRUE(absl::IsNotFound(m->Status(contoso_op_, "", dep_.id()).status()));
  clock_.Advance(absl::Hours(1));
  m->Tick();
  EXPECT_EQ(catalog_->revision(), rev);
}

TEST_F(RolloutManagerTest, NotLeaderDoesNothing) {
  leader_ = false;
  auto m = OpenManager();
  const int64_t rev = catalog_->revision();
  m->Tick();
  EXPECT_TRUE(absl::IsNotFound(m->Status(contoso_op_, "", dep_.id()).status()));
  EXPECT_EQ(catalog_->revision(), rev);
  leader_ = true;
  m->Tick();
  EXPECT_EQ(StatusOf(*m).state(), v1::RolloutStatus::RUNNING);
}

}  // namespace
}  // namespace sphere::management
