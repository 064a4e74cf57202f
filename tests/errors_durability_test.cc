// Error reports survive kill -9 of the whole shard process: devices attest
// through the gateway, then upload error batches with their session tokens
// over gRPC while the shard is SIGKILLed after a random number of
// acknowledgements; offline, every acknowledged event is in the shard's
// encrypted database, stored once in each index. (errors_crash_test runs the
// same check on the error core for 20 cycles.) The second case does the
// same through the gateway batch call (UploadErrorsBatch).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/cluster/pki_layout.h"
#include "common/rpc/rpc.h"
#include "common/store/keyring.h"
#include "common/store/store.h"
#include "mcu-model/device.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/error_reporting.grpc.pb.h"
#include "securitysvc/auth/device_authenticator.h"
#include "securitysvc/errors/error_store.h"
#include "tests/cluster_fixture.h"
#include "tests/kill_under_load.h"
#include "tests/twin_helpers.h"

namespace sphere::testing {
namespace {

// AttestedFleet: a one-shard cluster with `n` devices attested through the
// gateway (each with its session token).
struct AttestedFleet {
  std::unique_ptr<LocalCluster> cluster;
  std::vector<std::unique_ptr<mcu::Device>> devices;
  std::vector<std::string> tokens;
};

void StartAttested(const std::string& name, int n, AttestedFleet* fleet) {
  auto started = LocalCluster::Start(name, 1);
  ASSERT_TRUE(started.ok()) << started.status();
  fleet->cluster = std::move(*started);
  LocalCluster* cluster = fleet->cluster.get();
  auto tenant = cluster->CreateTenant("Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  ASSERT_TRUE(cluster->CreateProduct(tenant->id(), "DW100").ok());
  auto attest = cluster->ShardStub(0, cluster->GatewayTls());
  for (int i = 0; i < n; ++i) {
    auto dev = ManufactureGenuine(*cluster, absl::StrCat(name, "-", i));
    ASSERT_NE(dev, nullptr);
    RegisterAndClaim(cluster, tenant->id(), *dev);
    // Read after the claim: the shard answers only once its catalog
    // follower has applied this revision, so it knows the device is claimed.
    const int64_t revision = CatalogRevision(cluster);
    // The revision gate parks a challenge for at most 5 s: on a loaded
    // machine wait for the shard's follower first.
    ASSERT_TRUE(WaitForShardRevision(*cluster, 0, revision).ok());
    v1::GetChallengeResponse challenge;
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
      v1::GetChallengeRequest req;
      req.set_device_id(dev->device_id());
      req.set_min_catalog_revision(revision);
      grpc::Status st = attest->GetChallenge(&ctx, req, &challenge);
      ASSERT_TRUE(st.ok()) << st.error_message();
    }
    auto quote = dev->Quote(challenge.nonce());
    ASSERT_TRUE(quote.ok()) << quote.status();
    v1::AttestRequest req;
    req.set_device_id(dev->device_id());
    *req.mutable_quote() = *quote;
    v1::AttestResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    grpc::Status st = attest->Attest(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    fleet->tokens.push_back(resp.session_token());
    fleet->devices.push_back(std::move(dev));
  }
}

// Events: `n` app crashes of `device` with sequences seq..seq+n-1.
v1::UploadErrorsRequest Events(const std::string& device, uint64_t seq, int n) {
  v1::UploadErrorsRequest req;
  req.set_device_id(device);
  for (int i = 0; i < n; ++i) {
    v1::ErrorEvent* e = req.add_events();
    e->set_sequence(seq + i);
    e->set_kind(v1::ErrorEvent::APP_CRASH);
    e->set_component("dw100-app");
    e->set_exit_code(i % 5);
    e->set_time_unix_ms(1767225600000 + seq + i);
  }
  return req;
}

// CheckStoredOnce opens the killed shard's encrypted database offline: every
// acknowledged event (device -> acknowledged 1..last) is there, no event is
// stored twice, and the indexes agree.
void CheckStoredOnce(const LocalCluster& cluster,
                     const std::map<std::string, uint64_t>& acked_up_to,
                     int acks) {
  const std::string sdir = absl::StrCat(cluster.dir(), "/shards/shard-0");
  auto key = store::LoadOrCreateDataKey(
      sphere::cluster::PkiPath(cluster.dir(), "master.key"),
      sdir + "/data.key.wrapped");
  ASSERT_TRUE(key.ok()) << key.status();
  store::RocksOptions o;
  o.data_key = *key;
  auto db = store::OpenRocksStore(sdir + "/db", errors::ColumnFamilies(), o);
  ASSERT_TRUE(db.ok()) << db.status();
  std::map<std::pair<std::string, uint64_t>, int> stored;
  ASSERT_TRUE(errors::ForEachStoredEvent(**db, [&](absl::string_view device,
                                                   absl::string_view,
                                                   const v1::ErrorEvent& e) {
                ++stored[{std::string(device), e.sequence()}];
              }).ok());
  int64_t checked = 0;
  for (const auto& [device, last] : acked_up_to) {
    for (uint64_t s = 1; s <= last; ++s) {
      ASSERT_TRUE(stored.count({device, s}) == 1)
          << "acknowledged event " << device << "/" << s << " lost";
      ++checked;
    }
  }
  for (const auto& [event, count] : stored) {
    ASSERT_EQ(count, 1) << "event " << event.first << "/" << event.second
                        << " stored " << count << " times";
  }
  size_t counts[3] = {0, 0, 0};
  const char* cfs[3] = {errors::kByDevice, errors::kByTenant, errors::kByIssue};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*db)
                    ->Scan(cfs[i], "",
                           [&](absl::string_view, absl::string_view) {
                             ++counts[i];
                             return true;
                           })
                    .ok());
  }
  EXPECT_EQ(counts[0], counts[1]);  // one device index entry per batch
  EXPECT_GE(counts[2], counts[1]);  // at least one issue entry per batch
  EXPECT_GE(static_cast<int64_t>(stored.size()), checked);
  EXPECT_GT(checked, 0);
  std::cout << "shard kill -9 after " << acks
            << " acknowledgements: all " << checked
            << " acknowledged events in the shard database" << std::endl;
}

TEST(ErrorsDurabilityTest, Fault_ShardKeepsEveryAcknowledgedErrorAcrossKill9) {
  AttestedFleet fleet;
  constexpr int kDevices = 4;
  constexpr int kBatch = 25;
  ASSERT_NO_FATAL_FAILURE(StartAttested("errors-crash", kDevices, &fleet));
  LocalCluster* cluster = fleet.cluster.get();
  auto pid = cluster->ChildPid("shard-0");
  ASSERT_TRUE(pid.ok()) << pid.status();

  KillUnderLoad load(kDevices, RandomKillPoint(20, 79));
  // device -> last acked seq, guarded by load's lock
  std::map<std::string, uint64_t> acked_up_to;
  load.Run(
      [&](int d) {
        auto stub = v1::ErrorReportingService::NewStub(
            rpc::NewChannel(cluster->ShardAddress(0), cluster->GatewayTls()));
        const std::string& id = fleet.devices[d]->device_id();
        for (uint64_t seq = 1; !load.killed(); seq += kBatch) {
          v1::UploadErrorsRequest req = Events(id, seq, kBatch);
          grpc::ClientContext ctx;
          ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
          ctx.AddMetadata(auth::kSessionTokenMetadata, fleet.tokens[d]);
          v1::UploadErrorsResponse resp;
          grpc::Status st = stub->UploadErrors(&ctx, req, &resp);
          if (!st.ok()) {
            if (!load.killed()) {
              ADD_FAILURE() << "upload: " << st.error_message();
            }
            break;
          }
          EXPECT_EQ(resp.stored(), static_cast<uint32_t>(kBatch));
          load.Ack([&] { acked_up_to[id] = seq + kBatch - 1; });
        }
      },
      [&] { ASSERT_EQ(kill(*pid, SIGKILL), 0); });
  ASSERT_FALSE(HasFailure());
  cluster->Stop().IgnoreError();
  CheckStoredOnce(*cluster, acked_up_to, load.acks());
}

// The gateway batch (UploadErrorsBatch): two gateway connections each send
// calls carrying several devices' batches; an item's OK is its
// acknowledgement. After kill -9, every acknowledged item's events are
// stored, once.
TEST(ErrorsDurabilityTest,
     Fault_ShardKeepsEveryAcknowledgedBatchItemAcrossKill9) {
  AttestedFleet fleet;
  constexpr int kGateways = 2;
  constexpr int kDevicesPerGateway = 3;
  constexpr int kBatch = 20;
  ASSERT_NO_FATAL_FAILURE(StartAttested("errors-batch-crash",
                                        kGateways * kDevicesPerGateway,
                                        &fleet));
  LocalCluster* cluster = fleet.cluster.get();
  auto pid = cluster->ChildPid("shard-0");
  ASSERT_TRUE(pid.ok()) << pid.status();

  KillUnderLoad load(kGateways, RandomKillPoint(10, 40));
  std::map<std::string, uint64_t> acked_up_to;  // under load's lock
  load.Run(
      [&](int g) {
        auto stub = v1::ErrorReportingService::NewStub(
            rpc::NewChannel(cluster->ShardAddress(0), cluster->GatewayTls()));
        for (uint64_t seq = 1; !load.killed(); seq += kBatch) {
          v1::UploadErrorsBatchRequest req;
          for (int k = 0; k < kDevicesPerGateway; ++k) {
            const int d = g * kDevicesPerGateway + k;
            v1::UploadErrorsItem* item = req.add_items();
            *item->mutable_upload() =
                Events(fleet.devices[d]->device_id(), seq, kBatch);
            item->set_session_token(fleet.tokens[d]);
          }
          grpc::ClientContext ctx;
          ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
          v1::UploadErrorsBatchResponse resp;
          grpc::Status st = stub->UploadErrorsBatch(&ctx, req, &resp);
          if (!st.ok()) {
            if (!load.killed()) {
              ADD_FAILURE() << "batch upload: " << st.error_message();
            }
            break;
          }
          if (resp.results_size() != kDevicesPerGateway) {
            ADD_FAILURE() << resp.results_size() << " results";
            break;
          }
          bool all_ok = true;
          for (int k = 0; k < kDevicesPerGateway; ++k) {
            const v1::UploadErrorsResult& r = resp.results(k);
            if (r.code() != 0) {
              // Before the kill every item is stored.
              if (!load.killed()) ADD_FAILURE() << "item: " << r.message();
              all_ok = false;
              continue;
            }
            EXPECT_EQ(r.response().stored(), static_cast<uint32_t>(kBatch));
            const std::string id = r.device_id();
            load.Ack([&] { acked_up_to[id] = seq + kBatch - 1; });
          }
          if (!all_ok) break;
        }
      },
      [&] { ASSERT_EQ(kill(*pid, SIGKILL), 0); });
  ASSERT_FALSE(HasFailure());
  cluster->Stop().IgnoreError();
  CheckStoredOnce(*cluster, acked_up_to, load.acks());
}

}  // namespace
}  // namespace sphere::testing
