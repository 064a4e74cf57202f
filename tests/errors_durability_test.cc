// Error reports survive kill -9 of the whole shard process: devices attest
// through the gateway, then upload error batches with their session tokens
// over gRPC while the shard is SIGKILLed after a random number of
// acknowledgements; offline, every acknowledged event is in the shard's
// encrypted database, stored once in each index. (errors_crash_test runs the
// same check on the error core for 20 cycles.)
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

TEST(ErrorsDurabilityTest, Fault_ShardKeepsEveryAcknowledgedErrorAcrossKill9) {
  auto started = LocalCluster::Start("errors-durability", 1);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<LocalCluster> cluster = std::move(*started);
  auto tenant = cluster->CreateTenant("Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  ASSERT_TRUE(cluster->CreateProduct(tenant->id(), "DW100").ok());

  constexpr int kDevices = 4;
  constexpr int kBatch = 25;
  std::vector<std::unique_ptr<mcu::Device>> devices;
  std::vector<std::string> tokens;
  auto attest = cluster->ShardStub(0, cluster->GatewayTls());
  for (int i = 0; i < kDevices; ++i) {
    auto dev = ManufactureGenuine(*cluster, absl::StrCat("errors-crash-", i));
    ASSERT_NE(dev, nullptr);
    RegisterAndClaim(cluster.get(), tenant->id(), *dev);
    // Read after the claim: the shard answers only once its catalog
    // follower has applied this revision, so it knows the device is claimed.
    const int64_t revision = CatalogRevision(cluster.get());
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
    tokens.push_back(resp.session_token());
    devices.push_back(std::move(dev));
  }
  auto pid = cluster->ChildPid("shard-0");
  ASSERT_TRUE(pid.ok()) << pid.status();

  KillUnderLoad load(kDevices, RandomKillPoint(20, 79));
  // device -> last acked seq, guarded by load's lock
  std::map<std::string, uint64_t> acked_up_to;
  load.Run(
      [&](int d) {
        auto stub = v1::ErrorReportingService::NewStub(
            rpc::NewChannel(cluster->ShardAddress(0), cluster->GatewayTls()));
        for (uint64_t seq = 1; !load.killed(); seq += kBatch) {
          v1::UploadErrorsRequest req;
          req.set_device_id(devices[d]->device_id());
          for (int i = 0; i < kBatch; ++i) {
            v1::ErrorEvent* e = req.add_events();
            e->set_sequence(seq + i);
            e->set_kind(v1::ErrorEvent::APP_CRASH);
            e->set_component("dw100-app");
            e->set_exit_code(i % 5);
            e->set_time_unix_ms(1767225600000 + seq + i);
          }
          grpc::ClientContext ctx;
          ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
          ctx.AddMetadata(auth::kSessionTokenMetadata, tokens[d]);
          v1::UploadErrorsResponse resp;
          grpc::Status st = stub->UploadErrors(&ctx, req, &resp);
          if (!st.ok()) {
            if (!load.killed()) {
              ADD_FAILURE() << "upload: " << st.error_message();
            }
            break;
          }
          EXPECT_EQ(resp.stored(), static_cast<uint32_t>(kBatch));
          load.Ack(
              [&] { acked_up_to[devices[d]->device_id()] = seq + kBatch - 1; });
        }
      },
      [&] { ASSERT_EQ(kill(*pid, SIGKILL), 0); });
  ASSERT_FALSE(HasFailure());
  cluster->Stop().IgnoreError();

  const std::string sdir = absl::StrCat(cluster->dir(), "/shards/shard-0");
  auto key = store::LoadOrCreateDataKey(
      sphere::cluster::PkiPath(cluster->dir(), "master.key"),
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
  std::cout << "shard kill -9 after " << load.acks()
            << " acknowledged batches: all " << checked
            << " acknowledged events in the shard database" << std::endl;
}

}  // namespace
}  // namespace sphere::testing
