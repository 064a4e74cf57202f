// Staged rollout x error reporting (issue 11): crashes and watchdog resets
// that devices report after installing count against their rollout stage.
// One in-process shard (TestPlatform, real mTLS) runs the update and the
// error-reporting plug-ins wired as shard_main.cc wires them; a
// RolloutController reads the shard's counts over UpdateAdminService the way
// management's ShardDeploymentCounts does. No sleeps: an upload's crash task
// and a counts read share the update worker's FIFO queue, so a counts read
// issued after the upload returned sees it.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/memory_store.h"
#include "mcu-model/image.h"
#include "protos/error_reporting.grpc.pb.h"
#include "protos/update.grpc.pb.h"
#include "securitysvc/errors/error_plugin.h"
#include "securitysvc/shard_server/test_platform.h"
#include "securitysvc/update/group_metadata.h"
#include "securitysvc/update/rollout_controller.h"
#include "securitysvc/update/update_plugin.h"

namespace sphere::update {
namespace {

using shard::TestPlatform;
using R = v1::ReportUpdateResultRequest;

struct Shared {
  TestPlatform platform;
  UpdatePlugin* plugin = nullptr;
  std::map<std::string, std::string> packages;
  std::string app_id;
};
Shared* g = nullptr;

class RolloutCrashTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g = new Shared;
    TestPlatform::Options o;
    o.extra_plugins = [](TestPlatform& p) {
      UpdatePlugin::Options uo;
      uo.signer = std::make_shared<KeyMetadataSigner>(p.image_signing_key());
      uo.packages = std::make_shared<FunctionPackageSource>(
          [](absl::string_view id) -> absl::StatusOr<std::string> {
            auto it = g->packages.find(std::string(id));
            if (it == g->packages.end()) return absl::NotFoundError("none");
            return it->second;
          });
      // Short window: the platform's test certificates last 24 h of real
      // time, and the fake clock must stay inside them.
      uo.crash_window = absl::Hours(2);
      auto up = std::make_unique<UpdatePlugin>(std::move(uo));
      g->plugin = up.get();
      errors::ErrorReportingPlugin::Options eo;
      eo.sweep_interval = absl::ZeroDuration();
      eo.on_accepted = [plugin = up.get()](
                           const std::string& id,
                           const v1::UploadErrorsRequest& batch) {
        plugin->OnErrorsAccepted(id, batch);
      };
      std::vector<std::unique_ptr<shard::ShardPlugin>> v;
      v.push_back(std::move(up));
      v.push_back(std::make_unique<errors::ErrorReportingPlugin>(eo));
      return v;
    };
    ASSERT_TRUE(g->platform.Start(std::move(o)).ok());
    v1::ImageHeader h;
    h.set_component(mcu::AppComponentName("dw100"));
    h.set_version(2);
    h.set_kind(v1::IMAGE_KIND_APPLICATION);
    h.set_tenant_id(TestPlatform::kTenant);
    h.mutable_manifest()->set_component_id("dw100");
    auto pkg = mcu::SignImage(h, std::string(1000, 'p'),
                              g->platform.image_signing_key());
    ASSERT_TRUE(pkg.ok()) << pkg.status();
    v1::Image img;
    img.set_id(crypto::HexEncode(mcu::ImageHash(pkg->header())));
    img.set_tenant_id(TestPlatform::kTenant);
    img.set_component(h.component());
    img.set_version(2);
    img.set_kind(h.kind());
    img.set_image_hash(mcu::ImageHash(pkg->header()));
    img.set_size(1000);
    g->platform.catalog().PutImage(img);
    g->packages[img.id()] = pkg->SerializeAsString();
    g->app_id = img.id();
  }
  static void TearDownTestSuite() {
    delete g;
    g = nullptr;
  }

  static rpc::TlsFiles Cert(const mcu::Device& d) {
    return g->platform.DeviceTls(d, "full");
  }
  static rpc::TlsFiles Operator() {
    crypto::DeviceClaims op;
    op.scope = "platform-operator";
    return g->platform.Issue("platform-op", crypto::KeyUsage::kClientAuth, op);
  }
  static grpc::Status Report(const mcu::Device& d, R::Result result,
                             uint32_t version = 2) {
    auto stub = v1::UpdateService::NewStub(
        rpc::NewChannel(g->platform.server().address(), Cert(d)));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::ReportUpdateResultRequest req;
    req.set_image_id(g->app_id);
    req.set_result(result);
    req.set_version(version);
    v1::ReportUpdateResultResponse resp;
    return stub->ReportUpdateResult(&ctx, req, &resp);
  }
  // Crash uploads one error event of `kind` for `d` (sequence `seq`).
  static grpc::Status Crash(const mcu::Device& d, uint64_t seq,
                            v1::ErrorEvent::Kind kind,
                            const std::string& version = "2") {
    auto stub = v1::ErrorReportingService::NewStub(
        rpc::NewChannel(g->platform.server().address(), Cert(d)));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::UploadErrorsRequest req;
    v1::ErrorEvent* e = req.add_events();
    e->set_sequence(seq);
    e->set_kind(kind);
    e->set_component("dw100");
    e->set_component_version(version);
    e->set_exit_code(kind == v1::ErrorEvent::APP_CRASH ? 139 : 0);
    e->set_time_unix_ms(absl::ToUnixMillis(g->platform.clock().Now()));
    v1::UploadErrorsResponse resp;
    return stub->UploadErrors(&ctx, req, &resp);
  }
  // Counts reads the shard's counts for `dep` like management does.
  static absl::StatusOr<v1::StageResultCounts> Counts(const v1::Deployment& dep,
                                                      uint32_t stage) {
    auto stub = v1::UpdateAdminService::NewStub(
        rpc::NewChannel(g->platform.server().address(), Operator()));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::GetDeploymentCountsRequest req;
    req.set_deployment_id(dep.id());
    req.set_device_group_id(dep.device_group_id());
    v1::DeploymentCounts resp;
    grpc::Status s = stub->GetDeploymentCounts(&ctx, req, &resp);
    if (!s.ok()) return rpc::FromGrpcStatus(s);
    v1::StageResultCounts out;
    out.set_rollout_stage(stage);
    for (const auto& c : resp.stages()) {
      if (c.rollout_stage() == stage) out = c;
    }
    return out;
  }
  static void Publish(const v1::Deployment& d) {
    static int64_t revision = 100;
    v1::WatchEvent ev;
    ev.set_revision(++revision);
    *ev.mutable_deployment() = d;
    ASSERT_TRUE(g->platform.catalog().Apply(ev).ok());
  }
  static v1::Deployment NewDeployment(const std::string& id) {
    v1::Deployment d;
    d.set_id(id);
    d.set_tenant_id(TestPlatform::kTenant);
    d.set_device_group_id(TestPlatform::kGroup);
    d.add_image_ids(g->app_id);
    d.set_create_revision(100);
    return d;
  }
  // Devices: `n` new devices of the group, in (or out of) the first
  // `percent` % of the group.
  static std::vector<std::unique_ptr<mcu::Device>> Devices(
      const std::string& seed, int n, uint32_t percent, bool in_stage) {
    std::vector<std::unique_ptr<mcu::Device>> out;
    for (int i = 0; out.size() < static_cast<size_t>(n) && i < 400; ++i) {
      auto d = g->platform.NewDevice(absl::StrCat(seed, "-", i));
      EXPECT_TRUE(d.ok()) << d.status();
      if (!d.ok()) break;
      if (InRolloutStage((*d)->device_id(), percent / 100.0) == in_stage) {
        out.push_back(*std::move(d));
      }
    }
    EXPECT_EQ(out.size(), static_cast<size_t>(n));
    return out;
  }
  std::unique_ptr<RolloutController> Controller(RolloutController::Plan plan) {
    RolloutController::Hooks h;
    h.apply = [this](const v1::Deployment& d) {
      Publish(d);
      published_.push_back(d);
      return absl::OkStatus();
    };
    h.counts = [](const v1::Deployment& d, uint32_t stage) {
      return Counts(d, stage);
    };
    return std::make_unique<RolloutController>(&g->platform.clock(), h, plan);
  }
  std::vector<v1::Deployment> published_;
};

TEST_F(RolloutCrashTest, StageWhoseDevicesCrashAfterInstallHaltsAndResumes) {
  // Only this test's deployment is current for the group while it runs.
  v1::Deployment dep = NewDeployment("dep-crash");
  RolloutController::Plan plan;
  plan.stage_percents = {50, 100};
  plan.soak = absl::Hours(1);
  auto c = Controller(plan);
  ASSERT_TRUE(c->Start(dep, /*failure_threshold=*/0.25).ok());
  ASSERT_FALSE(published_.empty());
  EXPECT_DOUBLE_EQ(published_.back().rollout_fraction(), 0.5);

  auto in = Devices("crash-in", 4, 50, true);
  // Before anyone reports, every device of the stage is pending.
  auto before = Counts(published_.back(), 50);
  ASSERT_TRUE(before.ok()) << before.status();
  const uint64_t in_stage = before->in_stage();
  EXPECT_GE(in_stage, 4u);
  EXPECT_EQ(before->pending(), in_stage);
  EXPECT_EQ(before->installed(), 0u);

  for (auto& d : in) ASSERT_TRUE(Report(*d, R::INSTALLED).ok());
  auto installed = Counts(published_.back(), 50);
  ASSERT_TRUE(installed.ok());
  EXPECT_EQ(installed->installed(), 4u);
  EXPECT_EQ(installed->pending(), in_stage - 4);
  c->Tick();  // 0 failures: keeps soaking
  EXPECT_EQ(c->Status(dep.id())->state(), v1::RolloutStatus::RUNNING);

  // Two of the four crash after installing (one app crash, one watchdog
  // reset; the second is uploaded twice and counts once): 2 of 4 > 25 %.
  g->platform.clock().Advance(absl::Minutes(10));
  ASSERT_TRUE(Crash(*in[0], 1, v1::ErrorEvent::APP_CRASH).ok());
  ASSERT_TRUE(Crash(*in[1], 1, v1::ErrorEvent::WATCHDOG_RESET).ok());
  ASSERT_TRUE(Crash(*in[1], 2, v1::ErrorEvent::WATCHDOG_RESET).ok());
  auto crashed = Counts(published_.back(), 50);
  ASSERT_TRUE(crashed.ok());
  EXPECT_EQ(crashed->crashed_after_install(), 2u);
  EXPECT_EQ(crashed->installed(), 4u);  // still installed: crashed once each
  auto rec = g->plugin->results()->Get(in[1]->device_id());
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->crash_kind(), v1::ErrorEvent::WATCHDOG_RESET);
  EXPECT_GT(rec->crashed_after_install_unix_ms(), 0);

  c->Tick();  // during the soak: the failures halt it at once
  auto s = c->Status(dep.id());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->state(), v1::RolloutStatus::HALTED);
  EXPECT_TRUE(absl::StrContains(s->halt_reason(), "2 of 4"))
      << s->halt_reason();
  EXPECT_TRUE(absl::StrContains(
      s->halt_reason(), "2 crashed or were watchdog-reset after install"))
      << s->halt_reason();
  EXPECT_EQ(s->extra_failures(), 2u);
  EXPECT_TRUE(published_.back().halted());
  EXPECT_EQ(published_.back().halt_reason(), s->halt_reason());

  // Resume: only failures from now on count; it soaks, then advances.
  ASSERT_TRUE(c->Resume(dep.id()).ok());
  EXPECT_FALSE(published_.back().halted());
  c->Tick();
  EXPECT_EQ(c->Status(dep.id())->state(), v1::RolloutStatus::RUNNING);
  g->platform.clock().Advance(absl::Minutes(59));
  c->Tick();
  EXPECT_EQ(c->Status(dep.id())->stage_index(), 0u);  // soak not over
  g->platform.clock().Advance(absl::Minutes(2));
  c->Tick();
  EXPECT_EQ(c->Status(dep.id())->stage_index(), 1u);
  EXPECT_DOUBLE_EQ(published_.back().rollout_fraction(), 1.0);
}

TEST_F(RolloutCrashTest, SoakKeepsCountingFailuresUntilItEnds) {
  v1::Deployment dep = NewDeployment("dep-soak");
  RolloutController::Plan plan;
  plan.stage_percents = {50, 100};
  plan.soak = absl::Hours(2);
  auto c = Controller(plan);
  ASSERT_TRUE(c->Start(dep, 0.2).ok());
  auto in = Devices("soak-in", 3, 50, true);
  for (auto& d : in) ASSERT_TRUE(Report(*d, R::INSTALLED).ok());
  g->platform.clock().Advance(absl::Minutes(90));
  c->Tick();
  EXPECT_EQ(c->Status(dep.id())->state(), v1::RolloutStatus::RUNNING);
  EXPECT_EQ(c->Status(dep.id())->stage_index(), 0u);
  // A crash late in the soak (1 of 3 > 20 %) still halts the stage.
  ASSERT_TRUE(Crash(*in[2], 7, v1::ErrorEvent::APP_CRASH).ok());
  c->Tick();
  auto s = c->Status(dep.id());
  EXPECT_EQ(s->state(), v1::RolloutStatus::HALTED);
  EXPECT_EQ(s->stage_index(), 0u);  // never advanced
  EXPECT_TRUE(absl::StrContains(s->halt_reason(), "1 crashed"))
      << s->halt_reason();
}

// Crashes that are not the new version's fault change nothing: a crash
// reported outside the window, a crash of the old version, a device whose
// install failed, a device that never updated, other event kinds.
TEST_F(RolloutCrashTest, Attack_CrashesNotAfterThisInstallChangeNothing) {
  v1::Deployment dep = NewDeployment("dep-noise");
  dep.set_rollout_fraction(1.0);
  Publish(dep);
  auto devs = Devices("noise", 5, 100, true);
  ASSERT_TRUE(Report(*devs[0], R::INSTALLED).ok());
  ASSERT_TRUE(Report(*devs[1], R::INSTALLED).ok());
  ASSERT_TRUE(Report(*devs[2], R::FAILED).ok());
  // devs[3] never reports; devs[4] installed long ago.
  ASSERT_TRUE(Report(*devs[4], R::INSTALLED).ok());
  g->platform.clock().Advance(absl::Hours(3));       // past the 2 h window
  ASSERT_TRUE(Report(*devs[0], R::INSTALLED).ok());  // reinstalled now
  ASSERT_TRUE(Report(*devs[1], R::INSTALLED).ok());
  auto before = Counts(dep, 100);
  ASSERT_TRUE(before.ok());
  const std::string rec4 =
      g->plugin->results()->Get(devs[4]->device_id())->SerializeAsString();

  // Old version crashing (its report was still queued on the device).
  ASSERT_TRUE(Crash(*devs[0], 1, v1::ErrorEvent::APP_CRASH, "1").ok());
  // Not a crash.
  ASSERT_TRUE(Crash(*devs[1], 1, v1::ErrorEvent::FIREWALL_VIOLATION).ok());
  ASSERT_TRUE(Crash(*devs[2], 1, v1::ErrorEvent::APP_CRASH).ok());
  ASSERT_TRUE(Crash(*devs[3], 1, v1::ErrorEvent::APP_CRASH).ok());
  ASSERT_TRUE(Crash(*devs[4], 1, v1::ErrorEvent::WATCHDOG_RESET).ok());

  auto after = Counts(dep, 100);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->crashed_after_install(), 0u);
  EXPECT_EQ(after->SerializeAsString(), before->SerializeAsString());
  EXPECT_EQ(
      g->plugin->results()->Get(devs[4]->device_id())->SerializeAsString(),
      rec4);
  EXPECT_TRUE(absl::IsNotFound(
      g->plugin->results()->Get(devs[3]->device_id()).status()));
  EXPECT_EQ(g->plugin->results()
                ->Get(devs[0]->device_id())
                ->crashed_after_install_unix_ms(),
            0);
}

// The crash mark is stored with the result: a restarted shard (Load) counts
// it again; the device's next result replaces it.
TEST(UpdateResultsCrashTest, CrashMarkSurvivesReloadAndNextResultClearsIt) {
  auto store =
      *store::MemoryStore::Create({kUpdateResultsCf, kUpdateHistoryCf});
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  UpdateResults results(store.get());
  v1::DeviceUpdateStatus st;
  st.set_device_id(std::string(64, 'a'));
  st.set_image_id(std::string(64, 'b'));
  st.set_component("app:dw100");
  st.set_version(2);
  st.set_result(R::INSTALLED);
  st.set_deployment_id("dep-r");
  st.set_rollout_stage(10);
  st.set_reported_unix_ms(absl::ToUnixMillis(t0));
  ASSERT_TRUE(results.Record(st).ok());
  UpdateResults::CrashEvent e{v1::ErrorEvent::APP_CRASH, "dw100", "2"};
  auto marked = results.RecordCrash(st.device_id(), e, t0 + absl::Minutes(5),
                                    absl::Hours(24));
  ASSERT_TRUE(marked.ok());
  EXPECT_TRUE(*marked);
  // Twice: still one device.
  EXPECT_FALSE(*results.RecordCrash(st.device_id(), e, t0 + absl::Minutes(6),
                                    absl::Hours(24)));
  EXPECT_EQ(results.Counts("dep-r")[10].crashed_after_install, 1u);
  EXPECT_EQ(results.Counts("dep-r")[10].failures(), 1u);

  UpdateResults reloaded(store.get());
  ASSERT_TRUE(reloaded.Load().ok());
  EXPECT_EQ(reloaded.Counts("dep-r")[10].crashed_after_install, 1u);
  EXPECT_EQ(reloaded.Counts("dep-r")[10].installed, 1u);

  // The device rolls back: it counts once, as rolled back.
  st.set_result(R::ROLLED_BACK);
  ASSERT_TRUE(reloaded.Record(st).ok());
  StageCounts c = reloaded.Counts("dep-r")[10];
  EXPECT_EQ(c.crashed_after_install, 0u);
  EXPECT_EQ(c.rolled_back, 1u);
  EXPECT_EQ(c.installed, 0u);
}

}  // namespace
}  // namespace sphere::update
