#include "securitysvc/attestation/record_writer.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
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
    auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return count_ >= n;
    };
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

TEST(GroupCommitWriterTest, BatchesQueuedDuringASyncShareOneStoreWrite) {
  auto store = NewGatedStore();
  GroupCommitWriter writer(store.get(), GroupCommitWriter::Options());
  constexpr int kBatches = 100;
  Results results;
  results.Expect(kBatches);
  writer.Write(Record(0), results.Callback(0));
  store->WaitEntered();  // the writer is inside the first store write
  for (int i = 1; i < kBatches; ++i) writer.Write(Record(i), results.Callback(i));
  EXPECT_EQ(results.count(), 0);  // nothing acknowledged before it is durable
  store->Open();
  results.WaitFor(kBatches);
  for (int i = 0; i < kBatches; ++i) {
    EXPECT_TRUE(results.status(i).ok()) << i << ": " << results.status(i);
    EXPECT_EQ(*store->Get("devices", absl::StrCat("dev-", i)),
              absl::StrCat("record-", i));
  }
  // One write for the first batch, one for the 99 queued behind it.
  EXPECT_EQ(store->ops_per_write(), (std::vector<size_t>{2, 2 * 99}));
  writer.Stop();
  EXPECT_EQ(writer.store_writes(), 2u);
  EXPECT_EQ(writer.batches_written(), static_cast<uint64_t>(kBatches));
}

TEST(GroupCommitWriterTest, GroupsAreBoundedByBatchCount) {
  auto store = NewGatedStore();
  GroupCommitWriter::Options o;
  o.max_group_batches = 10;
  GroupCommitWriter writer(store.get(), o);
  Results results;
  results.Expect(31);
  writer.Write(Record(0), results.Callback(0));
  store->WaitEntered();
  for (int i = 1; i <= 30; ++i) writer.Write(Record(i), results.Callback(i));
  store->Open();
  results.WaitFor(31);
  EXPECT_EQ(store->ops_per_write(),
            (std::vector<size_t>{2, 20, 20, 20}));
}

TEST(GroupCommitWriterTest, Fault_BadBatchFailsAloneAndIsNotApplied) {
  auto store = NewGatedStore();
  GroupCommitWriter writer(store.get(), GroupCommitWriter::Options());
  Results results;
  results.Expect(4);
  writer.Write(Record(0), results.Callback(0));
  store->WaitEntered();
  writer.Write(Record(1), results.Callback(1));
  store::WriteBatch bad;
  bad.Put("devices", "dev-bad", "x");
  bad.Put("no-such-cf", "k", "v");
  writer.Write(std::move(bad), results.Callback(2));
  writer.Write(Record(3), results.Callback(3));
  store->Open();
  results.WaitFor(4);
  EXPECT_TRUE(results.status(1).ok());
  EXPECT_EQ(results.status(2).code(), absl::StatusCode::kInvalidArgument)
      << results.status(2);
  EXPECT_TRUE(results.status(3).ok());
  EXPECT_TRUE(store->Get("devices", "dev-1").ok());
  EXPECT_TRUE(store->Get("devices", "dev-3").ok());
  // The bad batch changed nothing.
  EXPECT_TRUE(absl::IsNotFound(store->Get("devices", "dev-bad").status()));
}

TEST(GroupCommitWriterTest, Fault_StoreFailureIsReportedAndNothingApplied) {
  auto mem = *store::MemoryStore::Create({"devices", "history"});
  mem->FailNextWrites(1000, absl::UnavailableError("disk gone"));
  GroupCommitWriter writer(mem.get(), GroupCommitWriter::Options());
  Results results;
  results.Expect(20);
  for (int i = 0; i < 20; ++i) writer.Write(Record(i), results.Callback(i));
  results.WaitFor(20);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(results.status(i).code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(results.status(i).message().find("disk gone"),
              std::string::npos);
  }
  EXPECT_EQ(mem->Size("devices"), 0u);
  EXPECT_EQ(mem->Size("history"), 0u);
  EXPECT_EQ(writer.batches_written(), 0u);
}

TEST(GroupCommitWriterTest, Fault_FullQueueRefusesAtOnceAndWritesNothing) {
  auto store = NewGatedStore();
  GroupCommitWriter::Options o;
  o.max_pending_batches = 3;
  GroupCommitWriter writer(store.get(), o);
  Results results;
  results.Expect(5);
  writer.Write(Record(0), results.Callback(0));
  store->WaitEntered();  // batch 0 left the queue
  for (int i = 1; i <= 3; ++i) writer.Write(Record(i), results.Callback(i));
  writer.Write(Record(4), results.Callback(4));  // queue holds 3: refused
  EXPECT_EQ(results.count(), 1);
  EXPECT_EQ(results.status(4).code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(results.status(4).message().find("busy"), std::string::npos);
  store->Open();
  results.WaitFor(5);
  for (int i = 0; i <= 3; ++i) EXPECT_TRUE(results.status(i).ok()) << i;
  EXPECT_TRUE(absl::IsNotFound(store->Get("devices", "dev-4").status()));
}

TEST(GroupCommitWriterTest, Fault_QueueBoundedByBytes) {
  auto store = NewGatedStore();
  GroupCommitWriter::Options o;
  o.max_pending_bytes = 100;
  GroupCommitWriter writer(store.get(), o);
  Results results;
  results.Expect(3);
  writer.Write(Record(0), results.Callback(0));
  store->WaitEntered();
  store::WriteBatch big;
  big.Put("devices", "dev-big", std::string(200, 'x'));
  writer.Write(std::move(big), results.Callback(1));
  EXPECT_EQ(results.status(1).code(), absl::StatusCode::kUnavailable);
  writer.Write(Record(2), results.Callback(2));  // small: fits
  store->Open();
  results.WaitFor(3);
  EXPECT_TRUE(results.status(2).ok());
  EXPECT_TRUE(absl::IsNotFound(store->Get("devices", "dev-big").status()));
}

TEST(GroupCommitWriterTest, StopDrainsQueuedBatchesThenRefuses) {
  auto store = NewGatedStore();
  auto writer = std::make_unique<GroupCommitWriter>(
      store.get(), GroupCommitWriter::Options());
  Results results;
  results.Expect(12);
  writer->Write(Record(0), results.Callback(0));
  store->WaitEntered();
  for (int i = 1; i <= 10; ++i) writer->Write(Record(i), results.Callback(i));
  store->Open();
  writer->Stop();  // returns once all queued batches are written
  EXPECT_EQ(results.count(), 11);
  for (int i = 0; i <= 10; ++i) EXPECT_TRUE(results.status(i).ok()) << i;
  writer->Write(Record(11), results.Callback(11));
  EXPECT_EQ(results.status(11).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::IsNotFound(store->Get("devices", "dev-11").status()));
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
