// Issue 15, the client half of shard failover, on real processes:
// local_cluster --catalog etcd with three shards, and one `twin run-basic`
// process (its own device certificate, its own AsyncAttestationClient built
// from cluster.json). The shard that owns the twin is killed with SIGKILL
// and not restarted; its lease expires (the test waits for the shard_map
// event on a Watch: an event with a deadline, no sleeps) and the live ring
// has two shards. The SAME twin process, with cluster.json unchanged (it
// still lists the dead shard), is asked to re-attest through TwinControl:
// its client finds the owner unreachable, backs off, fails over to the next
// shard on the ring, follows that shard's live-ring answer, and the twin
// gets a new certificate. Nothing acknowledged is lost: the tenant and the
// claim (catalog, in etcd) are intact, the twin saved the new certificate,
// and the twin process never restarted.
// Skipped with a message when /usr/bin/etcd is absent.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "protos/twin_control.grpc.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"
#include "tests/twin_helpers.h"
#include "tests/twin_run.h"
#include "tests/watch_client.h"
#include "twin/state_file.h"

namespace sphere::testing {
namespace {

absl::StatusOr<v1::TwinStatus> AttestThroughControl(
    v1::TwinControl::Stub* control, absl::Duration deadline) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(deadline));
  v1::TwinStatus status;
  grpc::Status st = control->Attest(&ctx, {}, &status);
  if (!st.ok()) return rpc::FromGrpcStatus(st);
  return status;
}

TEST(ClientFailoverE2eTest,
     Fault_KilledOwnerShardTwinReattestsThroughAnotherShard) {
  if (access("/usr/bin/etcd", X_OK) != 0) {
    GTEST_SKIP() << "/usr/bin/etcd is absent (install etcd-server with "
                    "./sphere deps); client failover on etcd not tested";
  }
  auto cluster = LocalCluster::Start(
      "failover_e2e", 3,
      {"--catalog=etcd", "--etcd_members=1", "--shard_heartbeat_interval=1s",
       "--restart_backoff=10m", "--max_restart_backoff=10m"});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster* c = cluster->get();
  ASSERT_EQ(c->config().shards.size(), 3u);
  WatchClient watch(c->management(), 0);
  ASSERT_TRUE(watch
                  .WaitFor(
                      [](const v1::WatchEvent& e) {
                        return e.has_shard_map() &&
                               e.shard_map().shards_size() == 3;
                      },
                      absl::Seconds(60))
                  .has_value());
  const std::string file = c->cluster_file();
  auto cluster_json = util::ReadFile(file);
  ASSERT_TRUE(cluster_json.ok()) << cluster_json.status();

  // A twin, manufactured by the factory and claimed by a tenant.
  auto created = Spherectl(file, {"tenant", "create", "--name", "Failover"});
  ASSERT_EQ(created.first, 0) << created.second;
  auto [rc, out] = RunCommand({BinaryPath("securitysvc/factory/factory"),
                               "--cluster", file, "--name", "fo-twin"});
  ASSERT_EQ(rc, 0) << out;
  std::vector<std::string> words = absl::StrSplit(out, ' ');
  ASSERT_GE(words.size(), 4u) << out;
  const std::string id(absl::StripAsciiWhitespace(words[3]));
  auto claimed = Spherectl(
      file, {"--tenant", "Failover", "device", "claim", "--device", id});
  ASSERT_EQ(claimed.first, 0) << claimed.second;

  TwinRun twin;
  ASSERT_TRUE(
      twin.Start({BinaryPath("twin/twin"), "--cluster", file, "--name",
                  "fo-twin", "--min_catalog_revision",
                  absl::StrCat(CatalogRevision(c)), "--retry_budget=90s",
                  "--update_check_interval=24h", "run-basic"})
          .ok())
      << twin.output();
  const pid_t twin_pid = twin.pid();
  const std::string twin_dir = twin::TwinDir(c->dir(), "fo-twin");
  auto control = TwinRun::Control(twin_dir);
  ASSERT_TRUE(control.ok()) << control.status();

  auto first = AttestThroughControl(control->get(), absl::Seconds(120));
  ASSERT_TRUE(first.ok()) << first.status() << "\n" << twin.output();
  ASSERT_EQ(first->device_id(), id);
  ASSERT_FALSE(first->certificate_subject().empty());
  ASSERT_FALSE(first->tenant_id().empty());
  auto state = twin::ReadTwinState(twin::TwinStatePath(c->dir(), "fo-twin"));
  ASSERT_TRUE(state.ok()) << state.status();
  const std::string first_chain = state->certificate_chain_pem();
  ASSERT_FALSE(first_chain.empty());

  // Kill the shard that owns it (cluster.json's ring and the live ring agree
  // while all three run).
  const int owner = OwnerShard(c, id);
  ASSERT_GE(owner, 0);
  auto pid = c->ChildPid(absl::StrCat("shard-", owner));
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(kill(*pid, SIGKILL), 0);
  const std::string dead_id = c->config().shards[owner].id;
  auto without = watch.WaitFor(
      [&](const v1::WatchEvent& e) {
        if (!e.has_shard_map() || e.shard_map().shards_size() != 2) {
          return false;
        }
        for (const auto& s : e.shard_map().shards()) {
          if (s.id() == dead_id) return false;
        }
        return true;
      },
      absl::Seconds(60));
  ASSERT_TRUE(without.has_value()) << dead_id << " never left the shard map";

  // The same twin process re-attests: through another shard, by the live
  // ring, with a new certificate.
  auto second = AttestThroughControl(control->get(), absl::Seconds(120));
  ASSERT_TRUE(second.ok()) << second.status() << "\n" << twin.output();
  EXPECT_EQ(second->device_id(), id);
  EXPECT_FALSE(second->certificate_subject().empty());
  EXPECT_EQ(second->tenant_id(), first->tenant_id());
  EXPECT_GE(second->certificate_not_after_unix_ms(),
            first->certificate_not_after_unix_ms());
  state = twin::ReadTwinState(twin::TwinStatePath(c->dir(), "fo-twin"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->certificate_chain_pem().empty());
  EXPECT_NE(state->certificate_chain_pem(), first_chain)
      << "no new certificate was saved";
  const int new_owner = OwnerShard(c, id);
  EXPECT_GE(new_owner, 0);
  EXPECT_NE(new_owner, owner);

  // Nothing acknowledged is lost, nothing was restarted or rewritten.
  EXPECT_TRUE(twin.Alive());
  EXPECT_EQ(twin.pid(), twin_pid);
  auto cluster_json_after = util::ReadFile(file);
  ASSERT_TRUE(cluster_json_after.ok());
  EXPECT_EQ(*cluster_json_after, *cluster_json) << "cluster.json changed";
  auto device = c->GetDevice(first->tenant_id(), id);
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->tenant_id(), first->tenant_id());
  auto tenants = SpherectlJson(file, "", {"tenant", "list"});
  EXPECT_NE(tenants.dump().find("Failover"), std::string::npos)
      << tenants.dump();

  EXPECT_EQ(twin.Stop(), 0) << twin.output();
  ASSERT_TRUE(c->Stop().ok());
}

}  // namespace
}  // namespace sphere::testing
