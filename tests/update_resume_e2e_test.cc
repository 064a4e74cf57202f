// Issue 11: a twin killed with SIGKILL in the middle of a download resumes
// it from its last save point after a restart, against a real local cluster
// (management + 2 shards with the update plug-in) and real `twin` processes.
//
// The first `twin update` downloads OS 2 in 256 KiB ranges, paced to
// 512 KiB/s (--update_download_bytes_per_s: a device on a slow link, so the
// download lasts seconds); after each range it writes twin.state and logs
// "twin: download progress saved". The test waits for that line (on the
// child's output, with a deadline), reads the saved offset back from
// twin.state and kills the process with SIGKILL. The restarted `twin update`
// logs that it resumes at that offset, installs verified images and
// attests UP_TO_DATE; the shards' served-bytes counter shows the second run
// fetched less than the whole release (it did not restart from 0).
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "protos/device.pb.h"
#include "protos/update.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_helpers.h"
#include "tests/spherectl_runner.h"
#include "tests/twin_helpers.h"
#include "tests/twin_run.h"
#include "twin/state_file.h"

namespace sphere::testing {
namespace {

class UpdateResumeE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start("updresume", 2);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static std::pair<int, std::string> Ctl(std::vector<std::string> args) {
    return Spherectl(cluster_->cluster_file(), args);
  }
  // ServedBytes: sphere_update_download_bytes_total summed over the shards.
  static uint64_t ServedBytes() {
    uint64_t total = 0;
    for (const auto& s : cluster_->config().shards) {
      auto text = cluster_->Metrics(s.address);
      EXPECT_TRUE(text.ok()) << text.status();
      if (!text.ok()) continue;
      for (absl::string_view line : absl::StrSplit(*text, '\n')) {
        if (absl::ConsumePrefix(&line, "sphere_update_download_bytes_total ")) {
          double v = 0;
          EXPECT_TRUE(absl::SimpleAtod(line, &v)) << line;
          total += static_cast<uint64_t>(v);
        }
      }
    }
    return total;
  }
  // SavedOffset: the bytes of the partial download in NAME's twin.state.
  static uint64_t SavedOffset(const std::string& name) {
    auto state =
        twin::ReadTwinState(twin::TwinStatePath(cluster_->dir(), name));
    EXPECT_TRUE(state.ok()) << state.status();
    if (!state.ok() || state->update_download().empty()) return 0;
    v1::UpdateDownloadProgress p;
    EXPECT_TRUE(p.ParseFromString(state->update_download()));
    return p.bytes().size();
  }
  static LocalCluster* cluster_;
};

LocalCluster* UpdateResumeE2ETest::cluster_ = nullptr;

TEST_F(UpdateResumeE2ETest,
       Fault_TwinKilledMidDownloadResumesFromItsSavePoint) {
  absl::Status s = SetUpTenant(cluster_->cluster_file(), "Contoso", {"DW100"});
  ASSERT_TRUE(s.ok()) << s;
  auto [rc, out] =
      RunCommand({BinaryPath("securitysvc/os_builder"), "--state-dir",
                  cluster_->dir(), "--version", "2"});
  ASSERT_EQ(rc, 0) << out;
  auto id = ClaimNewTwin(cluster_->cluster_file(), "Contoso", "dw100-kill",
                         "DW100/Production OS Evaluation");
  ASSERT_TRUE(id.ok()) << id.status();
  const std::string images = cluster_->dir() + "/images/os-2";
  std::tie(rc, out) = Ctl({"os", "release", "--feed", "RetailEval", "--version",
                           "2", "--images-dir", images});
  ASSERT_EQ(rc, 0) << out;
  // What a whole download of the release costs the shards.
  uint64_t release_bytes = 0;
  for (const auto& f : std::filesystem::directory_iterator(images)) {
    auto bytes = util::ReadFile(f.path().string());
    ASSERT_TRUE(bytes.ok());
    v1::ImagePackage pkg;
    ASSERT_TRUE(pkg.ParseFromString(*bytes)) << f.path();
    release_bytes += pkg.ByteSizeLong();
  }
  ASSERT_GT(release_bytes, 1u << 20);

  std::tie(rc, out) =
      RunCommand(TwinArgv(cluster_, "dw100-kill", {}, "attest"));
  ASSERT_EQ(rc, 0) << out;
  ASSERT_TRUE(absl::StrContains(out, "outcome UPDATE_REQUIRED")) << out;
  ASSERT_EQ(SavedOffset("dw100-kill"), 0u);

  // 1. Download on a slow link; kill -9 once a save point is on disk.
  const uint64_t served_at_start = ServedBytes();
  TwinRun first;
  ASSERT_TRUE(first
                  .Spawn(TwinArgv(cluster_, "dw100-kill",
                                  {"--update_progress_bytes=262144",
                                   "--update_download_bytes_per_s=524288",
                                   "--update_budget=600s"},
                                  "update"))
                  .ok());
  ASSERT_TRUE(
      first.AwaitOutput("twin: download progress saved", absl::Minutes(3)))
      << first.output();
  EXPECT_EQ(first.Kill(), SIGKILL) << first.output();
  EXPECT_FALSE(absl::StrContains(first.output(), "INSTALLED"))
      << "the download finished before the kill: " << first.output();
  const uint64_t saved = SavedOffset("dw100-kill");
  ASSERT_GE(saved, 262144u) << first.output();
  EXPECT_EQ(saved % 262144, 0u);  // a range boundary: a save point
  const uint64_t served_first = ServedBytes() - served_at_start;
  EXPECT_GE(served_first, saved);

  // 2. Restart: resumes at the saved offset, installs verified images.
  std::tie(rc, out) =
      RunCommand(TwinArgv(cluster_, "dw100-kill", {}, "update"));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "download resumes from saved progress"))
      << out;
  EXPECT_TRUE(
      absl::StrContains(out, absl::StrCat("\"offset\":\"", saved, "\"")))
      << out;
  EXPECT_TRUE(absl::StrContains(out, "INSTALLED")) << out;
  EXPECT_FALSE(absl::StrContains(out, "FAILED")) << out;
  EXPECT_TRUE(absl::StrContains(out, "outcome UP_TO_DATE")) << out;
  EXPECT_EQ(SavedOffset("dw100-kill"), 0u);  // nothing partial is left
  // The shards served the rest, not the release again from byte 0.
  const uint64_t served_second = ServedBytes() - served_at_start - served_first;
  EXPECT_GT(served_second, 0u);
  EXPECT_LE(served_second, release_bytes - saved);

  std::tie(rc, out) =
      RunCommand(TwinArgv(cluster_, "dw100-kill", {}, "attest"));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "outcome UP_TO_DATE")) << out;
}

}  // namespace
}  // namespace sphere::testing
