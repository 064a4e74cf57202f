// ScaledClock: device time for --time-scale. It runs `scale` times faster
// than `base` from the moment it is built (real_start), starting at
// `device_start` (default: real_start):
//   Now() = device_start + (base->Now() - real_start) * scale
// so days of DW100 wash cycles fit in seconds of real time. ToReal maps a
// device time back to the base clock (for waits). Thread-safe (as `base`).
//
// Example:
//   ScaledClock device_time(Clock::Real(), 1000);  // 1 s real = 1000 s
#ifndef SPHERE_TWIN_DW100_SCALED_CLOCK_H_
#define SPHERE_TWIN_DW100_SCALED_CLOCK_H_

#include "common/util/clock.h"

namespace sphere::dw100 {

class ScaledClock : public Clock {
 public:
  // `base` must outlive the clock; `scale` >= 1e-3 (clamped).
  ScaledClock(Clock* base, double scale)
      : ScaledClock(base, scale, base->Now()) {}
  // Resumes device time at `device_start` (a restarted twin continues where
  // its device time stopped).
  ScaledClock(Clock* base, double scale, absl::Time device_start)
      : base_(base),
        scale_(scale < 1e-3 ? 1e-3 : scale),
        real_start_(base->Now()),
        device_start_(device_start) {}
  absl::Time Now() const override { return ToDevice(base_->Now()); }
  absl::Time ToDevice(absl::Time base_time) const {
    return device_start_ + (base_time - real_start_) * scale_;
  }
  absl::Time ToReal(absl::Time device_time) const {
    return real_start_ + (device_time - device_start_) / scale_;
  }
  double scale() const { return scale_; }

 private:
  Clock* const base_;
  const double scale_;
  const absl::Time real_start_;
  const absl::Time device_start_;
};

}  // namespace sphere::dw100

#endif  // SPHERE_TWIN_DW100_SCALED_CLOCK_H_
