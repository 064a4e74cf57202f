// UpdateCheckSchedule on a fake clock seen through the twin's ScaledClock
// (--time-scale): checks fall due after N scaled hours, with no attestation
// involved, and then every interval; off means never.
#include "twin/dw100/update_schedule.h"

#include <gtest/gtest.h>

#include "common/util/clock.h"
#include "twin/dw100/scaled_clock.h"

namespace sphere::dw100 {
namespace {

TEST(UpdateCheckScheduleTest, DueAfterTheIntervalInScaledDeviceTime) {
  FakeClock real;
  ScaledClock device(&real, 8000);  // 1 s real = 8000 s device
  UpdateCheckSchedule s(absl::Hours(6), device.Now());
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.next(), device.Now() + absl::Hours(6));
  EXPECT_EQ(s.started(), device.Now());
  // 6 device hours = 2.7 s real at 8000x.
  real.Advance(absl::Milliseconds(2699));
  EXPECT_FALSE(s.Due(device.Now()));
  real.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(s.Due(device.Now()));
  EXPECT_EQ(s.checks(), 0);
  s.Checked(device.Now());
  EXPECT_EQ(s.checks(), 1);
  EXPECT_FALSE(s.Due(device.Now()));
  EXPECT_EQ(s.next(), device.Now() + absl::Hours(6));
  EXPECT_EQ(device.ToReal(s.next()) - real.Now(), absl::Milliseconds(2700));
  // Three more intervals of device time: three more checks, one at a time.
  for (int i = 0; i < 3; ++i) {
    real.Advance(absl::Milliseconds(2700));
    ASSERT_TRUE(s.Due(device.Now())) << i;
    s.Checked(device.Now());
  }
  EXPECT_EQ(s.checks(), 4);
}

TEST(UpdateCheckScheduleTest, ALateCheckIsNotFollowedByABurst) {
  FakeClock real;
  ScaledClock device(&real, 1000);
  UpdateCheckSchedule s(absl::Hours(24), device.Now());
  // The loop was busy for ten device days: one check, then a full interval.
  real.Advance(absl::Hours(240) / 1000);
  ASSERT_TRUE(s.Due(device.Now()));
  s.Checked(device.Now());
  EXPECT_FALSE(s.Due(device.Now()));
  EXPECT_EQ(s.next() - device.Now(), absl::Hours(24));
}

TEST(UpdateCheckScheduleTest, ZeroIntervalNeverFallsDue) {
  FakeClock real;
  ScaledClock device(&real, 8000);
  UpdateCheckSchedule s(absl::ZeroDuration(), device.Now());
  EXPECT_FALSE(s.enabled());
  real.Advance(absl::Hours(24 * 365));
  EXPECT_FALSE(s.Due(device.Now()));
  EXPECT_EQ(s.next(), absl::InfiniteFuture());
}

}  // namespace
}  // namespace sphere::dw100
