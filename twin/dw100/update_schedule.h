// UpdateCheckSchedule: when a running DW100 twin checks for updates on its
// own (issue 13), in DEVICE time (the ScaledClock of --time-scale), not
// only after an attestation: the first check falls one interval after the
// loop starts, then one interval after each check (a check that could not
// run, e.g. no certificate, still counts: the next is one interval later,
// so an unreachable service is not hammered). With --time-scale 8000 a
// 24-device-hour schedule checks every 10.8 s of real time.
//
// The check itself is the twin library's UpdateAgent (twin/update_agent.h)
// driven by twin/update_runner.h; this class only says when.
//
// Example:
//   UpdateCheckSchedule s(absl::Hours(24), device_clock.Now());
//   if (s.Due(device_clock.Now())) { s.Checked(device_clock.Now()); ... }
//
// Thread-safety: not thread-safe (the loop's thread owns it).
#ifndef SPHERE_TWIN_DW100_UPDATE_SCHEDULE_H_
#define SPHERE_TWIN_DW100_UPDATE_SCHEDULE_H_

#include <cstdint>

#include "absl/time/time.h"

namespace sphere::dw100 {

class UpdateCheckSchedule {
 public:
  // `interval` <= 0 turns scheduled checks off (never due).
  UpdateCheckSchedule(absl::Duration interval, absl::Time device_start)
      : interval_(interval),
        started_(device_start),
        next_(interval > absl::ZeroDuration() ? device_start + interval
                                              : absl::InfiniteFuture()) {}

  bool enabled() const { return interval_ > absl::ZeroDuration(); }
  bool Due(absl::Time device_now) const { return device_now >= next_; }
  // Checked: a scheduled check ran at `device_now`; the next one is due one
  // interval later.
  void Checked(absl::Time device_now) {
    ++checks_;
    if (enabled()) next_ = device_now + interval_;
  }
  // Device time of the next check (InfiniteFuture when off).
  absl::Time next() const { return next_; }
  absl::Duration interval() const { return interval_; }
  // Device time the schedule started (the loop's start).
  absl::Time started() const { return started_; }
  int64_t checks() const { return checks_; }

 private:
  const absl::Duration interval_;
  const absl::Time started_;
  absl::Time next_;
  int64_t checks_ = 0;
};

}  // namespace sphere::dw100

#endif  // SPHERE_TWIN_DW100_UPDATE_SCHEDULE_H_
