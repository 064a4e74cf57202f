#include "securitysvc/errors/device_filter.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace sphere::errors {
namespace {

// Device: the 32 bytes of a test device (a counter, big-endian, at the end:
// ids that differ only in their last bytes must still spread).
std::string Device(uint64_t n, char fill = '\0') {
  std::string d(32, fill);
  for (int i = 0; i < 8; ++i) {
    d[31 - i] = static_cast<char>((n >> (8 * i)) & 0xff);
  }
  return d;
}

TEST(DeviceFilterTest, EveryAddedDeviceIsMaybeAcrossGrownParts) {
  DeviceFilter f({.initial_devices = 1000, .max_bytes = size_t{1} << 20});
  const size_t first_part = f.bytes();
  for (uint64_t i = 0; i < 10000; ++i) f.Add(Device(i));
  // 1,000 + 2,000 + 4,000 + 8,000 >= 10,000: three parts were added.
  EXPECT_GT(f.bytes(), 8 * first_part);
  EXPECT_FALSE(f.saturated());
  for (uint64_t i = 0; i < 10000; ++i) {
    ASSERT_TRUE(f.MayContain(Device(i))) << i;
  }
  EXPECT_LE(f.devices(), 10000u);
  EXPECT_GT(f.devices(), 9800u);  // a few were already "maybe"
}

TEST(DeviceFilterTest, FewFalsePositivesAtCapacity) {
  DeviceFilter f({.initial_devices = 20000});
  for (uint64_t i = 0; i < 20000; ++i) f.Add(Device(i));
  int maybe = 0;
  for (uint64_t i = 0; i < 100000; ++i) {
    maybe += f.MayContain(Device(i, '\x5a'));  // never added
  }
  // 10 bits per device, 7 probes in a 512-bit block: ~1 %.
  EXPECT_LT(maybe, 2000) << maybe << " of 100000 absent devices were maybe";
}

TEST(DeviceFilterTest, EmptyFilterHoldsNothing) {
  DeviceFilter f;
  EXPECT_FALSE(f.MayContain(Device(1)));
  EXPECT_FALSE(f.MayContain(std::string(32, '\xff')));
  EXPECT_EQ(f.devices(), 0u);
  EXPECT_FALSE(f.saturated());
}

TEST(DeviceFilterTest, SaturatedBeyondMaxBytesAnswersMaybeForAll) {
  // The first part (100 devices: two blocks, 128 bytes) fits, the next
  // (256 bytes) does not.
  DeviceFilter f({.initial_devices = 100, .max_bytes = 300});
  EXPECT_EQ(f.bytes(), 128u);
  for (uint64_t i = 0; i < 100; ++i) f.Add(Device(i));
  EXPECT_FALSE(f.saturated());
  EXPECT_FALSE(f.MayContain(Device(1, '\x77')));
  for (uint64_t i = 100; i < 200; ++i) f.Add(Device(i));
  EXPECT_TRUE(f.saturated());
  EXPECT_EQ(f.bytes(), 0u);  // its parts are freed
  EXPECT_TRUE(f.MayContain(Device(1, '\x77')));
  EXPECT_TRUE(f.MayContain(Device(150)));
}

TEST(DeviceFilterTest, FirstPartBeyondMaxBytesIsSaturatedFromTheStart) {
  DeviceFilter f({.initial_devices = 1 << 20, .max_bytes = 1024});
  EXPECT_TRUE(f.saturated());
  EXPECT_TRUE(f.MayContain(Device(7)));
  f.Add(Device(7));
  EXPECT_EQ(f.bytes(), 0u);
}

}  // namespace
}  // namespace sphere::errors
