#include "appsvc/contoso_cloud.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"

namespace contoso::appsvc {
namespace {

const std::string kDev(64, 'a');
const std::string kDev2(64, 'b');
const std::string kDev3(64, 'c');

class ContosoCloudTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = *sphere::store::MemoryStore::Create(ColumnFamilies());
    group_ = std::make_unique<sphere::store::GroupCommitWriter>(store_.get());
    writer_ = std::make_unique<SharedGroupCommit>(group_.get());
    cloud_ = std::make_unique<ContosoCloud>(store_.get(), writer_.get(),
                                            &clock_, CloudOptions{});
    SeedData seed;
    records::Shop shop;
    shop.set_id("shop-1");
    shop.set_name("Redmond Appliance Repair");
    (*shop.mutable_inventory())["DW100-HTR-220"] = 1;
    seed.shops.push_back(shop);
    records::Shop empty;
    empty.set_id("shop-2");
    empty.set_name("Bellevue Repair");
    seed.shops.push_back(empty);
    seed.customers.push_back(Customer(kDev, "Ada", "shop-1", true));
    seed.customers.push_back(Customer(kDev2, "Bob", "shop-2", true));
    seed.customers.push_back(Customer(kDev3, "Cy", "shop-1", false));
    ASSERT_TRUE(cloud_->LoadSeed(seed).ok());
  }

  records::Customer Customer(const std::string& id, const std::string& name,
                             const std::string& shop, bool warranty) {
    records::Customer c;
    c.set_device_id(id);
    c.set_name(name);
    c.set_email(absl::StrCat(name, "@example.com"));
    c.set_shop_id(shop);
    c.set_warranty_until_unix_ms(absl::ToUnixMillis(
        clock_.Now() + (warranty ? absl::Hours(24 * 365) : -absl::Hours(1))));
    return c;
  }

  // OneCycle appends a full wash cycle (heat, wash, rinse, 5 drying samples
  // at `drying_c`, done) with sequences from seq_.
  void AddCycle(v1::ReportTelemetryRequest* req, uint64_t cycle,
                double drying_c, double rinse_pct = 80) {
    using T = v1::Telemetry;
    auto add = [&](T::CycleState state, double dry) {
      T* s = req->add_samples();
      s->set_time_unix_ms(absl::ToUnixMillis(clock_.Now()) + seq_);
      s->set_water_temperature_c(55);
      s->set_drying_temperature_c(dry);
      s->set_rinse_agent_level_pct(rinse_pct);
      s->set_cycle_state(state);
      s->set_cycle_id(cycle);
      s->set_sequence(seq_++);
    };
    add(T::HEATING, 25);
    add(T::WASHING, 25);
    add(T::RINSING, 30);
    for (int i = 0; i < 5; ++i) add(T::DRYING, drying_c + (i % 2 ? 0.5 : -0.5));
    add(T::DONE, 30);
  }

  v1::ReportTelemetryResponse Report(const std::string& dev,
                                     const v1::ReportTelemetryRequest& req) {
    auto r = cloud_->ReportTelemetry(dev, req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::ReportTelemetryResponse();
  }

  // Cycles reports `n` cycles at `drying_c`, one batch each.
  v1::ReportTelemetryResponse Cycles(const std::string& dev, int n,
                                     double drying_c, double rinse = 80) {
    v1::ReportTelemetryResponse last;
    for (int i = 0; i < n; ++i) {
      v1::ReportTelemetryRequest req;
      AddCycle(&req, cycle_++, drying_c, rinse);
      last = Report(dev, req);
    }
    return last;
  }

  // Anomaly drives `dev` into a too-hot anomaly and returns the command.
  v1::Command Anomaly(const std::string& dev) {
    Cycles(dev, 5, 65);
    auto r = Cycles(dev, 3, 95);
    EXPECT_EQ(r.commands_size(), 1);
    EXPECT_TRUE(std::count(r.actions().begin(), r.actions().end(),
                           "diagnostics-requested") == 1);
    return r.commands_size() ? r.commands(0) : v1::Command();
  }

  v1::CompleteCommandRequest Faulty(const v1::Command& c) {
    v1::CompleteCommandRequest req;
    req.set_command_id(c.command_id());
    req.mutable_diagnostics()->set_healthy(false);
    req.mutable_diagnostics()->add_findings(
        "drying heater element resistance high");
    req.mutable_diagnostics()->set_suspected_part("DW100-HTR-220");
    return req;
  }

  int64_t Stock(const std::string& shop) {
    auto s = cloud_->GetShop(shop);
    EXPECT_TRUE(s.ok());
    return s.ok() ? s->inventory().at("DW100-HTR-220") : -1;
  }

  sphere::FakeClock clock_{absl::FromUnixSeconds(1790000000)};
  std::unique_ptr<sphere::store::MemoryStore> store_;
  std::unique_ptr<sphere::store::GroupCommitWriter> group_;
  std::unique_ptr<SharedGroupCommit> writer_;
  std::unique_ptr<ContosoCloud> cloud_;
  uint64_t seq_ = 1;
  uint64_t cycle_ = 1;
};

TEST_F(ContosoCloudTest, IngestIsIdempotentBySequence) {
  v1::ReportTelemetryRequest req;
  AddCycle(&req, 1, 65);
  auto first = Report(kDev, req);
  EXPECT_EQ(first.accepted(), 9u);
  EXPECT_EQ(first.duplicates(), 0u);
  const auto rec_before = cloud_->GetDeviceRecord(kDev);
  ASSERT_TRUE(rec_before.ok());
  // The same batch again (a retry after a lost response).
  auto again = Report(kDev, req);
  EXPECT_EQ(again.accepted(), 0u);
  EXPECT_EQ(again.duplicates(), 9u);
  EXPECT_EQ(*cloud_->CountSamples(kDev), 9u);
  auto rec_after = cloud_->GetDeviceRecord(kDev);
  ASSERT_TRUE(rec_after.ok());
  EXPECT_EQ(rec_after->SerializeAsString(), rec_before->SerializeAsString());
  EXPECT_EQ(rec_after->cycles_completed(), 1u);
}

TEST_F(ContosoCloudTest, DuplicateInsideOneBatchAndOldGapAreHandled) {
  v1::ReportTelemetryRequest req;
  AddCycle(&req, 1, 65);
  *req.add_samples() = req.samples(0);  // same sequence twice
  auto r = Report(kDev, req);
  EXPECT_EQ(r.accepted(), 9u);
  EXPECT_EQ(r.duplicates(), 1u);
  // A sequence below the high-water mark never stored before is new.
  v1::ReportTelemetryRequest late;
  *late.add_samples() = req.samples(0);
  late.mutable_samples(0)->set_sequence(1000);
  Report(kDev, late);
  late.mutable_samples(0)->set_sequence(500);
  EXPECT_EQ(Report(kDev, late).accepted(), 1u);
  EXPECT_EQ(*cloud_->CountSamples(kDev), 11u);
}

TEST_F(ContosoCloudTest, CountSamplesCountsEveryStoredChunkWithoutParsing) {
  v1::ReportTelemetryRequest req;
  AddCycle(&req, 1, 65);
  ASSERT_EQ(Report(kDev, req).accepted(), 9u);
  AddCycle(&req, 2, 65);  // 9 resent (duplicates) and 9 new
  ASSERT_EQ(Report(kDev, req).accepted(), 9u);
  EXPECT_EQ(*cloud_->CountSamples(kDev), 18u);
  // A chunk written by records::SampleChunk itself, with a field the count
  // does not know (skipped), an empty sample and a 3-sample run.
  records::SampleChunk chunk;
  chunk.add_samples();
  for (int i = 0; i < 3; ++i) *chunk.add_samples() = req.samples(i);
  std::string value = chunk.SerializeAsString();
  value += std::string("\x10\x07", 2);  // field 2, varint 7
  ASSERT_TRUE(store_->Put("samples", kDev2 + "/x", value).ok());
  EXPECT_EQ(*cloud_->CountSamples(kDev2), 4u);
  EXPECT_EQ(*cloud_->CountSamples(kDev3), 0u);
}

// StoredChunks: every records::SampleChunk stored for `dev`, in key order.
std::vector<records::SampleChunk> StoredChunks(sphere::store::Store* store,
                                               const std::string& dev) {
  std::vector<records::SampleChunk> out;
  EXPECT_TRUE(store
                  ->Scan("samples", dev + "/",
                         [&](absl::string_view, absl::string_view v) {
                           records::SampleChunk c;
                           EXPECT_TRUE(c.ParseFromArray(v.data(), v.size()));
                           out.push_back(std::move(c));
                           return true;
                         })
                  .ok());
  return out;
}

TEST_F(ContosoCloudTest, StoredChunkHoldsTheNewSamplesInSequenceOrder) {
  v1::ReportTelemetryRequest req;
  AddCycle(&req, 1, 65);
  ASSERT_EQ(Report(kDev, req).accepted(), 9u);
  // Out of order, with a repeat inside the batch and a stored sequence.
  v1::ReportTelemetryRequest next;
  AddCycle(&next, 2, 65);
  std::reverse(next.mutable_samples()->begin(), next.mutable_samples()->end());
  *next.add_samples() = next.samples(0);
  *next.add_samples() = req.samples(3);
  auto r = Report(kDev, next);
  EXPECT_EQ(r.accepted(), 9u);
  EXPECT_EQ(r.duplicates(), 2u);
  std::vector<records::SampleChunk> chunks = StoredChunks(store_.get(), kDev);
  ASSERT_EQ(chunks.size(), 2u);
  ASSERT_EQ(chunks[0].samples_size(), 9);
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(chunks[0].samples(i).SerializeAsString(),
              req.samples(i).SerializeAsString());
  }
  ASSERT_EQ(chunks[1].samples_size(), 9);
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(chunks[1].samples(i).SerializeAsString(),
              next.samples(8 - i).SerializeAsString());
  }
}

TEST_F(ContosoCloudTest, CountSamplesRefusesAMalformedChunk) {
  records::SampleChunk chunk;
  v1::Telemetry* t = chunk.add_samples();
  t->set_sequence(7);
  const std::string good = chunk.SerializeAsString();
  for (const std::string& bad :
       {good.substr(0, good.size() - 1),            // length past the end
        good + std::string("\x0a", 1),              // tag with no length
        good + std::string("\x0a\x85", 2),          // truncated length
        std::string("\x00\x01", 2) + good,          // field number 0
        good + std::string("\x0c", 1),              // end-group, no group
        good + std::string("\x0f", 1)}) {           // wire type 7
    ASSERT_TRUE(store_->Put("samples", kDev + "/x", bad).ok());
    EXPECT_EQ(cloud_->CountSamples(kDev).status().code(),
              absl::StatusCode::kDataLoss)
        << absl::CEscape(bad);
  }
}

TEST_F(ContosoCloudTest, Attack_OversizedBatchRefusedNothingStored) {
  v1::ReportTelemetryRequest req;
  while (req.samples_size() <= kMaxBatchSamples) AddCycle(&req, 1, 65);
  const int64_t writes = store_->writes();
  auto r = cloud_->ReportTelemetry(kDev, req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "over the limit"));
  EXPECT_EQ(store_->writes(), writes);
  EXPECT_EQ(*cloud_->CountSamples(kDev), 0u);
  EXPECT_TRUE(absl::IsNotFound(cloud_->GetDeviceRecord(kDev).status()));
}

TEST_F(ContosoCloudTest, ManyDevicesAreStoredWithOneDurableWrite) {
  v1::ReportTelemetryRequest a, b, c;
  AddCycle(&a, 1, 65);
  AddCycle(&b, 1, 65);
  AddCycle(&c, 1, 65);
  const int64_t writes = store_->writes();
  auto results = cloud_->ReportTelemetryMany(
      {{kDev, &a}, {kDev2, &b}, {kDev3, &c}});
  ASSERT_EQ(results.size(), 3u);
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->accepted(), 9u);
  }
  EXPECT_EQ(store_->writes(), writes + 1);
  for (const std::string& d : {kDev, kDev2, kDev3}) {
    EXPECT_EQ(*cloud_->CountSamples(d), 9u);
    EXPECT_EQ(cloud_->GetDeviceRecord(d)->samples_stored(), 9u);
  }
  // Resent: duplicates only, nothing written.
  results = cloud_->ReportTelemetryMany({{kDev, &a}, {kDev2, &b}});
  EXPECT_EQ(results[0]->duplicates(), 9u);
  EXPECT_EQ(results[1]->accepted(), 0u);
  EXPECT_EQ(store_->writes(), writes + 1);
}

TEST_F(ContosoCloudTest, Attack_BadItemInAManyDeviceBatchStoresNothingForIt) {
  v1::ReportTelemetryRequest good, bad, again;
  AddCycle(&good, 1, 65);
  AddCycle(&bad, 1, 65);
  bad.mutable_samples(4)->set_rinse_agent_level_pct(250);
  AddCycle(&again, 2, 65);
  // kDev twice: its second item is refused, whatever it holds.
  auto results = cloud_->ReportTelemetryMany(
      {{kDev, &good}, {kDev2, &bad}, {kDev, &again}});
  ASSERT_EQ(results.size(), 3u);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_EQ(results[0]->accepted(), 9u);
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(results[1].status().message(),
                                "samples[4].rinse_agent_level_pct"));
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(results[2].status().message(), "twice"));
  EXPECT_EQ(*cloud_->CountSamples(kDev), 9u);
  EXPECT_EQ(*cloud_->CountSamples(kDev2), 0u);
  EXPECT_EQ(cloud_->GetDeviceRecord(kDev2).status().code(),
            absl::StatusCode::kNotFound);  // no record was written
}

// FailingWriter refuses every commit (a disk that stopped syncing).
class FailingWriter final : public DurableWriter {
 public:
  absl::Status Commit(sphere::store::WriteBatch) override {
    ++commits;
    return absl::UnavailableError("synced write failed");
  }
  int commits = 0;
};

TEST_F(ContosoCloudTest, Fault_FailedWriteFailsEveryAcceptedItemStoresNothing) {
  FailingWriter failing;
  ContosoCloud cloud(store_.get(), &failing, &clock_, CloudOptions{});
  v1::ReportTelemetryRequest a, b;
  AddCycle(&a, 1, 65);
  AddCycle(&b, 1, 65);
  const int64_t writes = store_->writes();
  auto results = cloud.ReportTelemetryMany({{kDev, &a}, {kDev2, &b}});
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  }
  EXPECT_EQ(failing.commits, 1);
  EXPECT_EQ(store_->writes(), writes);
  EXPECT_EQ(*cloud.CountSamples(kDev), 0u);
  EXPECT_EQ(*cloud.CountSamples(kDev2), 0u);
  // Nothing was acknowledged, so the same batches go in later in full.
  auto retry = cloud_->ReportTelemetryMany({{kDev, &a}, {kDev2, &b}});
  EXPECT_EQ(retry[0]->accepted(), 9u);
  EXPECT_EQ(retry[1]->accepted(), 9u);
}

TEST_F(ContosoCloudTest, Attack_OutOfBoundsFieldRefusedNothingStored) {
  v1::ReportTelemetryRequest req;
  AddCycle(&req, 1, 65);
  req.mutable_samples(8)->set_rinse_agent_level_pct(250);
  const int64_t writes = store_->writes();
  auto r = cloud_->ReportTelemetry(kDev, req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(r.status().message(),
                                "samples[8].rinse_agent_level_pct"));
  req.mutable_samples(8)->set_rinse_agent_level_pct(50);
  req.mutable_samples(3)->set_drying_temperature_c(std::nan(""));
  EXPECT_EQ(cloud_->ReportTelemetry(kDev, req).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->writes(), writes);
  EXPECT_EQ(*cloud_->CountSamples(kDev), 0u);
}

TEST(ValidateSampleTest, EveryBoundEdgeAcceptedAndJustPastRefused) {
  v1::Telemetry ok;
  ok.set_time_unix_ms(1700000000000);
  ok.set_water_temperature_c(50);
  ok.set_drying_temperature_c(60);
  ok.set_rinse_agent_level_pct(50);
  ok.set_cycle_state(v1::Telemetry::DRYING);
  ASSERT_TRUE(ValidateSample(ok, 0).ok());
  using Set = void (*)(v1::Telemetry*, double);
  struct Field {
    const char* name;
    Set set;
    double lo, hi;
  };
  const Field fields[] = {
      {"water_temperature_c",
       [](v1::Telemetry* t, double v) { t->set_water_temperature_c(v); }, -20,
       120},
      {"drying_temperature_c",
       [](v1::Telemetry* t, double v) { t->set_drying_temperature_c(v); }, -20,
       150},
      {"rinse_agent_level_pct",
       [](v1::Telemetry* t, double v) { t->set_rinse_agent_level_pct(v); }, 0,
       100},
  };
  for (const Field& f : fields) {
    for (double v : {f.lo, f.hi}) {
      v1::Telemetry t = ok;
      f.set(&t, v);
      EXPECT_TRUE(ValidateSample(t, 0).ok()) << f.name << " = " << v;
    }
    for (double v : {std::nextafter(f.lo, -1e9), std::nextafter(f.hi, 1e9),
                     std::nan(""), HUGE_VAL, -HUGE_VAL}) {
      v1::Telemetry t = ok;
      f.set(&t, v);
      absl::Status st = ValidateSample(t, 7);
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument)
          << f.name << " = " << v;
      EXPECT_TRUE(absl::StrContains(st.message(),
                                    absl::StrCat("samples[7].", f.name)))
          << st.message();
    }
  }
  const int64_t kMin = 946684800000, kMax = 4102444800000;
  for (int64_t ms : {kMin, kMax}) {
    v1::Telemetry t = ok;
    t.set_time_unix_ms(ms);
    EXPECT_TRUE(ValidateSample(t, 0).ok()) << ms;
  }
  for (int64_t ms : {kMin - 1, kMax + 1, int64_t{0}, int64_t{-1}}) {
    v1::Telemetry t = ok;
    t.set_time_unix_ms(ms);
    EXPECT_TRUE(absl::StrContains(ValidateSample(t, 0).message(),
                                  "samples[0].time_unix_ms"))
        << ms;
  }
  v1::Telemetry bad_state = ok;
  bad_state.set_cycle_state(static_cast<v1::Telemetry::CycleState>(99));
  EXPECT_TRUE(absl::StrContains(ValidateSample(bad_state, 0).message(),
                                "samples[0].cycle_state"));
}

TEST_F(ContosoCloudTest, Attack_SequenceGapFloodRefusedNothingStored) {
  // Every other sequence number: each sample is a gap of its own.
  v1::ReportTelemetryRequest req;
  AddCycle(&req, 1, 65);
  const v1::Telemetry proto = req.samples(0);
  req.clear_samples();
  for (int i = 0; i <= kMaxSequenceRanges; ++i) {
    v1::Telemetry* s = req.add_samples();
    *s = proto;
    s->set_sequence(2 * i + 1);
  }
  const int64_t writes = store_->writes();
  auto r = cloud_->ReportTelemetry(kDev, req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "gaps"));
  EXPECT_EQ(store_->writes(), writes);
  EXPECT_EQ(*cloud_->CountSamples(kDev), 0u);
  // Within the limit it is accepted, and filling the gaps merges them.
  req.mutable_samples()->RemoveLast();
  EXPECT_EQ(Report(kDev, req).accepted(),
            static_cast<uint32_t>(kMaxSequenceRanges));
  for (int i = 0; i < req.samples_size(); ++i) {
    req.mutable_samples(i)->set_sequence(2 * i + 2);
  }
  EXPECT_EQ(Report(kDev, req).accepted(),
            static_cast<uint32_t>(kMaxSequenceRanges));
  auto rec = cloud_->GetDeviceRecord(kDev);
  ASSERT_TRUE(rec.ok());
  ASSERT_EQ(rec->stored_size(), 1);
  EXPECT_EQ(rec->stored(0).lo(), 1u);
  EXPECT_EQ(rec->stored(0).hi(), 2u * kMaxSequenceRanges);
  EXPECT_EQ(*cloud_->CountSamples(kDev), 2u * kMaxSequenceRanges);
}

TEST_F(ContosoCloudTest, Fault_StoreWriteFailsNothingAcknowledged) {
  v1::ReportTelemetryRequest req;
  AddCycle(&req, 1, 65);
  store_->FailNextWrites(1, absl::UnavailableError("disk gone"));
  auto r = cloud_->ReportTelemetry(kDev, req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(*cloud_->CountSamples(kDev), 0u);
  EXPECT_TRUE(absl::IsNotFound(cloud_->GetDeviceRecord(kDev).status()));
  // The retry stores it once.
  EXPECT_EQ(Report(kDev, req).accepted(), 9u);
}

TEST_F(ContosoCloudTest, OneNoisyCycleQueuesNothing) {
  Cycles(kDev, 5, 65);
  auto r = Cycles(kDev, 1, 95);
  EXPECT_EQ(r.commands_size(), 0);
  r = Cycles(kDev, 2, 65);
  EXPECT_EQ(r.commands_size(), 0);
  EXPECT_EQ(cloud_->PollCommands(kDev)->commands_size(), 0);
  EXPECT_EQ(cloud_->GetDeviceInsights(kDev)->anomalies_size(), 0);
}

TEST_F(ContosoCloudTest, ConsecutiveHotCyclesQueueDiagnosticsOnce) {
  v1::Command c = Anomaly(kDev);
  EXPECT_EQ(c.kind(), v1::Command::RUN_DIAGNOSTICS);
  auto poll = cloud_->PollCommands(kDev);
  ASSERT_TRUE(poll.ok());
  ASSERT_EQ(poll->commands_size(), 1);
  EXPECT_EQ(poll->commands(0).command_id(), c.command_id());
  // More hot cycles do not queue a second command.
  EXPECT_EQ(Cycles(kDev, 2, 95).commands_size(), 1);
  auto list = cloud_->ListDevices({});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->devices_size(), 1);
  EXPECT_EQ(list->devices(0).state(), "anomaly");
  EXPECT_EQ(list->devices(0).open_anomalies(0), "drying-too-hot");
}

TEST_F(ContosoCloudTest, ConsecutiveColdCyclesQueueDiagnostics) {
  Cycles(kDev, 5, 65);
  auto r = Cycles(kDev, 3, 40);
  ASSERT_EQ(r.commands_size(), 1);
  auto insights = cloud_->GetDeviceInsights(kDev);
  ASSERT_TRUE(insights.ok());
  ASSERT_EQ(insights->anomalies_size(), 1);
  EXPECT_TRUE(absl::StartsWith(insights->anomalies(0), "drying-too-cold"));
}

TEST_F(ContosoCloudTest, WarrantyPartInStockIsReserved) {
  v1::Command c = Anomaly(kDev);
  ASSERT_EQ(Stock("shop-1"), 1);
  ASSERT_TRUE(cloud_->CompleteCommand(kDev, Faulty(c)).ok());
  EXPECT_EQ(Stock("shop-1"), 0);
  auto in = cloud_->GetDeviceInsights(kDev);
  ASSERT_TRUE(in.ok());
  EXPECT_TRUE(in->under_warranty());
  ASSERT_EQ(in->reservations_size(), 1);
  EXPECT_TRUE(absl::StrContains(in->reservations(0),
                                "DW100-HTR-220 reserved at Redmond"));
  ASSERT_EQ(in->notifications_size(), 1);
  EXPECT_TRUE(absl::StrContains(in->notifications(0), "Ada"));
  EXPECT_TRUE(absl::StrContains(in->notifications(0), "under warranty"));
  EXPECT_EQ(in->diagnostics_size(), 1);
  EXPECT_EQ(cloud_->PollCommands(kDev)->commands_size(), 0);
  // Answering again is idempotent: no second reservation.
  ASSERT_TRUE(cloud_->CompleteCommand(kDev, Faulty(c)).ok());
  EXPECT_EQ(Stock("shop-1"), 0);
  EXPECT_EQ(cloud_->GetDeviceInsights(kDev)->reservations_size(), 1);
}

TEST_F(ContosoCloudTest, WarrantyPartOutOfStockIsBackordered) {
  v1::Command c = Anomaly(kDev2);
  ASSERT_TRUE(cloud_->CompleteCommand(kDev2, Faulty(c)).ok());
  auto in = cloud_->GetDeviceInsights(kDev2);
  ASSERT_TRUE(in.ok());
  ASSERT_EQ(in->reservations_size(), 1);
  EXPECT_TRUE(absl::StrContains(in->reservations(0), "backordered"));
  EXPECT_TRUE(absl::StrContains(in->notifications(0), "backordered"));
  auto shop = cloud_->GetShop("shop-2");
  ASSERT_TRUE(shop.ok());
  EXPECT_EQ(shop->inventory().at("DW100-HTR-220"), 0);
}

TEST_F(ContosoCloudTest, NoWarrantyNoReservation) {
  v1::Command c = Anomaly(kDev3);
  ASSERT_TRUE(cloud_->CompleteCommand(kDev3, Faulty(c)).ok());
  auto in = cloud_->GetDeviceInsights(kDev3);
  ASSERT_TRUE(in.ok());
  EXPECT_FALSE(in->under_warranty());
  EXPECT_EQ(in->reservations_size(), 0);
  EXPECT_EQ(Stock("shop-1"), 1);
  ASSERT_EQ(in->notifications_size(), 1);
  EXPECT_TRUE(absl::StrContains(in->notifications(0), "out of warranty"));
}

TEST_F(ContosoCloudTest, HealthyDiagnosticsNotifiesWithoutReservation) {
  v1::Command c = Anomaly(kDev);
  v1::CompleteCommandRequest req;
  req.set_command_id(c.command_id());
  req.mutable_diagnostics()->set_healthy(true);
  ASSERT_TRUE(cloud_->CompleteCommand(kDev, req).ok());
  auto in = cloud_->GetDeviceInsights(kDev);
  EXPECT_EQ(in->reservations_size(), 0);
  EXPECT_TRUE(absl::StrContains(in->notifications(0), "no fault"));
  EXPECT_EQ(Stock("shop-1"), 1);
}

TEST_F(ContosoCloudTest, Attack_CompleteUnknownCommandChangesNothing) {
  Anomaly(kDev);
  const std::string before = cloud_->GetDeviceRecord(kDev)->SerializeAsString();
  v1::CompleteCommandRequest req;
  req.set_command_id("cmd-not-mine");
  EXPECT_EQ(cloud_->CompleteCommand(kDev, req).code(),
            absl::StatusCode::kNotFound);
  // Another device cannot answer kDev's command.
  v1::Command c = *cloud_->PollCommands(kDev)->commands().begin();
  req.set_command_id(c.command_id());
  EXPECT_EQ(cloud_->CompleteCommand(kDev2, req).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cloud_->GetDeviceRecord(kDev)->SerializeAsString(), before);
  EXPECT_EQ(Stock("shop-1"), 1);
}

TEST_F(ContosoCloudTest, RinseLowOffersReorderAndOrderIsRecordedOnce) {
  auto r = Cycles(kDev, 1, 65, /*rinse=*/10);
  ASSERT_EQ(
      std::count(r.actions().begin(), r.actions().end(), "reorder-offered"), 1);
  // Still low: no second offer.
  r = Cycles(kDev, 1, 65, 9);
  EXPECT_EQ(r.actions_size(), 0);
  auto in = cloud_->GetDeviceInsights(kDev);
  ASSERT_EQ(in->reorder_offers_size(), 1);
  EXPECT_TRUE(absl::StrContains(in->notifications(0), "reorder"));
  v1::PlaceOrderRequest order;
  order.set_device_id(kDev);
  order.set_offer_id(in->reorder_offers(0));
  auto placed = cloud_->PlaceOrder(order);
  ASSERT_TRUE(placed.ok()) << placed.status();
  auto again = cloud_->PlaceOrder(order);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->order_id(), placed->order_id());
  in = cloud_->GetDeviceInsights(kDev);
  ASSERT_EQ(in->orders_size(), 1);
  // An offer that was never made is refused.
  order.set_offer_id("offer-forged");
  EXPECT_EQ(cloud_->PlaceOrder(order).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cloud_->GetDeviceInsights(kDev)->orders_size(), 1);
  // Refilled, then low again: a new offer.
  Cycles(kDev, 1, 65, 90);
  r = Cycles(kDev, 1, 65, 12);
  EXPECT_EQ(
      std::count(r.actions().begin(), r.actions().end(), "reorder-offered"), 1);
}

TEST_F(ContosoCloudTest, ServiceRequestJoinsTheTimeline) {
  Cycles(kDev, 1, 65);
  v1::RequestServiceRequest req;
  req.set_device_id(kDev);
  req.set_description("dishes come out wet");
  auto r = cloud_->RequestService(req);
  ASSERT_TRUE(r.ok()) << r.status();
  auto t = cloud_->ContosoTimeline(kDev);
  ASSERT_TRUE(t.ok());
  bool found = false;
  for (const auto& e : t->entries()) {
    if (e.kind() == "service-request" &&
        absl::StrContains(e.summary(), "dishes come out wet")) {
      found = true;
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(cloud_->GetDeviceInsights(kDev)->service_requests_size(), 1);
  // Oversized description: refused, nothing stored.
  req.set_description(std::string(kMaxDescriptionBytes + 1, 'x'));
  EXPECT_EQ(cloud_->RequestService(req).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Unknown device: refused.
  req.set_description("x");
  req.set_device_id(std::string(64, 'f'));
  EXPECT_EQ(cloud_->RequestService(req).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(cloud_->GetDeviceInsights(kDev)->service_requests_size(), 1);
}

TEST_F(ContosoCloudTest, SeedReloadKeepsLiveInventory) {
  v1::Command c = Anomaly(kDev);
  ASSERT_TRUE(cloud_->CompleteCommand(kDev, Faulty(c)).ok());
  ASSERT_EQ(Stock("shop-1"), 0);
  SeedData seed;
  records::Shop shop;
  shop.set_id("shop-1");
  (*shop.mutable_inventory())["DW100-HTR-220"] = 5;
  seed.shops.push_back(shop);
  ASSERT_TRUE(cloud_->LoadSeed(seed).ok());
  EXPECT_EQ(Stock("shop-1"), 0);
}

TEST_F(ContosoCloudTest, ConcurrentBatchesShareCommits) {
  // Many devices reporting at once all land; the writer groups them.
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([this, t] {
      std::string dev(64, '0');
      dev[0] = "0123456789abcdef"[t];
      for (int i = 0; i < 20; ++i) {
        v1::ReportTelemetryRequest req;
        v1::Telemetry* s = req.add_samples();
        s->set_time_unix_ms(absl::ToUnixMillis(clock_.Now()));
        s->set_cycle_state(v1::Telemetry::IDLE);
        s->set_rinse_agent_level_pct(80);
        s->set_sequence(i + 1);
        EXPECT_TRUE(cloud_->ReportTelemetry(dev, req).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(group_->batches_written(), 160u + 1u);  // + the seed
  auto list = cloud_->ListDevices({});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->devices_size(), 8);
}

}  // namespace
}  // namespace contoso::appsvc
