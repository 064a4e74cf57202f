// local_cluster --catalog etcd end to end: a real three-member etcd, two
// management replicas and two shards; spherectl (a fresh process per call,
// reading cluster.json) keeps working when either management replica is
// killed with SIGKILL, both replicas serve the same catalog, and the shards
// keep following it (a device claimed after the kills is attested). Skipped
// with a message when /usr/bin/etcd is absent.
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "gtest/gtest.h"
#include "protos/management.grpc.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"
#include "tests/twin_helpers.h"
#include "tests/watch_client.h"

namespace sphere::testing {
namespace {

TEST(EtcdClusterE2eTest,
     Fault_KillEitherManagementReplicaSpherectlAndShardsCarryOn) {
  if (access("/usr/bin/etcd", X_OK) != 0) {
    GTEST_SKIP() << "/usr/bin/etcd is absent (install etcd-server with "
                    "./sphere deps); local_cluster --catalog etcd not tested";
  }
  auto cluster = LocalCluster::Start(
      "etcd_e2e", 2,
      {"--catalog=etcd", "--etcd_members=3", "--management_replicas=2"});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const auto& config = (*cluster)->config();
  EXPECT_TRUE(absl::StartsWith(config.management, "ipv4:"))
      << config.management;
  ASSERT_EQ(config.management_replicas.size(), 2u);
  ASSERT_EQ(config.etcd.size(), 3u);
  ASSERT_EQ(config.shards.size(), 2u);
  const std::string file = (*cluster)->cluster_file();

  auto created = Spherectl(file, {"tenant", "create", "--name", "Contoso"});
  ASSERT_EQ(created.first, 0) << created.second;

  // Kill the first replica: the next call goes to the second.
  auto first = (*cluster)->ChildPid("management");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(kill(*first, SIGKILL), 0);
  auto second_create =
      Spherectl(file, {"tenant", "create", "--name", "Fabrikam"});
  ASSERT_EQ(second_create.first, 0) << second_create.second;

  // The supervisor restarts the first replica on its port; wait until it
  // answers (a wait_for_ready call: an event, not a sleep), then kill the
  // second: the restarted first serves, nothing lost.
  {
    auto stub = v1::ManagementService::NewStub(rpc::NewChannel(
        config.management_replicas[0], (*cluster)->OperatorTls()));
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    v1::ListTenantsRequest req;
    v1::ListTenantsResponse resp;
    grpc::Status back = stub->ListTenants(&ctx, req, &resp);
    ASSERT_TRUE(back.ok()) << back.error_message();
    // The restarted replica reads the catalog the other one wrote.
    EXPECT_EQ(resp.tenants_size(), 2);
  }
  auto second = (*cluster)->ChildPid("management-1");
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(kill(*second, SIGKILL), 0);
  auto tenants = SpherectlJson(file, "", {"tenant", "list"});
  std::string names = tenants.dump();
  EXPECT_NE(names.find("Contoso"), std::string::npos) << names;
  EXPECT_NE(names.find("Fabrikam"), std::string::npos) << names;

  // A duplicate is refused whichever replica answers: one catalog.
  auto dup = Spherectl(file, {"tenant", "create", "--name", "contoso"});
  EXPECT_NE(dup.first, 0) << dup.second;

  // The shards carry on too: a device claimed now (through the surviving
  // replica) is served at the catalog revision of that claim, so the
  // shards' catalog watch moved off the killed replica.
  LocalCluster* c = cluster->get();
  auto tenant = c->CreateTenant("AfterKill");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  auto dev = ManufactureGenuine(*c, "after-kill");
  ASSERT_NE(dev, nullptr);
  RegisterAndClaim(c, tenant->id(), *dev);
  const int owner = OwnerShard(c, dev->device_id());
  ASSERT_GE(owner, 0) << "no shard served the catalog after the kill";
  v1::GetChallengeResponse ch;
  ASSERT_TRUE(GetChallenge(c, owner, dev->device_id(), &ch).ok());
  v1::AttestResponse issued;
  grpc::Status st = AttestWithNonce(*c, owner, *dev, ch.nonce(), &issued);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(issued.tenant_id(), tenant->id());
  ASSERT_TRUE((*cluster)->Stop().ok());
}

// A shard killed with SIGKILL (and not restarted: the supervisor's backoff is
// set long) stops renewing its lease; the leading management replica takes
// it out of the shard map, which every follower sees as a shard_map event.
// End to end: a device the dead shard owned (shard-0 redirected it there)
// then re-attests and is served by its new owner, shard-0, which now
// issues its certificate instead of redirecting: the redirect follows the
// new ring and the device's records are rebuilt from the catalog and this
// attestation (docs/etcd.md: records do not move).
TEST(EtcdClusterE2eTest, Fault_KilledShardsLeaseExpiresAndItLeavesTheRing) {
  if (access("/usr/bin/etcd", X_OK) != 0) {
    GTEST_SKIP() << "/usr/bin/etcd is absent (install etcd-server with "
                    "./sphere deps); local_cluster --catalog etcd not tested";
  }
  auto cluster = LocalCluster::Start(
      "etcd_e2e_lease", 2,
      {"--catalog=etcd", "--etcd_members=1", "--management_replicas=2",
       "--shard_heartbeat_interval=1s", "--restart_backoff=10m",
       "--max_restart_backoff=10m"});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster* c = cluster->get();
  WatchClient watch(c->management(), 0);
  auto has_both = watch.WaitFor(
      [](const v1::WatchEvent& e) {
        return e.has_shard_map() && e.shard_map().shards_size() == 2;
      },
      absl::Seconds(60));
  ASSERT_TRUE(has_both.has_value());

  // A claimed device shard-1 owns: shard-0 redirects it there, shard-1
  // issues its certificate.
  auto tenant = c->CreateTenant("RingCo");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  std::vector<std::unique_ptr<mcu::Device>> devices;
  mcu::Device* dev = nullptr;
  for (int i = 0; i < 16 && dev == nullptr; ++i) {
    devices.push_back(ManufactureGenuine(*c, absl::StrCat("ring-", i)));
    ASSERT_NE(devices.back(), nullptr);
    RegisterAndClaim(c, tenant->id(), *devices.back());
    if (OwnerShard(c, devices.back()->device_id()) == 1) {
      dev = devices.back().get();
    }
  }
  ASSERT_NE(dev, nullptr) << "shard-1 owns none of 16 devices";
  {
    auto stub = c->ShardStub(0, c->GatewayTls());
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::GetChallengeRequest req;
    req.set_device_id(dev->device_id());
    req.set_min_catalog_revision(CatalogRevision(c));
    v1::GetChallengeResponse resp;
    grpc::Status st = stub->GetChallenge(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
        << st.error_message();
    auto trailers = ctx.GetServerTrailingMetadata();
    auto it = trailers.find("sphere-redirect-shard");
    ASSERT_NE(it, trailers.end()) << "shard-0 did not redirect";
    EXPECT_EQ(std::string(it->second.data(), it->second.size()), "shard-1");
  }
  {
    v1::GetChallengeResponse ch;
    ASSERT_TRUE(GetChallenge(c, 1, dev->device_id(), &ch).ok());
    v1::AttestResponse resp;
    grpc::Status st = AttestWithNonce(*c, 1, *dev, ch.nonce(), &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(resp.certificate_chain_pem().empty());
  }

  auto pid = c->ChildPid("shard-1");
  ASSERT_TRUE(pid.ok()) << pid.status();
  // Events after this revision come after the kill.
  const int64_t before_kill = CatalogRevision(c);
  ASSERT_EQ(kill(*pid, SIGKILL), 0);
  // The map after the kill that holds shard-0 and not shard-1. Not just
  // "one shard": a loaded machine can let shard-0's own lease lapse for a
  // moment, and the map then lists shard-1 alone (seen with 250 ms
  // heartbeats, a 1 s lease, under --runs_per_test=3 at load ~30; the
  // heartbeat is now 1 s, a 6 s lease: management/shard_lease_ttl.h).
  auto without = watch.WaitFor(
      [&](const v1::WatchEvent& e) {
        if (!e.has_shard_map() || e.revision() <= before_kill) return false;
        bool has0 = false, has1 = false;
        for (const auto& s : e.shard_map().shards()) {
          has0 |= s.id() == "shard-0";
          has1 |= s.id() == "shard-1";
        }
        return has0 && !has1;
      },
      absl::Seconds(60));
  ASSERT_TRUE(without.has_value()) << "shard-1 never left the shard map";
  EXPECT_EQ(without->shard_map().shards_size(), 1);
  EXPECT_EQ(without->shard_map().shards(0).id(), "shard-0");

  // The device re-attests: shard-0 (at a catalog with the new ring) now
  // owns it and issues the certificate; nothing redirects to the dead shard.
  // A shard decides ownership before it waits for min_catalog_revision, so
  // wait until shard-0 has applied the new shard map first (on a loaded
  // machine its follower may still hold the old ring when this test's own
  // Watch delivered the event).
  ASSERT_TRUE(WaitForShardRevision(*c, 0, without->revision()).ok());
  {
    auto stub = c->ShardStub(0, c->GatewayTls());
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::GetChallengeRequest req;
    req.set_device_id(dev->device_id());
    req.set_min_catalog_revision(without->revision());
    v1::GetChallengeResponse ch;
    grpc::Status st = stub->GetChallenge(&ctx, req, &ch);
    ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
    v1::AttestResponse resp;
    st = AttestWithNonce(*c, 0, *dev, ch.nonce(), &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(resp.certificate_chain_pem().empty());
    EXPECT_EQ(resp.tenant_id(), tenant->id());
  }
  // The twin's own client (ring from cluster.json, which still lists the
  // dead shard) failing over: //tests:client_failover_e2e_test.
  ASSERT_TRUE(c->Stop().ok());
}

}  // namespace
}  // namespace sphere::testing
