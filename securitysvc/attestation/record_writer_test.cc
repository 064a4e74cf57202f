#include "securitysvc/attestation/record_writer.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/store/group_commit.h"
#include "common/store/memory_store.h"
#include "gtest/gtest.h"

namespace sphere::attestation {
namespace {

// GatedStore: a MemoryStore whose first Write waits until the test opens the
// gate, so the test can queue batches behind it deterministically.
class GatedStore : public store::Store {
 public:
  explicit GatedStore(std::unique_ptr<store::MemoryStore> inner)
      : inner_(std::move(inner)) {}
  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override {
    return inner_->Get(cf, key);
  }
  absl::Status Scan(
      absl::string_view cf, absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn,
      absl::string_view start) override {
    return inner_->Scan(cf, prefix, fn, start);
  }
  std::unique_ptr<store::Snapshot> NewSnapshot() override {
    return inner_->NewSnapshot();
  }
  absl::Status Write(const store::WriteBatch& batch) override {
    bool first = false;
    {
      absl::MutexLock l(&mu_);
      first = writes_++ == 0;
      ops_per_write_.push_back(batch.ops().size());
    }
    if (first) {
      entered_.Notify();
      gate_.WaitForNotification();
    }
    return inner_->Write(batch);
  }
  void WaitEntered() { entered_.WaitForNotification(); }
  void Open() { gate_.Notify(); }
  std::vector<size_t> ops_per_write() {
    absl::MutexLock l(&mu_);
    return ops_per_write_;
  }
  store::MemoryStore& inner() { return *inner_; }

 private:
  std::unique_ptr<store::MemoryStore> inner_;
  absl::Notification entered_, gate_;
  absl::Mutex mu_;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<size_t> ops_per_write_ ABSL_GUARDED_BY(mu_);
};

// Results collects every `done` call.
class Results {
 public:
  RecordWriter::Done Callback(int i) {
    return [this, i](absl::Status s) {
      absl::MutexLock l(&mu_);
      statuses_[i] = std::move(s);
      ++count_;
    };
  }
  void Expect(int n) {
    absl::MutexLock l(&mu_);
    statuses_.resize(std::max<size_t>(statuses_.size(), n));
  }
  void WaitFor(int n) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]()
                      ABSL_SHARED_LOCKS_REQUIRED(mu_) { return count_ >= n; };
    mu_.Await(absl::Condition(&enough));
  }
  absl::Status status(int i) {
    absl::MutexLock l(&mu_);
    return statuses_[i];
  }
  int count() {
    absl::MutexLock l(&mu_);
    return count_;
  }

 private:
  absl::Mutex mu_;
  std::vector<absl::Status> statuses_ ABSL_GUARDED_BY(mu_);
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

std::unique_ptr<GatedStore> NewGatedStore() {
  return std::make_unique<GatedStore>(
      *store::MemoryStore::Create({"devices", "history"}));
}

store::WriteBatch Record(int i) {
  store::WriteBatch b;
  b.Put("devices", absl::StrCat("dev-", i), absl::StrCat("record-", i));
  b.Put("history", absl::StrCat("dev-", i, "|1"), absl::StrCat("record-", i));
  return b;
}

store::GroupCommitOptions Options() {
  store::GroupCommitOptions o;
  o.name = "attestation-test";
  return o;
}

TEST(GroupCommitRecordWriterTest, RecordsQueuedDuringASyncShareOneStoreWrite) {
  auto store = NewGatedStore();
  store::GroupCommitWriter group(store.get(), Options());
  GroupCommitRecordWriter writer(&group);
  constexpr int kBatches = 100;
  Results results;
  results.Expect(kBatches);
  writer.Write(Record(0), results.Callback(0));
  store->WaitEntered();  // the writer is inside the first store write
  for (int i = 1; i < kBatches; ++i)
    writer.Write(Record(i), results.Callback(i));
  EXPECT_EQ(results.count(), 0);  // nothing acknowledged before it is durable
  store->Open();
  results.WaitFor(kBatches);
  for (int i = 0; i < kBatches; ++i) {
    EXPECT_TRUE(results.status(i).ok()) << i << ": " << results.status(i);
    EXPECT_EQ(*store->Get("devices", absl::StrCat("dev-", i)),
              absl::StrCat("record-", i));
  }
  // One write for the first record, one for the 99 queued behind it.
  EXPECT_EQ(store->ops_per_write(), (std::vector<size_t>{2, 2 * 99}));
}

TEST(GroupCommitRecordWriterTest, Fault_RefusedRecordIsAnsweredAtOnce) {
  auto store = NewGatedStore();
  store::GroupCommitOptions o = Options();
  o.max_queued_batches = 2;
  store::GroupCommitWriter group(store.get(), o);
  GroupCommitRecordWriter writer(&group);
  Results results;
  results.Expect(4);
  writer.Write(Record(0), results.Callback(0));
  store->WaitEntered();  // record 0 left the queue
  writer.Write(Record(1), results.Callback(1));
  writer.Write(Record(2), results.Callback(2));
  writer.Write(Record(3), results.Callback(3));  // queue full: refused now
  EXPECT_EQ(results.count(), 1);
  EXPECT_FALSE(results.status(3).ok());
  EXPECT_EQ(results.status(3).code(), absl::StatusCode::kResourceExhausted)
      << results.status(3);
  store->Open();
  results.WaitFor(4);
  for (int i = 0; i <= 2; ++i) EXPECT_TRUE(results.status(i).ok()) << i;
  EXPECT_TRUE(absl::IsNotFound(store->Get("devices", "dev-3").status()));
}

TEST(GroupCommitRecordWriterTest,
     Fault_StoreFailureIsReportedAndNothingApplied) {
  auto mem = *store::MemoryStore::Create({"devices", "history"});
  mem->FailNextWrites(1000, absl::UnavailableError("disk gone"));
  store::GroupCommitWriter group(mem.get(), Options());
  GroupCommitRecordWriter writer(&group);
  Results results;
  results.Expect(20);
  for (int i = 0; i < 20; ++i) writer.Write(Record(i), results.Callback(i));
  results.WaitFor(20);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(results.status(i).code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(results.status(i).message().find("disk gone"), std::string::npos);
  }
  EXPECT_EQ(mem->Size("devices"), 0u);
  EXPECT_EQ(mem->Size("history"), 0u);
}

TEST(GroupCommitRecordWriterTest, Fault_AfterStopRecordsAreRefused) {
  auto mem = *store::MemoryStore::Create({"devices", "history"});
  store::GroupCommitWriter group(mem.get(), Options());
  GroupCommitRecordWriter writer(&group);
  Results results;
  results.Expect(2);
  writer.Write(Record(0), results.Callback(0));
  group.Stop();  // writes what is queued first
  EXPECT_EQ(results.count(), 1);
  EXPECT_TRUE(results.status(0).ok());
  writer.Write(Record(1), results.Callback(1));
  EXPECT_EQ(results.count(), 2);
  EXPECT_EQ(results.status(1).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::IsNotFound(mem->Get("devices", "dev-1").status()));
}

TEST(DirectRecordWriterTest, WritesBeforeReturning) {
  auto mem = *store::MemoryStore::Create({"devices", "history"});
  DirectRecordWriter writer(mem.get());
  absl::Status got = absl::UnknownError("not called");
  writer.Write(Record(1), [&](absl::Status s) { got = s; });
  EXPECT_TRUE(got.ok());
  EXPECT_TRUE(mem->Get("devices", "dev-1").ok());
}

}  // namespace
}  // namespace sphere::attestation
