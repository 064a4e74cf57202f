// Issue 11 end to end, against a real local cluster (management + 2 shard
// processes with the update plug-in) and real twin processes: the platform
// operator releases OS 2 on the RetailEval feed; a twin in that feed's
// group attests UPDATE_REQUIRED (update-only certificate); `twin update`
// verifies the signed metadata, downloads and installs OS 2 into the
// inactive slot, reboots, re-attests and reports; the twin then attests
// UP_TO_DATE with a full certificate, and the operator sees it. A second
// twin does the same through TwinControl.CheckForUpdates on `twin run`.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "protos/twin_control.grpc.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_helpers.h"
#include "tests/spherectl_runner.h"
#include "tests/twin_helpers.h"
#include "tests/twin_run.h"
#include "twin/state_file.h"

namespace sphere::testing {
namespace {

using json = nlohmann::json;

class UpdateE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start("upd", 2);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    absl::Status s =
        SetUpTenant(cluster_->cluster_file(), "Contoso", {"DW100"});
    ASSERT_TRUE(s.ok()) << s;
    auto [rc, out] =
        RunCommand({BinaryPath("securitysvc/os_builder"), "--state-dir",
                    cluster_->dir(), "--version", "2"});
    ASSERT_EQ(rc, 0) << out;
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  static std::pair<int, std::string> Ctl(std::vector<std::string> args) {
    return Spherectl(cluster_->cluster_file(), args);
  }

  // NewTwin runs the factory for twin `name`, has Contoso claim it into
  // the RetailEval group, and returns its device id.
  static std::string NewTwin(const std::string& name) {
    auto id = ClaimNewTwin(cluster_->cluster_file(), "Contoso", name,
                           "DW100/Production OS Evaluation");
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }

  static void ReleaseOs2() {
    if (released_) return;
    auto [rc, out] =
        Ctl({"os", "release", "--feed", "RetailEval", "--version", "2",
             "--images-dir", cluster_->dir() + "/images/os-2"});
    ASSERT_EQ(rc, 0) << out;
    released_ = true;
  }

  static std::pair<int, std::string> Twin(const std::string& name,
                                          const std::string& command,
                                          const std::string& chain_out = "") {
    std::vector<std::string> flags;
    if (!chain_out.empty()) flags = {"--chain_out", chain_out};
    return RunCommand(TwinArgv(cluster_, name, flags, command));
  }

  static std::string Scope(const std::string& chain_file) {
    auto pem = util::ReadFile(chain_file);
    if (!pem.ok()) return "";
    auto leaf = crypto::ParseCertificate(crypto::SplitPemChain(*pem)[0]);
    return leaf.ok() ? leaf->claims.scope : "";
  }

  static LocalCluster* cluster_;
  static bool released_;
};

LocalCluster* UpdateE2ETest::cluster_ = nullptr;
bool UpdateE2ETest::released_ = false;

TEST_F(UpdateE2ETest, OsReleaseUpdateRequiredTwinUpdateUpToDate) {
  const std::string id = NewTwin("dw100-upd");
  ASSERT_FALSE(id.empty());
  ReleaseOs2();
  const std::string chain = cluster_->dir() + "/dw100-upd-chain.pem";

  auto [rc, out] = Twin("dw100-upd", "attest", chain);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "outcome UPDATE_REQUIRED")) << out;
  EXPECT_EQ(Scope(chain), "update-only");

  std::tie(rc, out) = Twin("dw100-upd", "update");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "INSTALLED")) << out;
  EXPECT_FALSE(absl::StrContains(out, "FAILED")) << out;
  // The re-attestation after the install reboot is already UP_TO_DATE.
  EXPECT_TRUE(absl::StrContains(out, "outcome UP_TO_DATE")) << out;

  auto state =
      twin::ReadTwinState(twin::TwinStatePath(cluster_->dir(), "dw100-upd"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_GT(state->update_metadata_version(), 0u);

  std::tie(rc, out) = Twin("dw100-upd", "attest", chain);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "outcome UP_TO_DATE")) << out;
  EXPECT_EQ(Scope(chain), "full");

  // A second check finds nothing to install.
  std::tie(rc, out) = Twin("dw100-upd", "update");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "up to date: nothing to install")) << out;

  // The operator sees what the device runs now.
  json shown = SpherectlJson(cluster_->cluster_file(), "Contoso",
                             {"device", "show", "--device", id});
  EXPECT_EQ(shown["last_attestation_outcome"], "UP_TO_DATE") << shown.dump();
  EXPECT_EQ(shown.value("os_version", ""), "2") << shown.dump();
  // The shard recorded the twin's ReportUpdateResult.
  EXPECT_TRUE(
      absl::StartsWith(shown.value("last_update_result", ""), "INSTALLED"))
      << shown.dump();
}

TEST_F(UpdateE2ETest, TwinRunServesControlAndCheckForUpdatesInstalls) {
  const std::string id = NewTwin("dw100-run");
  ASSERT_FALSE(id.empty());
  ReleaseOs2();
  TwinRun run;
  ASSERT_TRUE(run.Start(TwinArgv(cluster_, "dw100-run",
                                 {"--update_check_interval=24h"}, "run-basic"))
                  .ok())
      << run.output();
  auto control = TwinRun::Control(twin::TwinDir(cluster_->dir(), "dw100-run"));
  ASSERT_TRUE(control.ok()) << control.status();
  auto stub = *std::move(control);

  auto kernel = [](const v1::TwinStatus& s) {
    for (const auto& c : s.components()) {
      if (c.component() == "kernel") return c.version();
    }
    return 0u;
  };
  v1::TwinStatus st;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    grpc::Status s = stub->GetStatus(&ctx, {}, &st);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  EXPECT_EQ(st.device_id(), id);
  EXPECT_EQ(st.boot_state(), "running");
  // A check already followed the first attestation, or this one installs.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(120)));
    grpc::Status s = stub->CheckForUpdates(&ctx, {}, &st);
    ASSERT_TRUE(s.ok()) << s.error_message() << "\n" << run.output();
  }
  EXPECT_EQ(kernel(st), 2u) << st.DebugString();
  EXPECT_EQ(st.attestation_outcome(), "UP_TO_DATE") << st.DebugString();
  EXPECT_EQ(st.tenant_id().empty(), false);
  EXPECT_EQ(run.Stop(), 0) << run.output();
  // State persisted on shutdown: the twin restarts on OS 2.
  auto [rc, out] = Twin("dw100-run", "attest");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "outcome UP_TO_DATE")) << out;
}

}  // namespace
}  // namespace sphere::testing
