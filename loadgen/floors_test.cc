#include "loadgen/floors.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace sphere::loadgen {
namespace {

TEST(FloorsTest, CryptoBoundIsCoresOverTheCpuTimeOfOneAttestation) {
  // 2 signs at 40k/s (50 µs) + 1 verify at 20k/s (50 µs) = 100 µs of CPU:
  // one core does 10k attestations/s, two cores 20k/s.
  EcdsaRates r{40000, 20000};
  EXPECT_DOUBLE_EQ(AttestCryptoBound(1, r, 2, 1), 10000);
  EXPECT_DOUBLE_EQ(AttestCryptoBound(2, r, 2, 1), 20000);
  // Chain verification by every twin adds 2 verifies (100 µs more).
  EXPECT_DOUBLE_EQ(AttestCryptoBound(2, r, 2, 3), 10000);
  EXPECT_EQ(AttestCryptoBound(2, EcdsaRates{}, 2, 1), 0);  // not measured
}

TEST(FloorsTest, EcdsaRatesAreMeasured) {
  const EcdsaRates r = MeasureEcdsa(absl::Milliseconds(100));
  EXPECT_GT(r.sign_per_s, 0);
  EXPECT_GT(r.verify_per_s, 0);
}

TEST(FloorsTest, RocksDbSyncedWritesAreMeasuredInAScratchDirRemovedAfter) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp ? tmp : "/tmp") + "/rocks-floor";
  auto rate = MeasureRocksDbSyncedWrites(dir, absl::Milliseconds(100));
  ASSERT_TRUE(rate.ok()) << rate.status();
  EXPECT_GT(*rate, 0);
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(FloorsTest, EchoNeedsShards) {
  auto rate = MeasureEchoRpc({}, rpc::TlsFiles{}, absl::Milliseconds(10), 1);
  EXPECT_EQ(rate.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sphere::loadgen
