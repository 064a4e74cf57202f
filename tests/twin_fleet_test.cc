// 10,000 Twin objects in one process attest through the twin library
// (Twin + TwinDriver + client::AsyncAttestationClient over one gateway
// channel per shard) against a real local cluster (management + 2 shards on
// port 0), then measure the bytes each idle twin costs.
//
// Memory is measured with the allocator's own count (mallinfo2: bytes in
// use, all arenas, mmapped chunks included) before the twins exist and once
// they are all certified and idle; the difference over N is what one idle
// twin costs, everything included (device model, protocol state, session
// token, the driver's timer entry, the client's owner cache). RSS is printed
// too. The numbers go to docs/benchmarks.md.
//
// Also checked: every twin ends certified with a chain it verified, the
// client computed every owner from the ring (no redirect), and the window
// bounded the RPCs in flight.
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/attestation_client.h"
#include "common/util/clock.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "tests/cluster_fixture.h"
#include "tests/twin_helpers.h"
#include "twin/driver.h"
#include "twin/twin.h"

namespace sphere::testing {
namespace {

constexpr int kTwins = 10000;

size_t HeapInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

size_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// ImportAll records every public key in one ImportDevices stream, in
// batches of 1,000.
void ImportAll(LocalCluster* cluster, const std::vector<std::string>& keys) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
  v1::ImportDevicesResponse resp;
  auto writer = cluster->management()->ImportDevices(&ctx, &resp);
  v1::ImportDevicesRequest req;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto* d = req.add_devices();
    d->set_public_key(keys[i]);
    d->set_device_type("mt3620");
    if (req.devices_size() == 1000 || i + 1 == keys.size()) {
      ASSERT_TRUE(writer->Write(req));
      req.Clear();
    }
  }
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.imported(), keys.size());
}

// ClaimAll claims every device for `tenant_id` with up to 32 ClaimDevice
// calls in flight (callback API; the test thread waits on a condition).
// The shared state is reference-counted so no callback outlives it.
class ClaimAll {
 public:
  static void Run(LocalCluster* cluster, const std::string& tenant_id,
                  const std::vector<std::string>& ids) {
    auto state = std::make_shared<ClaimAll>();
    state->stub_ = cluster->management();
    state->tenant_id_ = tenant_id;
    state->ids_ = ids;
    state->remaining_ = ids.size();
    StartMore(state);
    absl::MutexLock l(&state->mu_);
    state->mu_.Await(absl::Condition(
        +[](size_t* n) { return *n == 0; }, &state->remaining_));
    EXPECT_EQ(state->failed_, 0u) << state->first_error_;
  }

 private:
  struct Call {
    grpc::ClientContext ctx;
    v1::ClaimDeviceRequest req;
    v1::Device resp;
  };
  static void StartMore(const std::shared_ptr<ClaimAll>& s) {
    while (true) {
      auto call = std::make_shared<Call>();
      {
        absl::MutexLock l(&s->mu_);
        if (s->in_flight_ >= 32 || s->next_ >= s->ids_.size()) return;
        ++s->in_flight_;
        call->req.set_tenant_id(s->tenant_id_);
        call->req.set_device_id(s->ids_[s->next_++]);
      }
      call->ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
      s->stub_->async()->ClaimDevice(&call->ctx, &call->req, &call->resp,
                                     [s, call](grpc::Status st) {
                                       {
                                         absl::MutexLock l(&s->mu_);
                                         --s->in_flight_;
                                         if (!st.ok() && s->failed_++ == 0) {
                                           s->first_error_ = st.error_message();
                                         }
                                       }
                                       StartMore(s);
                                       absl::MutexLock l(&s->mu_);
                                       --s->remaining_;
                                     });
    }
  }

  v1::ManagementService::Stub* stub_ = nullptr;
  std::string tenant_id_;
  std::vector<std::string> ids_;
  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  size_t remaining_ ABSL_GUARDED_BY(mu_) = 0;
  size_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

TEST(TwinFleetTest, TenThousandTwinsAttestInOneProcess) {
  auto started = LocalCluster::Start("fleet", 2);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<LocalCluster> cluster = std::move(*started);
  auto tenant = cluster->CreateTenant("Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  ASSERT_TRUE(cluster->CreateProduct(tenant->id(), "DW100").ok());
  const std::string rom_key = PlatformSigningKey(*cluster);
  std::vector<v1::StoredImage> images;
  for (const auto& pkg : FactoryImages(*cluster)) {
    images.push_back(mcu::ToStoredImage(pkg));
  }
  auto root = util::ReadFile(cluster->config().root_ca);
  ASSERT_TRUE(root.ok());

  // Every 100th twin verifies its chain (leaf -> tenant CA -> root, the
  // key is its own): chain checks cost the twin side ~1 ms of CPU each,
  // more than the rest of its work, and are covered one by one in
  // twin_test and attestation_e2e_test.
  twin::TwinConfig config, verifying;
  config.root_ca_pem = *root;
  config.backoff = {absl::Milliseconds(50), 1.6, 0.2, absl::Seconds(2)};
  config.verify_chain = false;
  verifying = config;
  verifying.verify_chain = true;
  client::AsyncAttestationClient::Options options;
  options.max_in_flight = 64;
  client::AsyncAttestationClient client(cluster->config().shards,
                                        cluster->GatewayTls(), options);
  twin::TwinDriver driver(&client, Clock::Real(), {.max_active = 128});
  std::vector<std::unique_ptr<twin::Twin>> twins;
  twins.reserve(kTwins);
  // Warm up the shared pieces (device type, channels) before measuring.
  { auto warm = mcu::DeviceType::Mt3620(); }

  const size_t heap0 = HeapInUse(), rss0 = RssBytes();
  const absl::Time t0 = absl::Now();
  std::vector<std::string> keys, ids;
  keys.reserve(kTwins);
  ids.reserve(kTwins);
  for (int i = 0; i < kTwins; ++i) {
    auto dev = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(), rom_key,
                                        {.seed = absl::StrCat("fleet-", i)});
    ASSERT_TRUE(dev.ok()) << dev.status();
    ASSERT_TRUE((*dev)->InstallFactoryImages(images).ok());
    keys.push_back((*dev)->public_key());
    ids.push_back((*dev)->device_id());
    twins.push_back(std::make_unique<twin::Twin>(
        std::move(*dev), i % 100 == 0 ? &verifying : &config));
  }
  const absl::Duration manufacture_time = absl::Now() - t0;
  ImportAll(cluster.get(), keys);
  ClaimAll::Run(cluster.get(), tenant->id(), ids);
  const absl::Duration register_time = absl::Now() - t0 - manufacture_time;
  keys = {};
  ids = {};
  auto revision = cluster->ManagementRevision();
  ASSERT_TRUE(revision.ok());
  config.min_catalog_revision = *revision;
  verifying.min_catalog_revision = *revision;

  const size_t heap_manufactured = HeapInUse();
  for (auto& t : twins) driver.Add(t.get());
  const absl::Time t1 = absl::Now();
  ASSERT_TRUE(driver.RunUntil(
      [&] { return driver.certified() + driver.refused() == kTwins; },
      absl::Now() + absl::Seconds(600)))
      << driver.certified() << " certified, " << driver.refused() << " refused";
  const absl::Duration attest_time = absl::Now() - t1;
  EXPECT_EQ(driver.certified(), static_cast<size_t>(kTwins));
  EXPECT_EQ(driver.refused(), 0u);
  for (const auto& t : twins) {
    if (t->phase() != twin::Twin::Phase::kCertified) {
      ADD_FAILURE() << t->device().device_id() << " "
                    << twin::Twin::PhaseName(t->phase()) << ": "
                    << t->last_error();
      break;
    }
  }
  const auto stats = client.stats();
  EXPECT_EQ(stats.redirects, 0u);  // the ring named every owner
  EXPECT_LE(stats.max_in_flight_seen, options.max_in_flight);
  EXPECT_GE(stats.calls, 2u * kTwins);
  EXPECT_EQ(stats.rejected, 0u);
  EXPECT_EQ(driver.outstanding(), 0);

  malloc_trim(0);
  const size_t heap_idle = HeapInUse(), rss_idle = RssBytes();
  size_t footprint = 0;
  for (const auto& t : twins) footprint += t->FootprintBytes();
  const double per_twin = static_cast<double>(heap_idle - heap0) / kTwins;
  const double per_twin_manufactured =
      static_cast<double>(heap_manufactured - heap0) / kTwins;
  const double rss_per_twin =
      (static_cast<double>(rss_idle) - static_cast<double>(rss0)) / kTwins;
  double load[1] = {0};
  getloadavg(load, 1);
  std::printf("machine load average (1 min) at the end: %.1f\n", load[0]);
  std::printf(
      "twin fleet: %d twins; manufacture %.1f s, import+claim %.1f s, "
      "attestation %.1f s (%.0f/s)\n"
      "  heap per manufactured twin: %.0f B\n"
      "  heap per idle certified twin: %.0f B (Twin::FootprintBytes mean "
      "%.0f B)\n"
      "  RSS per idle certified twin: %.0f B\n"
      "  client: %llu calls, %llu redirects, window high-water %d\n",
      kTwins, absl::ToDoubleSeconds(manufacture_time),
      absl::ToDoubleSeconds(register_time), absl::ToDoubleSeconds(attest_time),
      kTwins / absl::ToDoubleSeconds(attest_time), per_twin_manufactured,
      per_twin, static_cast<double>(footprint) / kTwins, rss_per_twin,
      static_cast<unsigned long long>(stats.calls),
      static_cast<unsigned long long>(stats.redirects),
      stats.max_in_flight_seen);
  // The design budget for an idle twin (docs/benchmarks.md); allocator
  // counts, not time, so this is deterministic enough to hold the line.
  EXPECT_LE(per_twin, 2048.0);
  ::testing::Test::RecordProperty("heap_bytes_per_idle_twin",
                                  static_cast<int>(per_twin));
  ::testing::Test::RecordProperty("rss_bytes_per_idle_twin",
                                  static_cast<int>(rss_per_twin));
}

}  // namespace
}  // namespace sphere::testing
