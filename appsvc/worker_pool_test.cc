#include "appsvc/worker_pool.h"

#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"

namespace contoso::appsvc {
namespace {

TEST(WorkerPoolTest, RunsTasks) {
  absl::Notification done;
  {
    WorkerPool pool(2, 8, 4);
    ASSERT_TRUE(pool.TrySubmit("a", [&] { done.Notify(); }));
    done.WaitForNotification();
  }
  EXPECT_TRUE(done.HasBeenNotified());
}

TEST(WorkerPoolTest, OneKeyCannotFillTheQueue) {
  absl::Notification release;
  absl::Notification started;
  WorkerPool pool(1, 8, 2);
  // Occupy the only worker.
  ASSERT_TRUE(pool.TrySubmit("busy", [&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  EXPECT_TRUE(pool.TrySubmit("noisy", [] {}));
  EXPECT_TRUE(pool.TrySubmit("noisy", [] {}));
  EXPECT_FALSE(pool.TrySubmit("noisy", [] {}));  // its share is full
  EXPECT_TRUE(pool.TrySubmit("quiet", [] {}));   // others still get in
  release.Notify();
}

TEST(WorkerPoolTest, FullQueueRefuses) {
  absl::Notification release;
  absl::Notification started;
  WorkerPool pool(1, 2, 10);
  ASSERT_TRUE(pool.TrySubmit("x", [&] {
    started.Notify();
    release.WaitForNotification();
  }));
  started.WaitForNotification();
  EXPECT_TRUE(pool.TrySubmit("a", [] {}));
  EXPECT_TRUE(pool.TrySubmit("b", [] {}));
  EXPECT_FALSE(pool.TrySubmit("c", [] {}));
  release.Notify();
}

}  // namespace
}  // namespace contoso::appsvc
