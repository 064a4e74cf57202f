#include "loadgen/process_cpu.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdint>

namespace sphere::loadgen {
namespace {

TEST(ProcessCpuTest, ParsesUtimePlusStimeAfterACommandNameWithSpaces) {
  // Fields 14 and 15 are 250 and 50; the name holds ") (" and spaces.
  const char* line =
      "1234 (load gen) (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 "
      "20 0 7 0 123 456789 1000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 "
      "0 17 1 0 0 0 0 0\n";
  auto ticks = ParseStatCpuTicks(line);
  ASSERT_TRUE(ticks.ok()) << ticks.status();
  EXPECT_EQ(*ticks, 300u);
}

TEST(ProcessCpuTest, Attack_TruncatedOrNamelessLinesAreRefused) {
  EXPECT_EQ(ParseStatCpuTicks("1234 load S 1 2 3").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseStatCpuTicks("1234 (load) S 1 2 3").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseStatCpuTicks("1234 (load) S 1 1 1 0 -1 4 1 0 0 0 x 50 0")
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

TEST(ProcessCpuTest, ThisProcessAgreesWithGetrusageAndAGoneProcessIsNotFound) {
  // Burn CPU until getrusage shows 50 ms more (no clock, no timing claim).
  auto cpu_of_rusage = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
           (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  auto before = ProcessCpuSeconds(0);
  ASSERT_TRUE(before.ok()) << before.status();
  const double start = cpu_of_rusage();
  volatile uint64_t sink = 0;
  while (cpu_of_rusage() < start + 0.05) {
    for (int i = 0; i < 100000; ++i) sink = sink + i;
  }
  auto after = ProcessCpuSeconds(0);
  ASSERT_TRUE(after.ok()) << after.status();
  // /proc counts in clock ticks (10 ms): at least 50 ms minus one tick more.
  EXPECT_GE(*after - *before, 0.04);
  EXPECT_LE(*after, cpu_of_rusage() + 0.02);
  // pid_max is at most 2^22: this pid never exists.
  EXPECT_EQ(ProcessCpuSeconds(1 << 23).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sphere::loadgen
