#include "common/util/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace sphere {
namespace {

// Blocker occupies a pool thread until released.
struct Blocker {
  absl::Notification started;
  absl::Notification release;
  std::function<void()> Task() {
    return [this] {
      started.Notify();
      release.WaitForNotification();
    };
  }
};

TEST(WorkerPoolTest, RunsEveryTaskBeforeStopReturns) {
  std::atomic<int> ran{0};
  WorkerPool pool({.threads = 2, .max_queue = 100, .max_per_key = 0});
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(pool.TrySubmit(i % 2 ? "a" : "b", [&] { ++ran; }));
  }
  pool.Stop();
  EXPECT_EQ(ran.load(), 50);
}

TEST(WorkerPoolTest, FullQueueRefusesAndQueuesNothing) {
  Blocker b;
  std::atomic<int> ran{0};
  WorkerPool pool({.threads = 1, .max_queue = 2, .max_per_key = 10});
  ASSERT_TRUE(pool.Post(b.Task()));
  b.started.WaitForNotification();
  EXPECT_TRUE(pool.TrySubmit("a", [&] { ++ran; }));
  EXPECT_TRUE(pool.TrySubmit("b", [&] { ++ran; }));
  EXPECT_FALSE(pool.TrySubmit("c", [&] { ran += 100; }));
  EXPECT_FALSE(pool.Post([&] { ran += 100; }));
  EXPECT_EQ(pool.queued(), 2u);
  b.release.Notify();
  pool.Stop();
  EXPECT_EQ(ran.load(), 2);  // the refused tasks never ran
}

TEST(WorkerPoolTest, OneKeyCannotFillTheQueue) {
  Blocker b;
  WorkerPool pool({.threads = 1, .max_queue = 8, .max_per_key = 2});
  ASSERT_TRUE(pool.Post(b.Task()));
  b.started.WaitForNotification();
  EXPECT_TRUE(pool.TrySubmit("noisy", [] {}));
  EXPECT_TRUE(pool.TrySubmit("noisy", [] {}));
  EXPECT_FALSE(pool.TrySubmit("noisy", [] {}));  // its share is full
  EXPECT_TRUE(pool.TrySubmit("quiet", [] {}));   // others still get in
  EXPECT_EQ(pool.queued(), 3u);
  b.release.Notify();
}

TEST(WorkerPoolTest, KeyShareFreesWhenItsTasksFinish) {
  Blocker b;
  WorkerPool pool({.threads = 1, .max_queue = 8, .max_per_key = 1});
  ASSERT_TRUE(pool.TrySubmit("k", b.Task()));
  b.started.WaitForNotification();
  EXPECT_FALSE(pool.TrySubmit("k", [] {}));  // running counts against it
  // One thread: a task releases its key's slot before the next task starts,
  // so once `barrier` ran, "k" holds nothing.
  absl::Notification barrier;
  ASSERT_TRUE(pool.Post([&] { barrier.Notify(); }));
  b.release.Notify();
  barrier.WaitForNotification();
  absl::Notification again;
  EXPECT_TRUE(pool.TrySubmit("k", [&] { again.Notify(); }));
  again.WaitForNotification();
}

TEST(WorkerPoolTest, StoppedPoolRefuses) {
  WorkerPool pool(1, 4, 4);
  pool.Stop();
  EXPECT_FALSE(pool.TrySubmit("a", [] {}));
  EXPECT_FALSE(pool.Post([] {}));
}

TEST(WorkerPoolTest, OneThreadRunsInSubmissionOrder) {
  std::vector<int> order;
  absl::Mutex mu;
  WorkerPool pool(1, 64, 64);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(pool.Post([&, i] {
      absl::MutexLock l(&mu);
      order.push_back(i);
    }));
  }
  pool.Stop();
  ASSERT_EQ(order.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(order[i], i);
}

}  // namespace
}  // namespace sphere
