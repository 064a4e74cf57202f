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

TEST(WorkerPoolTest, RunningTasksDoNotCountAgainstTheKeyShare) {
  Blocker b;
  WorkerPool pool({.threads = 1, .max_queue = 8, .max_per_key = 1});
  ASSERT_TRUE(pool.TrySubmit("k", b.Task()));
  b.started.WaitForNotification();
  // "k"'s first task runs; its share (1 waiting) is free again.
  absl::Notification second;
  EXPECT_TRUE(pool.TrySubmit("k", [&] { second.Notify(); }));
  EXPECT_FALSE(pool.TrySubmit("k", [] {}));  // one waiting: share full
  EXPECT_EQ(pool.queued(), 1u);
  b.release.Notify();
  second.WaitForNotification();
}

// A client whose window of calls equals its share sends its next call as
// soon as a reply arrives, which is before the task that sent the reply has
// returned. Each task here "replies" by submitting the caller's next call
// from inside itself: counting running tasks would refuse it; counting
// waiting tasks only admits every one. Deterministic: a running task has
// left the queue, so at most share - 1 of the key's tasks wait.
TEST(WorkerPoolTest, CallerWithExactlyItsShareInFlightIsNeverRefused) {
  constexpr size_t kShare = 4;
  constexpr int kCalls = 2000;
  for (int threads : {1, 3}) {
    WorkerPool pool(
        {.threads = threads, .max_queue = 16, .max_per_key = kShare});
    absl::Mutex mu;
    int sent = 0, done = 0, refused = 0;
    int outstanding = 0;  // admitted calls not yet finished
    std::function<void()> call;
    // Submit sends one call; a refused call never runs (its chain ends).
    auto submit = [&] {
      {
        absl::MutexLock l(&mu);
        ++outstanding;
      }
      if (!pool.TrySubmit("caller", call)) {
        absl::MutexLock l(&mu);
        --outstanding;
        ++refused;
      }
    };
    call = [&] {
      bool send;
      {
        absl::MutexLock l(&mu);
        send = sent++ < kCalls - static_cast<int>(kShare);
      }
      // The reply: the caller's next call arrives while this task runs.
      if (send) submit();
      absl::MutexLock l(&mu);
      ++done;
      --outstanding;
    };
    for (size_t i = 0; i < kShare; ++i) submit();
    {
      absl::MutexLock l(&mu);
      auto finished = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
        return outstanding == 0;
      };
      mu.Await(absl::Condition(&finished));
    }
    pool.Stop();
    absl::MutexLock l(&mu);
    EXPECT_EQ(refused, 0) << threads << " threads";
    EXPECT_EQ(done, kCalls) << threads << " threads";
  }
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
