#include "common/store/group_commit.h"

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/store/memory_store.h"
#include "common/store/store.h"
#include "gtest/gtest.h"

namespace sphere::store {
namespace {

// GatedStore holds the first Write until Release(), so a test can queue
// batches behind a write in progress deterministically (no sleeps).
class GatedStore : public Store {
 public:
  explicit GatedStore(MemoryStore* inner) : inner_(inner) {}
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
  std::unique_ptr<Snapshot> NewSnapshot() override {
    return inner_->NewSnapshot();
  }
  absl::Status Write(const WriteBatch& batch) override {
    bool first = false;
    {
      absl::MutexLock l(&mu_);
      first = writes_++ == 0;
    }
    if (first) {
      entered_.Notify();
      release_.WaitForNotification();
    }
    return inner_->Write(batch);
  }
  void WaitEntered() { entered_.WaitForNotification(); }
  void Release() { release_.Notify(); }

 private:
  MemoryStore* inner_;
  absl::Mutex mu_;
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Notification entered_, release_;
};

WriteBatch One(const std::string& cf, const std::string& key) {
  WriteBatch b;
  b.Put(cf, key, absl::StrCat("v-", key));
  return b;
}

TEST(GroupCommitTest, CallbackRunsAfterBatchIsWritten) {
  auto mem = *MemoryStore::Create({"t"});
  GroupCommitWriter writer(mem.get());
  absl::Notification done;
  absl::Status got = absl::UnknownError("not called");
  ASSERT_TRUE(writer
                  .Submit(One("t", "k1"),
                          [&](const absl::Status& s) {
                            got = s;
                            // Visible to the callback: written first.
                            EXPECT_TRUE(mem->Get("t", "k1").ok());
                            done.Notify();
                          })
                  .ok());
  done.WaitForNotification();
  EXPECT_TRUE(got.ok()) << got;
  EXPECT_EQ(*mem->Get("t", "k1"), "v-k1");
}

TEST(GroupCommitTest, QueuedBatchesShareOneWrite) {
  auto mem = *MemoryStore::Create({"t"});
  GatedStore gated(mem.get());
  GroupCommitWriter writer(&gated);
  absl::BlockingCounter all(101);
  std::atomic<int> failures{0};
  auto cb = [&](const absl::Status& s) {
    if (!s.ok()) failures++;
    all.DecrementCount();
  };
  ASSERT_TRUE(writer.Submit(One("t", "first"), cb).ok());
  gated.WaitEntered();  // the leader is inside the first write
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(writer.Submit(One("t", absl::StrCat("k", i)), cb).ok());
  }
  gated.Release();
  all.Wait();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(writer.batches_written(), 101u);
  EXPECT_EQ(writer.groups_written(), 2u);  // the first alone, then 100 as one
  EXPECT_EQ(mem->writes(), 2);
  EXPECT_EQ(mem->Size("t"), 101u);
}

TEST(GroupCommitTest, Fault_QueueFullRefusesAndStoresNothing) {
  auto mem = *MemoryStore::Create({"t"});
  GatedStore gated(mem.get());
  GroupCommitOptions options;
  options.max_queued_batches = 4;
  GroupCommitWriter writer(&gated, options);
  absl::BlockingCounter all(5);
  auto cb = [&](const absl::Status&) { all.DecrementCount(); };
  ASSERT_TRUE(writer.Submit(One("t", "first"), cb).ok());
  gated.WaitEntered();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(writer.Submit(One("t", absl::StrCat("k", i)), cb).ok());
  }
  bool refused_cb_ran = false;
  absl::Status full = writer.Submit(
      One("t", "refused"), [&](const absl::Status&) { refused_cb_ran = true; });
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_NE(full.message().find("queue full"), std::string::npos) << full;
  gated.Release();
  all.Wait();
  writer.Stop();
  EXPECT_FALSE(refused_cb_ran);
  EXPECT_EQ(mem->Get("t", "refused").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(mem->Size("t"), 5u);
}

TEST(GroupCommitTest, Fault_BadBatchFailsAloneInItsGroup) {
  auto mem = *MemoryStore::Create({"t"});
  GatedStore gated(mem.get());
  GroupCommitWriter writer(&gated);
  absl::BlockingCounter all(4);
  std::vector<absl::Status> got(4);
  auto cb = [&](int i) {
    return [&, i](const absl::Status& s) {
      got[i] = s;
      all.DecrementCount();
    };
  };
  ASSERT_TRUE(writer.Submit(One("t", "first"), cb(0)).ok());
  gated.WaitEntered();
  ASSERT_TRUE(writer.Submit(One("t", "good1"), cb(1)).ok());
  ASSERT_TRUE(writer.Submit(One("no-such-cf", "bad"), cb(2)).ok());
  ASSERT_TRUE(writer.Submit(One("t", "good2"), cb(3)).ok());
  gated.Release();
  all.Wait();
  EXPECT_TRUE(got[0].ok());
  EXPECT_TRUE(got[1].ok()) << got[1];
  EXPECT_EQ(got[2].code(), absl::StatusCode::kInvalidArgument) << got[2];
  EXPECT_TRUE(got[3].ok()) << got[3];
  EXPECT_TRUE(mem->Get("t", "good1").ok());
  EXPECT_TRUE(mem->Get("t", "good2").ok());
  EXPECT_EQ(mem->Size("t"), 3u);
}

TEST(GroupCommitTest, Fault_WriteErrorReachesCallbackAndNothingStored) {
  auto mem = *MemoryStore::Create({"t"});
  mem->FailNextWrites(1, absl::UnavailableError("disk gone"));
  GroupCommitWriter writer(mem.get());
  absl::Notification done;
  absl::Status got;
  ASSERT_TRUE(writer
                  .Submit(One("t", "k"),
                          [&](const absl::Status& s) {
                            got = s;
                            done.Notify();
                          })
                  .ok());
  done.WaitForNotification();
  EXPECT_EQ(got.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(mem->Size("t"), 0u);
}

TEST(GroupCommitTest, StopWritesWhatIsQueuedThenRefuses) {
  auto mem = *MemoryStore::Create({"t"});
  GroupCommitWriter writer(mem.get());
  std::atomic<int> ok{0};
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(writer
                    .Submit(One("t", absl::StrCat("k", i)),
                            [&](const absl::Status& s) {
                              if (s.ok()) ok++;
                            })
                    .ok());
  }
  writer.Stop();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_EQ(mem->Size("t"), 200u);
  absl::Status after =
      writer.Submit(One("t", "late"), [](const absl::Status&) {});
  EXPECT_EQ(after.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(writer.Submit(WriteBatch(), [](const absl::Status&) {}).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GroupCommitTest, RocksStoreBatchesSurviveReopen) {
  std::string dir = absl::StrCat(std::getenv("TEST_TMPDIR"), "/gc_rocks");
  {
    auto store = *OpenRocksStore(dir, {"t"});
    GroupCommitWriter writer(store.get());
    absl::BlockingCounter all(50);
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(writer
                      .Submit(One("t", absl::StrCat("k", i)),
                              [&](const absl::Status& s) {
                                EXPECT_TRUE(s.ok()) << s;
                                all.DecrementCount();
                              })
                      .ok());
    }
    all.Wait();
  }
  auto store = *OpenRocksStore(dir, {"t"});
  for (int i = 0; i < 50; ++i) {
    EXPECT_TRUE(store->Get("t", absl::StrCat("k", i)).ok()) << i;
  }
}

}  // namespace
}  // namespace sphere::store
