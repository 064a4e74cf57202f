#include "securitysvc/errors/error_store.h"

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/store/forwarding_store.h"
#include "common/store/group_commit.h"
#include "common/store/memory_store.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "gtest/gtest.h"
#include "securitysvc/errors/error_testing.h"

namespace sphere::errors {
namespace {

const std::string kDevA(64, 'a');
const std::string kDevB(64, 'b');
const std::string kDevC(64, 'c');
constexpr char kContoso[] = "tenant-contoso";
constexpr char kFabrikam[] = "tenant-fabrikam";

v1::ErrorEvent Crash(uint64_t seq, const std::string& component = "dw100-app",
                     const std::string& version = "1.0", int exit_code = 3) {
  v1::ErrorEvent e;
  e.set_sequence(seq);
  e.set_kind(v1::ErrorEvent::APP_CRASH);
  e.set_component(component);
  e.set_component_version(version);
  e.set_exit_code(exit_code);
  e.set_signal(11);
  e.set_detail("segfault in wash cycle");
  e.set_time_unix_ms(1767225600000 + seq);
  return e;
}

v1::UploadErrorsRequest Batch(uint64_t first, int n) {
  v1::UploadErrorsRequest r;
  for (int i = 0; i < n; ++i) *r.add_events() = Crash(first + i);
  return r;
}

size_t Count(store::Store* s, const char* cf) {
  size_t n = 0;
  EXPECT_TRUE(s->Scan(cf, "", [&](absl::string_view, absl::string_view) {
                 ++n;
                 return true;
               }).ok());
  return n;
}

// Fixture: an ErrorStore over a store of the test's choice (memory unless
// OpenRocks is called first), with a FakeClock.
class ErrorStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = store::MemoryStore::Create(ColumnFamilies());
    ASSERT_TRUE(m.ok());
    memory_ = m->get();
    Use(std::move(*m));
  }
  void Use(std::unique_ptr<store::Store> s, ErrorStoreOptions options = {}) {
    if (writer_) writer_->Stop();
    errors_.reset();
    writer_.reset();
    store_ = std::move(s);
    writer_ = std::make_unique<store::GroupCommitWriter>(store_.get());
    errors_ = std::make_unique<ErrorStore>(store_.get(), writer_.get(), &clock_,
                                           options);
  }
  void TearDown() override {
    if (writer_) writer_->Stop();
  }
  void OpenRocks() {
    memory_ = nullptr;
    auto s = store::OpenRocksStore(
        absl::StrCat(
            std::getenv("TEST_TMPDIR"), "/",
            ::testing::UnitTest::GetInstance()->current_test_info()->name()),
        ColumnFamilies());
    ASSERT_TRUE(s.ok()) << s.status();
    Use(std::move(*s));
  }
  absl::StatusOr<v1::UploadErrorsResponse> Upload(
      const std::string& device, const std::string& tenant,
      const v1::UploadErrorsRequest& req) {
    return IngestAndWait(errors_.get(), device, tenant, req);
  }
  std::vector<v1::ErrorReport> All(const std::string& tenant,
                                   const std::string& device = "") {
    std::vector<v1::ErrorReport> out;
    v1::QueryErrorsRequest q;
    q.set_tenant_id(tenant);
    q.set_device_id(device);
    q.set_page_size(1000);
    for (;;) {
      auto r = errors_->Query(q);
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) break;
      for (const auto& rep : r->reports()) out.push_back(rep);
      if (r->next_page_token().empty()) break;
      q.set_page_token(r->next_page_token());
    }
    return out;
  }
  void ExpectNothingStored() {
    for (const std::string& cf : ColumnFamilies()) {
      EXPECT_EQ(Count(store_.get(), cf.c_str()), 0u) << cf;
    }
  }

  FakeClock clock_;
  store::MemoryStore* memory_ = nullptr;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<store::GroupCommitWriter> writer_;
  std::unique_ptr<ErrorStore> errors_;
};

TEST_F(ErrorStoreTest, StoresReportsInAzureSphereShape) {
  v1::UploadErrorsRequest req = Batch(1, 2);
  v1::ErrorEvent* planned = req.add_events();
  planned->set_sequence(3);
  planned->set_kind(v1::ErrorEvent::PLANNED_RESTART);
  planned->set_component("os");
  planned->set_detail("update to 24.10 installed");
  planned->set_count(2);
  planned->set_time_unix_ms(100);
  planned->set_end_time_unix_ms(200);
  auto r = Upload(kDevA, kContoso, req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stored(), 3u);
  EXPECT_EQ(r->duplicates(), 0u);
  std::vector<v1::ErrorReport> all = All(kContoso);
  ASSERT_EQ(all.size(), 3u);
  const v1::ErrorReport& crash = all[0];
  EXPECT_EQ(crash.device_id(), kDevA);
  EXPECT_EQ(crash.tenant_id(), kContoso);
  EXPECT_EQ(crash.event_type(), "unplanned");
  EXPECT_EQ(crash.event_class(), "app");
  EXPECT_EQ(crash.event_count(), 1u);
  EXPECT_EQ(crash.description(),
            "APP_CRASH exit_code=3 signal=11: segfault in wash cycle");
  EXPECT_EQ(crash.start_unix_ms(), crash.event().time_unix_ms());
  EXPECT_EQ(crash.end_unix_ms(), crash.event().time_unix_ms());
  EXPECT_EQ(crash.received_unix_ms(), absl::ToUnixMillis(clock_.Now()));
  const v1::ErrorReport& restart = all[2];
  EXPECT_EQ(restart.event_type(), "planned");
  EXPECT_EQ(restart.event_class(), "os");
  EXPECT_EQ(restart.event_count(), 2u);
  EXPECT_EQ(restart.start_unix_ms(), 100);
  EXPECT_EQ(restart.end_unix_ms(), 200);
  EXPECT_EQ(All(kContoso, kDevA).size(), 3u);
  EXPECT_TRUE(All(kContoso, kDevB).empty());
}

TEST_F(ErrorStoreTest, DuplicateBatchIsAcknowledgedAndStoredOnce) {
  auto first = Upload(kDevA, kContoso, Batch(1, 10));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->stored(), 10u);
  clock_.Advance(absl::Minutes(1));  // a retry lands later
  auto again = Upload(kDevA, kContoso, Batch(1, 10));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->stored(), 0u);
  EXPECT_EQ(again->duplicates(), 10u);
  // Overlapping batch: 5 old, 5 new.
  auto overlap = Upload(kDevA, kContoso, Batch(6, 10));
  ASSERT_TRUE(overlap.ok()) << overlap.status();
  EXPECT_EQ(overlap->stored(), 5u);
  EXPECT_EQ(overlap->duplicates(), 5u);
  // One value per stored batch (1..10, then the new 11..15), one device
  // index entry each, one issue entry per signature per batch.
  EXPECT_EQ(Count(store_.get(), kByDevice), 2u);
  EXPECT_EQ(Count(store_.get(), kByTenant), 2u);
  EXPECT_EQ(Count(store_.get(), kByIssue), 2u);
  EXPECT_EQ(All(kContoso).size(), 15u);
  // Another device's sequence 1 is a different event.
  auto other = Upload(kDevB, kContoso, Batch(1, 1));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->stored(), 1u);
}

TEST_F(ErrorStoreTest,
       Attack_MalformedAndOversizedBatchesRefusedNothingStored) {
  struct Case {
    std::string name;
    std::function<void(v1::UploadErrorsRequest*)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"empty", [](auto* r) { r->clear_events(); }, "no events"},
      {"too many", [](auto* r) { *r = Batch(1, kMaxEventsPerBatch + 1); },
       "at most 1000 events per batch; got 1001"},
      {"sequence 0", [](auto* r) { r->mutable_events(1)->set_sequence(0); },
       "event 1: sequence must be > 0"},
      {"sequence twice", [](auto* r) { r->mutable_events(2)->set_sequence(1); },
       "event 2: sequence 1 appears twice"},
      {"kind unset",
       [](auto* r) {
         r->mutable_events(0)->set_kind(v1::ErrorEvent::KIND_UNSPECIFIED);
       },
       "event 0: kind 0 is not a known event kind"},
      {"kind unknown",
       [](auto* r) {
         r->mutable_events(0)->set_kind(static_cast<v1::ErrorEvent::Kind>(99));
       },
       "kind 99 is not a known"},
      {"component empty",
       [](auto* r) { r->mutable_events(0)->clear_component(); },
       "event 0: component must be 1..64"},
      {"component oversized",
       [](auto* r) {
         r->mutable_events(0)->set_component(std::string(65, 'x'));
       },
       "component must be 1..64 bytes of letters, digits and . _ - + : (got "
       "65 bytes)"},
      {"component with separator",
       [](auto* r) { r->mutable_events(0)->set_component("app/../x"); },
       "component must be"},
      {"version oversized",
       [](auto* r) {
         r->mutable_events(0)->set_component_version(std::string(33, '1'));
       },
       "component_version must be at most 32"},
      {"detail oversized",
       [](auto* r) {
         r->mutable_events(0)->set_detail(
             std::string(kMaxDetailBytes + 1, 'd'));
       },
       "detail is 513 bytes; at most 512"},
      {"count oversized",
       [](auto* r) { r->mutable_events(0)->set_count(kMaxEventCount + 1); },
       "count 1000001 exceeds"},
      {"negative time",
       [](auto* r) { r->mutable_events(0)->set_time_unix_ms(-1); },
       "times must not be negative"},
      {"end before start",
       [](auto* r) { r->mutable_events(0)->set_end_time_unix_ms(1); },
       "end_time_unix_ms is before"},
  };
  for (const Case& c : cases) {
    v1::UploadErrorsRequest req = Batch(1, 3);
    c.mutate(&req);
    auto r = Upload(kDevA, kContoso, req);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << c.name << ": " << r.status();
    ExpectNothingStored();
  }
  // Still accepts a good batch afterwards.
  EXPECT_TRUE(Upload(kDevA, kContoso, Batch(1, 3)).ok());
}

TEST_F(ErrorStoreTest, Fault_WriteFailureAcknowledgesNothingAndRetryStores) {
  memory_->FailNextWrites(1, absl::UnavailableError("disk gone"));
  auto r = Upload(kDevA, kContoso, Batch(1, 5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  ExpectNothingStored();
  auto retry = Upload(kDevA, kContoso, Batch(1, 5));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->stored(), 5u);
}

TEST_F(ErrorStoreTest, TenantsSeeOnlyTheirOwnReports) {
  ASSERT_TRUE(Upload(kDevA, kContoso, Batch(1, 4)).ok());
  ASSERT_TRUE(Upload(kDevB, kFabrikam, Batch(1, 2)).ok());
  for (const auto& r : All(kContoso)) EXPECT_EQ(r.tenant_id(), kContoso);
  EXPECT_EQ(All(kContoso).size(), 4u);
  EXPECT_EQ(All(kFabrikam).size(), 2u);
  // Fabrikam naming Contoso's device gets nothing.
  EXPECT_TRUE(All(kFabrikam, kDevA).empty());
  // A page token of Contoso's cannot be replayed in Fabrikam's query.
  v1::QueryErrorsRequest q;
  q.set_tenant_id(kContoso);
  q.set_page_size(1);
  auto page = errors_->Query(q);
  ASSERT_TRUE(page.ok());
  ASSERT_FALSE(page->next_page_token().empty());
  q.set_tenant_id(kFabrikam);
  q.set_page_token(page->next_page_token());
  auto stolen = errors_->Query(q);
  EXPECT_EQ(stolen.status().code(), absl::StatusCode::kInvalidArgument);
  // Issues too.
  v1::ListIssuesRequest li;
  li.set_tenant_id(kFabrikam);
  auto issues = errors_->ListIssues(li);
  ASSERT_TRUE(issues.ok());
  ASSERT_EQ(issues->issues_size(), 1);
  EXPECT_EQ(issues->issues(0).event_count(), 2u);
}

TEST_F(ErrorStoreTest, PagesCoverEveryReportOnceInOrder) {
  for (int b = 0; b < 5; ++b) {
    ASSERT_TRUE(Upload(kDevA, kContoso, Batch(1 + b * 50, 50)).ok());
    clock_.Advance(absl::Seconds(1));
  }
  v1::QueryErrorsRequest q;
  q.set_tenant_id(kContoso);
  q.set_page_size(100);
  std::vector<uint64_t> seqs;
  int pages = 0;
  for (;;) {
    auto r = errors_->Query(q);
    ASSERT_TRUE(r.ok()) << r.status();
    ++pages;
    EXPECT_LE(r->reports_size(), 100);
    for (const auto& rep : r->reports()) seqs.push_back(rep.event().sequence());
    if (r->next_page_token().empty()) break;
    q.set_page_token(r->next_page_token());
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seqs.size(), 250u);
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], i + 1);
  // Time range: only the second second's batch.
  v1::QueryErrorsRequest ranged;
  ranged.set_tenant_id(kContoso);
  ranged.set_from_unix_ms(absl::ToUnixMillis(clock_.Now() - absl::Seconds(4)));
  ranged.set_to_unix_ms(absl::ToUnixMillis(clock_.Now() - absl::Seconds(4)));
  auto r = errors_->Query(ranged);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->reports_size(), 50);
  EXPECT_EQ(r->reports(0).event().sequence(), 51u);
}

TEST_F(ErrorStoreTest, IssuesGroupBySignatureWithTrendPerRelease) {
  // dw100-app 1.0 exit 3 on A, B; dw100-app 1.1 exit 3 on C; exit 4 on A.
  v1::UploadErrorsRequest a;
  *a.add_events() = Crash(1, "dw100-app", "1.0", 3);
  *a.add_events() = Crash(2, "dw100-app", "1.0", 3);
  *a.add_events() = Crash(3, "dw100-app", "1.0", 4);
  ASSERT_TRUE(Upload(kDevA, kContoso, a).ok());
  clock_.Advance(absl::Hours(1));
  v1::UploadErrorsRequest b;
  *b.add_events() = Crash(1, "dw100-app", "1.0", 3);
  ASSERT_TRUE(Upload(kDevB, kContoso, b).ok());
  clock_.Advance(absl::Hours(1));
  v1::UploadErrorsRequest c;
  *c.add_events() = Crash(1, "dw100-app", "1.1", 3);
  c.mutable_events(0)->set_count(5);
  ASSERT_TRUE(Upload(kDevC, kContoso, c).ok());

  v1::ListIssuesRequest li;
  li.set_tenant_id(kContoso);
  auto list = errors_->ListIssues(li);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->issues_size(), 3);
  const v1::Issue& top = list->issues(0);  // most events first: 1.1 x5
  EXPECT_EQ(top.version(), "1.1");
  EXPECT_EQ(top.event_count(), 5u);
  EXPECT_EQ(top.device_count(), 1u);
  const v1::Issue& v10 = list->issues(1);
  EXPECT_EQ(v10.component(), "dw100-app");
  EXPECT_EQ(v10.version(), "1.0");
  EXPECT_EQ(v10.kind(), v1::ErrorEvent::APP_CRASH);
  EXPECT_EQ(v10.exit_code(), 3);
  EXPECT_EQ(v10.event_count(), 3u);
  EXPECT_EQ(v10.device_count(), 2u);
  const int64_t t0 = absl::ToUnixMillis(clock_.Now() - absl::Hours(2));
  EXPECT_EQ(v10.first_seen_unix_ms(), t0);
  EXPECT_EQ(v10.last_seen_unix_ms(), t0 + 3600 * 1000);
  EXPECT_EQ(list->issues(2).exit_code(), 4);

  v1::GetIssueRequest gi;
  gi.set_tenant_id(kContoso);
  gi.set_issue_id(v10.issue_id());
  auto issue = errors_->GetIssue(gi);
  ASSERT_TRUE(issue.ok()) << issue.status();
  EXPECT_EQ(issue->issue().event_count(), 3u);
  ASSERT_EQ(issue->releases_size(), 2);
  EXPECT_EQ(issue->releases(0).version(), "1.0");
  EXPECT_EQ(issue->releases(0).event_count(), 3u);
  EXPECT_EQ(issue->releases(0).device_count(), 2u);
  EXPECT_EQ(issue->releases(1).version(), "1.1");
  EXPECT_EQ(issue->releases(1).event_count(), 5u);
  // Another tenant: not found; garbage id: invalid.
  gi.set_tenant_id(kFabrikam);
  EXPECT_EQ(errors_->GetIssue(gi).status().code(), absl::StatusCode::kNotFound);
  gi.set_tenant_id(kContoso);
  gi.set_issue_id("zz");
  EXPECT_EQ(errors_->GetIssue(gi).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ErrorStoreTest, DroppedEventsKeepTheLargestCount) {
  v1::UploadErrorsRequest r = Batch(1, 1);
  r.set_dropped_events(7);
  ASSERT_TRUE(Upload(kDevA, kContoso, r).ok());
  EXPECT_EQ(*errors_->DroppedEvents(kDevA), 7u);
  r = Batch(2, 1);
  r.set_dropped_events(5);  // an older, retried batch
  ASSERT_TRUE(Upload(kDevA, kContoso, r).ok());
  EXPECT_EQ(*errors_->DroppedEvents(kDevA), 7u);
  EXPECT_EQ(*errors_->DroppedEvents(kDevB), 0u);
}

// One accepted batch is one value plus its index entries: the device
// record is written only when the device reports more dropped events, and a
// restarted store still knows both the dropped count and the high-water mark.
TEST_F(ErrorStoreTest, DeviceRecordOnlyWhenDroppedEventsRise) {
  OpenRocks();
  ASSERT_EQ(Upload(kDevA, kContoso, Batch(1, 3))->stored(), 3u);
  ASSERT_EQ(Upload(kDevA, kContoso, Batch(4, 3))->stored(), 3u);
  EXPECT_EQ(Count(store_.get(), kDevices), 0u);
  EXPECT_EQ(Count(store_.get(), kByTenant), 2u);
  EXPECT_EQ(Count(store_.get(), kByDevice), 2u);
  EXPECT_EQ(Count(store_.get(), kByIssue), 2u);
  v1::UploadErrorsRequest r = Batch(7, 1);
  r.set_dropped_events(4);
  ASSERT_EQ(Upload(kDevA, kContoso, r)->stored(), 1u);
  EXPECT_EQ(Count(store_.get(), kDevices), 1u);
  r = Batch(8, 1);
  r.set_dropped_events(4);  // unchanged: no new record
  ASSERT_EQ(Upload(kDevA, kContoso, r)->stored(), 1u);
  // Restart: a resend of 5..9 is 4 duplicates (from the last index key, 8)
  // and one new event; a lower dropped count does not lower the record.
  writer_->Stop();
  errors_.reset();
  writer_ = std::make_unique<store::GroupCommitWriter>(store_.get());
  errors_ = std::make_unique<ErrorStore>(store_.get(), writer_.get(), &clock_);
  r = Batch(5, 5);
  r.set_dropped_events(2);
  auto again = Upload(kDevA, kContoso, r);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->duplicates(), 4u);
  EXPECT_EQ(again->stored(), 1u);
  EXPECT_EQ(*errors_->DroppedEvents(kDevA), 4u);
  EXPECT_EQ(All(kContoso, kDevA).size(), 9u);
  // A fresh device after the restart: no index key, no record, all new.
  ASSERT_EQ(Upload(kDevB, kContoso, Batch(1, 2))->stored(), 2u);
}

TEST_F(ErrorStoreTest, RetentionDropsOldEventsOnly) {
  OpenRocks();
  ASSERT_TRUE(Upload(kDevA, kContoso, Batch(1, 20)).ok());   // day 0
  ASSERT_TRUE(Upload(kDevB, kFabrikam, Batch(1, 10)).ok());  // day 0
  clock_.Advance(absl::Hours(24 * 10));
  ASSERT_TRUE(Upload(kDevA, kContoso, Batch(21, 5)).ok());  // day 10
  ASSERT_TRUE(Upload(kDevC, kFabrikam, Batch(1, 3)).ok());  // day 10
  clock_.Advance(absl::Hours(24 * 4) + absl::Minutes(1));   // day 14+
  // Queries hide expired reports before any sweep.
  EXPECT_EQ(All(kContoso).size(), 5u);
  EXPECT_EQ(All(kFabrikam).size(), 3u);
  auto swept = errors_->SweepExpired();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(*swept, 30);
  EXPECT_EQ(Count(store_.get(), kByTenant), 2u);  // two young batches
  EXPECT_EQ(Count(store_.get(), kByDevice), 2u);
  EXPECT_EQ(Count(store_.get(), kByIssue), 2u);
  std::vector<v1::ErrorReport> left = All(kContoso);
  ASSERT_EQ(left.size(), 5u);
  EXPECT_EQ(left[0].event().sequence(), 21u);
  EXPECT_TRUE(
      store_
          ->Get(kByDevice, DeviceIndexKey(kDevA, 20))
          .status()
          .code() == absl::StatusCode::kNotFound);
  // Nothing more to sweep; the young ones expire in their turn.
  EXPECT_EQ(*errors_->SweepExpired(), 0);
  clock_.Advance(absl::Hours(24 * 11));
  EXPECT_EQ(*errors_->SweepExpired(), 8);
  for (const std::string& cf : ColumnFamilies()) {
    if (cf != kDevices) {
      EXPECT_EQ(Count(store_.get(), cf.c_str()), 0u) << cf;
    }
  }
}

TEST_F(ErrorStoreTest, RetriesAndGapsAreResolvedExactly) {
  ASSERT_EQ(Upload(kDevA, kContoso, Batch(1, 5))->stored(), 5u);
  ASSERT_EQ(Upload(kDevA, kContoso, Batch(10, 6))->stored(), 6u);  // 10..15
  // 6..9 fall between the stored batches, 16..17 after them; 10..15 are
  // duplicates: two new batch values, nothing stored twice.
  auto r = Upload(kDevA, kContoso, Batch(6, 12));  // 6..17
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stored(), 6u);
  EXPECT_EQ(r->duplicates(), 6u);
  EXPECT_EQ(Count(store_.get(), kByTenant), 4u);
  std::vector<uint64_t> seqs;
  for (const auto& rep : All(kContoso, kDevA)) {
    seqs.push_back(rep.event().sequence());
  }
  std::vector<uint64_t> want;
  for (uint64_t s = 1; s <= 17; ++s) want.push_back(s);
  EXPECT_EQ(seqs, want);
  EXPECT_EQ(All(kContoso).size(), 17u);
}

TEST_F(ErrorStoreTest, Attack_SequenceInsideAStoredBatchRefusedNothingChanged) {
  v1::UploadErrorsRequest gappy;
  *gappy.add_events() = Crash(1);
  *gappy.add_events() = Crash(3);
  ASSERT_EQ(Upload(kDevA, kContoso, gappy)->stored(), 2u);
  const size_t batches = Count(store_.get(), kByTenant);
  auto r = Upload(kDevA, kContoso, Batch(2, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("lies inside an already stored batch"),
            std::string::npos)
      << r.status();
  EXPECT_EQ(Count(store_.get(), kByTenant), batches);
  EXPECT_EQ(All(kContoso).size(), 2u);
}

TEST_F(ErrorStoreTest, Fault_ReadFailureOnTheWorkerRefusesAndStoresNothing) {
  // Without the filter of devices with stored batches, so the device's
  // first upload reads (and the startup scan takes no failure).
  auto m = store::MemoryStore::Create(ColumnFamilies());
  ASSERT_TRUE(m.ok());
  memory_ = m->get();
  ErrorStoreOptions no_filter;
  no_filter.filter_stored_devices = false;
  Use(std::move(*m), no_filter);
  memory_->FailNextReads(1, absl::UnavailableError("disk gone"));
  auto r = Upload(kDevA, kContoso, Batch(1, 5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  ExpectNothingStored();
  auto retry = Upload(kDevA, kContoso, Batch(1, 5));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->stored(), 5u);
}

TEST_F(ErrorStoreTest, HighWaterMarkSurvivesARestart) {
  OpenRocks();
  ASSERT_EQ(Upload(kDevA, kContoso, Batch(1, 10))->stored(), 10u);
  // A new ErrorStore over the same data (the shard restarted): the retry is
  // recognised from the stored record, not from memory.
  writer_->Stop();
  errors_.reset();
  writer_ = std::make_unique<store::GroupCommitWriter>(store_.get());
  errors_ = std::make_unique<ErrorStore>(store_.get(), writer_.get(), &clock_);
  auto again = Upload(kDevA, kContoso, Batch(5, 10));  // 5..14
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->duplicates(), 6u);
  EXPECT_EQ(again->stored(), 4u);
  EXPECT_EQ(All(kContoso).size(), 14u);
}

// ReadCountingStore: a MemoryStore counting the worker's per-device reads:
// a device's errors_by_device keys (LastKey, the overlap scan: a Scan with
// the device as prefix) and its error_devices record.
class ReadCountingStore : public store::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  int device_reads() const { return device_reads_.load(); }

 protected:
  void BeforeScan(absl::string_view cf, absl::string_view prefix) override {
    if (cf == kByDevice && !prefix.empty()) ++device_reads_;
  }
  void BeforeGet(absl::string_view cf, absl::string_view) override {
    if (cf == kDevices) ++device_reads_;
  }

 private:
  std::atomic<int> device_reads_{0};
};

std::unique_ptr<ReadCountingStore> NewReadCountingStore() {
  auto m = store::MemoryStore::Create(ColumnFamilies());
  EXPECT_TRUE(m.ok());
  return std::make_unique<ReadCountingStore>(std::move(*m));
}

// A device's first upload ever (every device of a new fleet): the filter of
// devices with stored batches shows nothing of it is stored, so its mark is
// known without a read; its resend is still found a duplicate.
TEST_F(ErrorStoreTest, FirstUploadOfANewDeviceReadsNothing) {
  auto counting = NewReadCountingStore();
  ReadCountingStore* reads = counting.get();
  Use(std::move(counting));
  ASSERT_TRUE(errors_->AwaitDeviceFilter());
  auto first = Upload(kDevA, kContoso, Batch(1, 3));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->stored(), 3u);
  EXPECT_EQ(reads->device_reads(), 0);
  auto next = Upload(kDevA, kContoso, Batch(4, 2));  // above the mark
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->stored(), 2u);
  EXPECT_EQ(reads->device_reads(), 0);
  // The resend (sequences at or below the mark) reads the stored batches.
  auto resend = Upload(kDevA, kContoso, Batch(1, 3));
  ASSERT_TRUE(resend.ok()) << resend.status();
  EXPECT_EQ(resend->stored(), 0u);
  EXPECT_EQ(resend->duplicates(), 3u);
  EXPECT_GT(reads->device_reads(), 0);
  EXPECT_EQ(All(kContoso).size(), 5u);
  EXPECT_EQ(Count(store_.get(), kByTenant), 2u);
}

// A new device reporting dropped events: the filter spares the read of its
// last index key, not that of its record (a record may exist without any
// batch: written when only the dropped count rose).
TEST_F(ErrorStoreTest, NewDeviceReportingDroppedEventsReadsOnlyItsRecord) {
  auto counting = NewReadCountingStore();
  ReadCountingStore* reads = counting.get();
  Use(std::move(counting));
  ASSERT_TRUE(errors_->AwaitDeviceFilter());
  v1::UploadErrorsRequest req = Batch(1, 2);
  req.set_dropped_events(7);
  auto r = Upload(kDevA, kContoso, req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stored(), 2u);
  EXPECT_EQ(reads->device_reads(), 1);  // error_devices only
  auto dropped = errors_->DroppedEvents(kDevA);
  ASSERT_TRUE(dropped.ok()) << dropped.status();
  EXPECT_EQ(*dropped, 7u);
  EXPECT_EQ(All(kContoso, kDevA).size(), 2u);
}

// A restarted ErrorStore fills its filter from errors_by_device's keys (in
// groups of 4,096 devices): every device stored before the restart is
// "maybe" (its resend is read and found a duplicate, never stored twice),
// while a device with nothing stored still reads nothing.
TEST_F(ErrorStoreTest,
       RestartedStoreKnowsEveryStoredDeviceResendsAreDuplicates) {
  auto counting = NewReadCountingStore();
  ReadCountingStore* reads = counting.get();
  Use(std::move(counting));
  ASSERT_EQ(Upload(kDevA, kContoso, Batch(1, 10))->stored(), 10u);
  writer_->Stop();
  errors_.reset();
  // What a previous run stored for 5,000 more devices: one event each,
  // sequence 1 (the layout Build writes).
  constexpr int kDevices = 5000;
  auto device = [](int i) { return absl::StrFormat("%064x", i + 1); };
  const int64_t ms = absl::ToUnixMillis(clock_.Now());
  const v1::UploadErrorsRequest one = Batch(1, 1);
  store::WriteBatch raw;
  for (int i = 0; i < kDevices; ++i) {
    raw.Put(kByTenant, BatchKey(kContoso, ms, device(i), 1),
            one.SerializeAsString());
    raw.Put(kByDevice, DeviceIndexKey(device(i), 1),
            absl::StrCat("1,", ms, ",", kContoso));
  }
  ASSERT_TRUE(store_->Write(raw).ok());
  writer_ = std::make_unique<store::GroupCommitWriter>(store_.get());
  errors_ = std::make_unique<ErrorStore>(store_.get(), writer_.get(), &clock_);
  ASSERT_TRUE(errors_->AwaitDeviceFilter());

  auto again = Upload(kDevA, kContoso, Batch(5, 10));  // 5..14
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->duplicates(), 6u);
  EXPECT_EQ(again->stored(), 4u);
  for (int i = 0; i < kDevices; ++i) {
    auto r = Upload(device(i), kContoso, one);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->duplicates(), 1u) << device(i);
    ASSERT_EQ(r->stored(), 0u) << device(i);
  }
  const int before = reads->device_reads();
  EXPECT_GE(before, kDevices);
  auto fresh = Upload(kDevB, kContoso, Batch(1, 2));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->stored(), 2u);
  EXPECT_EQ(reads->device_reads(), before);
  EXPECT_EQ(Count(store_.get(), kByDevice), size_t{kDevices} + 3);
}

// With the filter off, or saturated (its memory bound reached), or after
// its startup scan failed, every device not in memory is read on the
// worker, as before the filter: stored once, resends duplicates.
TEST_F(ErrorStoreTest, WithoutAFilterEveryColdDeviceIsRead) {
  struct Case {
    const char* name;
    bool filter;
    size_t max_bytes;
    bool fail_scan;
  };
  for (const Case& c : {Case{"off", false, size_t{64} << 20, false},
                        Case{"saturated", true, 16, false},
                        Case{"scan failed", true, size_t{64} << 20, true}}) {
    SCOPED_TRACE(c.name);
    auto counting = NewReadCountingStore();
    ReadCountingStore* reads = counting.get();
    if (c.fail_scan) {
      counting->inner()->FailNextReads(1, absl::UnavailableError("disk gone"));
    }
    ErrorStoreOptions o;
    o.filter_stored_devices = c.filter;
    o.stored_devices_filter_max_bytes = c.max_bytes;
    Use(std::move(counting), o);
    EXPECT_EQ(errors_->AwaitDeviceFilter(), c.filter && !c.fail_scan);
    auto first = Upload(kDevA, kContoso, Batch(1, 3));
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(first->stored(), 3u);
    EXPECT_EQ(reads->device_reads(), 1);  // its last index key
    auto resend = Upload(kDevA, kContoso, Batch(1, 3));
    ASSERT_TRUE(resend.ok()) << resend.status();
    EXPECT_EQ(resend->duplicates(), 3u);
    EXPECT_EQ(Count(store_.get(), kByTenant), 1u);
  }
}

// Several group-commit writers (the plug-in runs two): every device's
// batches go to one writer, so concurrent uploads of many devices are all
// stored once, resends are duplicates, and the high-water marks are right
// after a restart.
TEST_F(ErrorStoreTest, SeveralWritersStoreEveryDeviceOnceAndInOrder) {
  OpenRocks();
  writer_->Stop();
  errors_.reset();
  store::GroupCommitWriter a(store_.get()), b(store_.get()), c(store_.get());
  errors_ = std::make_unique<ErrorStore>(
      store_.get(), std::vector<store::GroupCommitWriter*>{&a, &b, &c},
      &clock_);
  constexpr int kSenders = 12, kBatches = 5, kEvents = 16;
  std::vector<std::string> devices;
  for (int d = 0; d < kSenders; ++d) {
    devices.push_back(std::string(63, 'a') + "0123456789ab"[d]);
  }
  std::vector<std::thread> threads;
  std::atomic<int> stored{0}, duplicates{0}, failed{0};
  for (int d = 0; d < kSenders; ++d) {
    threads.emplace_back([&, d] {
      for (int k = 0; k < kBatches; ++k) {
        const v1::UploadErrorsRequest req = Batch(1 + k * kEvents, kEvents);
        for (int attempt = 0; attempt < 2; ++attempt) {  // every batch resent
          auto r = Upload(devices[d], kContoso, req);
          if (!r.ok()) {
            ++failed;
            continue;
          }
          stored += r->stored();
          duplicates += r->duplicates();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(stored.load(), kSenders * kBatches * kEvents);
  EXPECT_EQ(duplicates.load(), kSenders * kBatches * kEvents);
  EXPECT_EQ(All(kContoso).size(), size_t{kSenders * kBatches * kEvents});
  EXPECT_EQ(Count(store_.get(), kByDevice), size_t{kSenders * kBatches});
  // No device record: none of them reported dropped events.
  EXPECT_EQ(Count(store_.get(), kDevices), 0u);
  EXPECT_GT(a.batches_written() + b.batches_written() + c.batches_written(),
            0u);
  // Restart with one writer: each device's record holds its last sequence.
  a.Stop();
  b.Stop();
  c.Stop();
  errors_.reset();
  writer_ = std::make_unique<store::GroupCommitWriter>(store_.get());
  errors_ = std::make_unique<ErrorStore>(store_.get(), writer_.get(), &clock_);
  for (const std::string& device : devices) {
    auto r = Upload(device, kContoso, Batch(kBatches * kEvents - 1, 3));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->duplicates(), 2u) << device;
    EXPECT_EQ(r->stored(), 1u) << device;
  }
}

// GatedStore: a MemoryStore whose writes wait until the test opens the gate
// (so batches stay in the group-commit queue while the test looks). With
// GateReads, reads wait for the gate too (so the ingest worker stays on its
// first job and the jobs behind it stay queued); reading() is notified when
// the first read is waiting.
class GatedStore : public store::Store {
 public:
  explicit GatedStore(std::unique_ptr<store::Store> inner)
      : inner_(std::move(inner)) {}
  void Open() {
    absl::MutexLock l(&mu_);
    open_ = true;
  }
  void GateReads() {
    absl::MutexLock l(&mu_);
    gate_reads_ = true;
  }
  absl::Notification& reading() { return reading_; }
  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override {
    WaitIfReadsGated();
    return inner_->Get(cf, key);
  }
  absl::Status Scan(
      absl::string_view cf, absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn,
      absl::string_view start) override {
    WaitIfReadsGated();
    return inner_->Scan(cf, prefix, fn, start);
  }
  absl::StatusOr<std::string> LastKey(absl::string_view cf,
                                      absl::string_view prefix) override {
    WaitIfReadsGated();
    return inner_->LastKey(cf, prefix);
  }
  std::unique_ptr<store::Snapshot> NewSnapshot() override {
    return inner_->NewSnapshot();
  }
  absl::Status Write(const store::WriteBatch& batch) override {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(&open_));
    return inner_->Write(batch);
  }

 private:
  void WaitIfReadsGated() {
    absl::MutexLock l(&mu_);
    if (!gate_reads_) return;
    if (!reading_.HasBeenNotified()) reading_.Notify();
    mu_.Await(absl::Condition(&open_));
  }

  std::unique_ptr<store::Store> inner_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  bool gate_reads_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification reading_;
};

TEST_F(ErrorStoreTest, Attack_OneDeviceFloodsOthersStillAcknowledged) {
  auto m = store::MemoryStore::Create(ColumnFamilies());
  ASSERT_TRUE(m.ok());
  auto gated = std::make_unique<GatedStore>(std::move(*m));
  GatedStore* gate = gated.get();
  ErrorStoreOptions quota;
  quota.device_events_per_second = 100;
  quota.device_event_burst = 2500;  // two full batches at once, not three
  quota.max_in_flight_per_device = 2;
  Use(std::move(gated), quota);

  struct Answer {
    absl::Notification done;
    absl::StatusOr<v1::UploadErrorsResponse> result;
  };
  auto send = [&](const std::string& device,
                  const v1::UploadErrorsRequest& req) {
    auto a = std::make_shared<Answer>();
    errors_->Ingest(device, kContoso, req,
                    [a](absl::StatusOr<v1::UploadErrorsResponse> r) {
                      a->result = std::move(r);
                      a->done.Notify();
                    });
    return a;
  };
  // The flood: device A's first two 1000-event batches fill its share of the
  // write queue (the writes are held back by the gate) ...
  std::vector<v1::UploadErrorsRequest> flood;
  for (int i = 0; i < 4; ++i) flood.push_back(Batch(1 + 1000 * i, 1000));
  auto a1 = send(kDevA, flood[0]);
  auto a2 = send(kDevA, flood[1]);
  // ... so its third is refused at once, although tokens remain ...
  auto a3 = send(kDevA, flood[2]);
  ASSERT_TRUE(a3->done.HasBeenNotified());
  EXPECT_EQ(a3->result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(a3->result.status().message().find("uploads being written"),
            std::string::npos)
      << a3->result.status();
  // ... while device B's batch is queued and will be acknowledged.
  const v1::UploadErrorsRequest b_first = Batch(1, 10);
  const v1::UploadErrorsRequest b_second = Batch(11, 10);
  auto b1 = send(kDevB, b_first);
  EXPECT_FALSE(b1->done.HasBeenNotified());
  gate->Open();
  for (auto* a : {a1.get(), a2.get(), b1.get()}) {
    a->done.WaitForNotification();
    ASSERT_TRUE(a->result.ok()) << a->result.status();
  }
  EXPECT_EQ(b1->result->stored(), 10u);
  // The token bucket: 2000 of 2500 events spent (the batch refused above
  // took none); the next full batch is
  // refused (RESOURCE_EXHAUSTED naming the quota) with the clock standing
  // still, and device B still gets through.
  auto a4 = send(kDevA, flood[2]);
  a4->done.WaitForNotification();
  EXPECT_EQ(a4->result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(a4->result.status().message().find("events/s"), std::string::npos)
      << a4->result.status();
  auto b2 = send(kDevB, b_second);
  b2->done.WaitForNotification();
  ASSERT_TRUE(b2->result.ok()) << b2->result.status();
  // Nothing of the refused batches was stored: device A has exactly its two
  // acknowledged batches.
  std::vector<v1::ErrorReport> a_reports = All(kContoso, kDevA);
  ASSERT_EQ(a_reports.size(), 2000u);
  EXPECT_EQ(a_reports.back().event().sequence(), 2000u);
  EXPECT_EQ(All(kContoso, kDevB).size(), 20u);
  // Once the bucket refills, the device is served again.
  clock_.Advance(absl::Seconds(10));
  auto a5 = send(kDevA, flood[2]);
  a5->done.WaitForNotification();
  ASSERT_TRUE(a5->result.ok()) << a5->result.status();
  EXPECT_EQ(a5->result->stored(), 1000u);
}

// The shard's ingest worker queue (8,192 uploads waiting for a device-state
// read) is shared by every caller. One gateway sending cold devices' uploads
// faster than the worker reads fills only its share (half the queue): its
// next upload is refused with RESOURCE_EXHAUSTED at once and stores nothing,
// while another gateway and a device uploading for itself are still queued
// and acknowledged. Deterministic: the worker is held inside its first read
// (no timing).
TEST_F(ErrorStoreTest, Attack_OneGatewayFillingTheIngestQueueOthersServed) {
  auto m = store::MemoryStore::Create(ColumnFamilies());
  ASSERT_TRUE(m.ok());
  auto gated = std::make_unique<GatedStore>(std::move(*m));
  GatedStore* gate = gated.get();
  gate->GateReads();
  ErrorStoreOptions o;  // the shard's defaults: 8,192 slots, 4,096 a caller
  ASSERT_EQ(o.max_worker_queue, 8192u);
  // Devices that may have stored batches (here: all, the filter off) are
  // read on the worker; with the filter, a new fleet's devices skip it.
  o.filter_stored_devices = false;
  Use(std::move(gated), o);
  const size_t share = o.max_worker_queue / 2;

  struct Answer {
    absl::Notification done;
    absl::StatusOr<v1::UploadErrorsResponse> result;
  };
  auto device = [](int i) { return absl::StrFormat("%064x", i); };
  const v1::UploadErrorsRequest upload = Batch(1, 1);
  auto send = [&](const std::string& dev, absl::string_view caller) {
    auto a = std::make_shared<Answer>();
    errors_->Ingest(
        dev, kContoso, upload,
        [a](absl::StatusOr<v1::UploadErrorsResponse> r) {
          a->result = std::move(r);
          a->done.Notify();
        },
        caller);
    return a;
  };
  // Gateway A's first upload: the worker takes it and waits in its read.
  std::vector<std::shared_ptr<Answer>> a_answers;
  a_answers.push_back(send(device(0), "gateway:A"));
  gate->reading().WaitForNotification();
  // A fills its share of the queue behind it ...
  for (size_t i = 1; i <= share; ++i) {
    a_answers.push_back(send(device(static_cast<int>(i)), "gateway:A"));
  }
  for (const auto& a : a_answers) ASSERT_FALSE(a->done.HasBeenNotified());
  // ... and its next upload is refused at once, naming the caller's share.
  const std::string refused_device = device(100000);
  auto refused = send(refused_device, "gateway:A");
  ASSERT_TRUE(refused->done.HasBeenNotified());
  EXPECT_EQ(refused->result.status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused->result.status().message().find("this caller already"),
            std::string::npos)
      << refused->result.status();
  // Gateway B and a device uploading for itself are still queued.
  auto b = send(device(200000), "gateway:B");
  auto own = send(device(200001), "");
  EXPECT_FALSE(b->done.HasBeenNotified());
  EXPECT_FALSE(own->done.HasBeenNotified());

  gate->Open();
  for (const auto& a : a_answers) {
    a->done.WaitForNotification();
    ASSERT_TRUE(a->result.ok()) << a->result.status();
    EXPECT_EQ(a->result->stored(), 1u);
  }
  for (auto* a : {b.get(), own.get()}) {
    a->done.WaitForNotification();
    ASSERT_TRUE(a->result.ok()) << a->result.status();
    EXPECT_EQ(a->result->stored(), 1u);
  }
  // Nothing of the refused upload was stored; everything acknowledged was.
  EXPECT_TRUE(All(kContoso, refused_device).empty());
  EXPECT_EQ(All(kContoso).size(), share + 1 + 2);
  EXPECT_EQ(Count(store_.get(), kByTenant), share + 1 + 2);
  // The share comes back once A's uploads are answered.
  auto retry = send(refused_device, "gateway:A");
  retry->done.WaitForNotification();
  ASSERT_TRUE(retry->result.ok()) << retry->result.status();
  EXPECT_EQ(retry->result->stored(), 1u);
}

// A store stop 22's ErrorStore wrote (format 1: printable keys in
// errors_by_tenant, errors_by_device and errors_by_issue, opened with that
// version's column families only), reopened by this version: MigrateFormat1
// moves every key to format 2, and queries, issues, the duplicate check,
// the dropped count and retention work on what the old format wrote.
TEST(ErrorStoreFormatTest, OpensAndMigratesAStoreFormat1Wrote) {
  const std::string dir =
      absl::StrCat(std::getenv("TEST_TMPDIR"), "/format1_store");
  FakeClock clock;
  const int64_t ms = absl::ToUnixMillis(clock.Now());
  {
    auto old = store::OpenRocksStore(
        dir, {kByDeviceV1, kByTenantV1, kByIssueV1, kDevices});
    ASSERT_TRUE(old.ok()) << old.status();
    store::WriteBatch b;
    // Exactly what format 1's Build wrote for one batch of `n` crashes
    // (dw100-app 1.0, APP_CRASH = 1, exit code 3).
    auto put = [&](const std::string& device, const char* tenant,
                   uint64_t first, int n) {
      v1::UploadErrorsRequest events = Batch(first, n);
      const std::string first20 = absl::StrFormat("%020d", first);
      b.Put(kByTenantV1,
            absl::StrCat(tenant, "/", absl::StrFormat("%013d", ms), "/", device,
                         "/", first20),
            events.SerializeAsString());
      b.Put(kByDeviceV1,
            absl::StrCat(device, "/", absl::StrFormat("%020d", first + n - 1)),
            absl::StrCat(first, ",", ms, ",", tenant));
      b.Put(kByIssueV1,
            absl::StrCat(tenant, "/dw100-app/1.0/001/2147483651/", device, "/",
                         first20),
            absl::StrCat(ms, ",", n));
    };
    put(kDevA, kContoso, 1, 3);
    put(kDevA, kContoso, 4, 2);
    put(kDevB, kFabrikam, 1, 2);
    b.Put(kDevices, kDevA, "7,5");
    ASSERT_TRUE((*old)->Write(b).ok());
  }
  auto s = store::OpenRocksStore(dir, ColumnFamilies());
  ASSERT_TRUE(s.ok()) << s.status();
  store::Store* db = s->get();
  absl::StatusOr<int64_t> moved = MigrateFormat1(db);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(*moved, 9);
  EXPECT_EQ(*MigrateFormat1(db), 0);  // nothing left: a restart moves nothing
  for (const char* cf : {kByTenantV1, kByDeviceV1, kByIssueV1}) {
    EXPECT_EQ(Count(db, cf), 0u) << cf;
  }
  EXPECT_EQ(Count(db, kByTenant), 3u);
  EXPECT_EQ(Count(db, kByDevice), 3u);
  EXPECT_EQ(Count(db, kByIssue), 3u);
  EXPECT_TRUE(db->Get(kByTenant, BatchKey(kContoso, ms, kDevA, 4)).ok());
  EXPECT_EQ(*db->Get(kByDevice, DeviceIndexKey(kDevA, 5)),
            absl::StrCat(4, ",", ms, ",", kContoso));
  EXPECT_TRUE(
      db->Get(kByIssue, IssueKey(kFabrikam, "dw100-app", "1.0", 1, 3, kDevB, 1))
          .ok());

  store::GroupCommitWriter writer(db);
  {
    ErrorStore errors(db, &writer, &clock);
    v1::QueryErrorsRequest q;
    q.set_tenant_id(kContoso);
    q.set_page_size(2);  // pages through the migrated batches
    std::vector<uint64_t> seqs;
    for (;;) {
      auto r = errors.Query(q);
      ASSERT_TRUE(r.ok()) << r.status();
      for (const auto& rep : r->reports()) {
        EXPECT_EQ(rep.device_id(), kDevA);
        EXPECT_EQ(rep.received_unix_ms(), ms);
        seqs.push_back(rep.event().sequence());
      }
      if (r->next_page_token().empty()) break;
      q.set_page_token(r->next_page_token());
    }
    EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
    q.Clear();
    q.set_tenant_id(kFabrikam);
    q.set_device_id(kDevB);
    auto by_device = errors.Query(q);
    ASSERT_TRUE(by_device.ok()) << by_device.status();
    EXPECT_EQ(by_device->reports_size(), 2);

    v1::ListIssuesRequest li;
    li.set_tenant_id(kContoso);
    auto issues = errors.ListIssues(li);
    ASSERT_TRUE(issues.ok()) << issues.status();
    ASSERT_EQ(issues->issues_size(), 1);
    EXPECT_EQ(issues->issues(0).event_count(), 5u);
    EXPECT_EQ(issues->issues(0).device_count(), 1u);
    EXPECT_EQ(issues->issues(0).exit_code(), 3);

    // A fresh ErrorStore knows nothing in memory: the resend of 4..5 is
    // recognised from the migrated index, 6..7 are new.
    auto again = IngestAndWait(&errors, kDevA, kContoso, Batch(4, 4));
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->duplicates(), 2u);
    EXPECT_EQ(again->stored(), 2u);
    EXPECT_EQ(*errors.DroppedEvents(kDevA), 7u);

    clock.Advance(kRetention + absl::Minutes(1));
    EXPECT_EQ(*errors.SweepExpired(), 9);
    for (const char* cf : {kByTenant, kByDevice, kByIssue}) {
      EXPECT_EQ(Count(db, cf), 0u) << cf;
    }
    writer.Stop();
  }
}

TEST(ErrorStoreFormatTest, Fault_CorruptFormat1KeyStopsTheMigrationNothingMoved) {
  auto m = store::MemoryStore::Create(ColumnFamilies());
  ASSERT_TRUE(m.ok());
  store::Store* db = m->get();
  store::WriteBatch b;
  b.Put(kByTenantV1,
        absl::StrCat(kContoso, "/0001767225600000/", kDevA,
                     "/00000000000000000001"),
        Batch(1, 1).SerializeAsString());
  b.Put(kByTenantV1, absl::StrCat(kContoso, "/not-a-time/", kDevA, "/1"), "x");
  b.Put(kByDeviceV1, absl::StrCat(kDevA, "/00000000000000000001"),
        absl::StrCat("1,1767225600000,", kContoso));
  ASSERT_TRUE(db->Write(b).ok());
  absl::StatusOr<int64_t> moved = MigrateFormat1(db);
  EXPECT_EQ(moved.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Count(db, kByTenantV1), 2u);
  EXPECT_EQ(Count(db, kByDeviceV1), 1u);
  EXPECT_EQ(Count(db, kByTenant), 0u);
  EXPECT_EQ(Count(db, kByDevice), 0u);
}

}  // namespace
}  // namespace sphere::errors
