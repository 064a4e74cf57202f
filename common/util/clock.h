// Clock: the source of wall time for every component, behind an interface so
// tests can move time (nonce expiry, certificate expiry, 14-day retention).
// Implementations are thread-safe.
#ifndef SPHERE_COMMON_UTIL_CLOCK_H_
#define SPHERE_COMMON_UTIL_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sphere {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // RealClock returns the process-wide system clock.
  static Clock* Real();
};

// FakeClock starts at a fixed time and moves only when told to.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1767225600))
      : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock l(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere

#endif  // SPHERE_COMMON_UTIL_CLOCK_H_
