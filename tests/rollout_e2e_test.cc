// Staged rollout through real processes (local_cluster with
// --staged_rollout: management + a shard): a tenant's new deployment starts
// at the first stage, and `spherectl deployment status|pause|resume|abort`
// show and change it, tenant-scoped, with specific errors that change
// nothing. The soak is a day, so no stage advances during the test (nothing
// here depends on timing).
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/image.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"

namespace sphere::testing {
namespace {

using json = nlohmann::json;

TEST(RolloutE2ETest, StatusPauseResumeAbortThroughSpherectl) {
  auto c = LocalCluster::Start("rollout", 1,
                               {"--staged_rollout", "--rollout_soak=24h"});
  ASSERT_TRUE(c.ok()) << c.status();
  LocalCluster& cluster = **c;
  const std::string file = cluster.cluster_file();
  auto ctl = [&](std::vector<std::string> args) {
    auto [rc, out] = Spherectl(file, args);
    EXPECT_EQ(rc, 0) << out;
    return out;
  };
  ctl({"tenant", "create", "--name", "Contoso"});
  ctl({"tenant", "credential", "--name", "Contoso"});
  ctl({"tenant", "create", "--name", "Fabrikam"});
  ctl({"tenant", "credential", "--name", "Fabrikam"});
  ctl({"--tenant", "Contoso", "product", "create", "--name", "DW100"});

  v1::AppManifest manifest;
  manifest.set_component_id("dw100");
  auto app = mcu::BuildAppImage(crypto::EcPrivateKey::Generate(), manifest,
                                /*version=*/1, /*payload_size=*/4096);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string path = cluster.dir() + "/dw100-app.pkg";
  ASSERT_TRUE(util::WriteFile(path, app->SerializeAsString()).ok());
  json image =
      SpherectlJson(file, "Contoso", {"image", "upload", "--file", path});
  // The group's halt threshold is set at creation, and checked.
  ExpectSpherectlError(
      Spherectl(file, {"--tenant", "Contoso", "device-group", "create",
                       "--product", "DW100", "--name", "Canary",
                       "--rollout-failure-threshold", "1.5"}),
      "rollout failure threshold");
  json group =
      SpherectlJson(file, "Contoso",
                    {"device-group", "create", "--product", "DW100", "--name",
                     "Canary", "--rollout-failure-threshold", "0.25"});
  EXPECT_DOUBLE_EQ(group["rollout_failure_threshold"].get<double>(), 0.25)
      << group.dump();
  json dep = SpherectlJson(file, "Contoso",
                           {"deployment", "create", "--device-group",
                            "DW100/Canary", "--image", image["id"]});
  const std::string id = dep["id"];
  // Created staged: the catalog (what shards serve) has the first stage.
  EXPECT_DOUBLE_EQ(dep["rollout_fraction"].get<double>(), 0.01) << dep.dump();

  auto status = [&](const std::string& tenant) {
    return SpherectlJson(file, tenant,
                         {"deployment", "status", "--deployment", id});
  };
  json s = status("Contoso");
  EXPECT_EQ(s["state"], "RUNNING") << s.dump();
  EXPECT_EQ(s["stage_percents"], json({1, 10, 50, 100})) << s.dump();
  EXPECT_EQ(s.value("stage_index", 0), 0) << s.dump();
  EXPECT_DOUBLE_EQ(s["failure_threshold"].get<double>(), 0.25) << s.dump();
  // Counts were read from the shard (nobody reported yet).
  ASSERT_TRUE(s.contains("current")) << s.dump();
  EXPECT_EQ(s["current"]["rollout_stage"], 1) << s.dump();
  EXPECT_EQ(s["current"].value("failed", "0"), "0") << s.dump();

  // Table output: state, stage, the counts and no halt reason.
  std::string table =
      ctl({"--tenant", "Contoso", "deployment", "status", "--deployment", id});
  EXPECT_TRUE(absl::StrContains(table, "running")) << table;
  EXPECT_TRUE(absl::StrContains(table, "1% (1 of 4: 1%,10%,50%,100%)"))
      << table;
  EXPECT_TRUE(absl::StrContains(table, "ROLLED BACK")) << table;
  EXPECT_TRUE(absl::StrContains(table, "PENDING")) << table;
  EXPECT_TRUE(absl::StrContains(table, "CRASHED AFTER INSTALL")) << table;
  // deployment list shows each deployment's rollout state and stage.
  std::string list = ctl({"--tenant", "Contoso", "deployment", "list"});
  EXPECT_TRUE(absl::StrContains(list, "running: stage 1% (1 of 4)")) << list;

  // Another tenant: NOT_FOUND, exactly like a missing deployment, for every
  // verb; Contoso's rollout is unchanged.
  for (const std::string verb : {"status", "pause", "resume", "abort"}) {
    ExpectSpherectlError(Spherectl(file, {"--tenant", "Fabrikam", "deployment",
                                          verb, "--deployment", id}),
                         "not found");
  }
  ExpectSpherectlError(
      Spherectl(file, {"--tenant", "Contoso", "deployment", "status",
                       "--deployment", "no-such-deployment"}),
      "not found");
  EXPECT_EQ(status("Contoso")["state"], "RUNNING");

  // Pause; pausing again is a precondition error that changes nothing.
  s = SpherectlJson(file, "Contoso",
                    {"deployment", "pause", "--deployment", id});
  EXPECT_EQ(s["state"], "PAUSED") << s.dump();
  ExpectSpherectlError(Spherectl(file, {"--tenant", "Contoso", "deployment",
                                        "pause", "--deployment", id}),
                       "only a running rollout can be paused");
  EXPECT_EQ(status("Contoso")["state"], "PAUSED");

  s = SpherectlJson(file, "Contoso",
                    {"deployment", "resume", "--deployment", id});
  EXPECT_EQ(s["state"], "RUNNING") << s.dump();

  // An oversized abort reason is refused before anything happens.
  ExpectSpherectlError(
      Spherectl(file, {"--tenant", "Contoso", "deployment", "abort",
                       "--deployment", id, "--reason", std::string(300, 'x')}),
      "abort reason");
  EXPECT_EQ(status("Contoso")["state"], "RUNNING");

  s = SpherectlJson(
      file, "Contoso",
      {"deployment", "abort", "--deployment", id, "--reason", "bad build"});
  EXPECT_EQ(s["state"], "ABORTED") << s.dump();
  EXPECT_EQ(s["halt_reason"], "aborted by operator: bad build") << s.dump();
  // The catalog (and so every shard) has it halted.
  json deps = SpherectlJson(file, "Contoso", {"deployment", "list"});
  ASSERT_EQ(deps.size(), 1u) << deps.dump();
  EXPECT_EQ(deps[0]["halted"], true) << deps.dump();
  EXPECT_EQ(deps[0]["halt_reason"], "aborted by operator: bad build");
  list = ctl({"--tenant", "Contoso", "deployment", "list"});
  EXPECT_TRUE(absl::StrContains(
      list, "aborted at stage 1% (1 of 4): aborted by operator: bad build"))
      << list;

  // An aborted rollout cannot be resumed; it stays aborted.
  ExpectSpherectlError(Spherectl(file, {"--tenant", "Contoso", "deployment",
                                        "resume", "--deployment", id}),
                       "only a paused or halted rollout can be resumed");
  EXPECT_EQ(status("Contoso")["state"], "ABORTED");
  ASSERT_TRUE(cluster.Stop().ok());
}

}  // namespace
}  // namespace sphere::testing
