#include "securitysvc/shard_flags.h"

#include <gtest/gtest.h>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "common/store/store.h"
#include "securitysvc/shard_server/shard_server.h"

ABSL_DECLARE_FLAG(int64_t, status_read_threads);
ABSL_DECLARE_FLAG(int64_t, status_read_queue);
ABSL_DECLARE_FLAG(int64_t, status_read_per_reader);
ABSL_DECLARE_FLAG(int64_t, session_token_slots);
ABSL_DECLARE_FLAG(int64_t, store_memtable_mib);
ABSL_DECLARE_FLAG(int64_t, store_block_cache_mib);
ABSL_DECLARE_FLAG(int64_t, error_cached_devices);

namespace sphere {
namespace {

// The flags' defaults are the sizes that were fixed in code.
TEST(ShardFlagsTest, DefaultsAreTheSizesThatWereInCode) {
  auto s = ShardSizesFromFlags();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->status_reads.threads, 2);
  EXPECT_EQ(s->status_reads.max_queue, 256u);
  EXPECT_EQ(s->status_reads.max_per_key, 32u);
  EXPECT_EQ(s->session_token_slots, 8192u);
  const WorkerPool::Options d =
      attestation::DeviceStatusServiceImpl::DefaultReadPool();
  EXPECT_EQ(s->status_reads.threads, d.threads);
  EXPECT_EQ(s->status_reads.max_queue, d.max_queue);
  EXPECT_EQ(s->status_reads.max_per_key, d.max_per_key);
  EXPECT_EQ(s->session_token_slots, auth::kVerifiedTokenSlots);
  // The store sizes are ShardStoreOptions' (shard_server.h).
  const store::RocksOptions ro = shard::ShardStoreOptions("");
  EXPECT_EQ(s->store_memtable_bytes, ro.memtable_budget_bytes);
  EXPECT_EQ(s->store_block_cache_bytes, ro.block_cache_bytes);
  EXPECT_EQ(s->error_cached_devices, 32768u);
}

TEST(ShardFlagsTest, StoreAndErrorCacheFlagsSetTheSizes) {
  absl::SetFlag(&FLAGS_store_memtable_mib, 64);
  absl::SetFlag(&FLAGS_store_block_cache_mib, 32);
  absl::SetFlag(&FLAGS_error_cached_devices, 1000);
  auto s = ShardSizesFromFlags();
  absl::SetFlag(&FLAGS_store_memtable_mib, 16);
  absl::SetFlag(&FLAGS_store_block_cache_mib, 8);
  absl::SetFlag(&FLAGS_error_cached_devices, 32768);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->store_memtable_bytes, size_t{64} << 20);
  EXPECT_EQ(s->store_block_cache_bytes, size_t{32} << 20);
  EXPECT_EQ(s->error_cached_devices, 1000u);
}

TEST(ShardFlagsTest, FlagsSetTheSizes) {
  absl::SetFlag(&FLAGS_status_read_threads, 4);
  absl::SetFlag(&FLAGS_status_read_queue, 1024);
  absl::SetFlag(&FLAGS_status_read_per_reader, 64);
  absl::SetFlag(&FLAGS_session_token_slots, 65536);
  auto s = ShardSizesFromFlags();
  absl::SetFlag(&FLAGS_status_read_threads, 2);
  absl::SetFlag(&FLAGS_status_read_queue, 256);
  absl::SetFlag(&FLAGS_status_read_per_reader, 32);
  absl::SetFlag(&FLAGS_session_token_slots, 8192);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->status_reads.threads, 4);
  EXPECT_EQ(s->status_reads.max_queue, 1024u);
  EXPECT_EQ(s->status_reads.max_per_key, 64u);
  EXPECT_EQ(s->session_token_slots, 65536u);
}

// Each bad value is refused with INVALID_ARGUMENT naming its flag; the
// flag is put back after each case.
TEST(ShardFlagsTest, Attack_ZeroNegativeAndAbsurdValuesAreRefusedByName) {
  struct Case {
    absl::Flag<int64_t>* flag;
    int64_t value;
    const char* name;
  };
  const Case cases[] = {
      {&FLAGS_status_read_threads, 0, "--status_read_threads=0"},
      {&FLAGS_status_read_threads, -1, "--status_read_threads=-1"},
      {&FLAGS_status_read_threads, 65, "--status_read_threads=65"},
      {&FLAGS_status_read_queue, 0, "--status_read_queue=0"},
      {&FLAGS_status_read_queue, int64_t{1} << 40, "--status_read_queue="},
      {&FLAGS_status_read_per_reader, 0, "--status_read_per_reader=0"},
      {&FLAGS_status_read_per_reader, 257, "--status_read_per_reader=257"},
      {&FLAGS_session_token_slots, 0, "--session_token_slots=0"},
      {&FLAGS_session_token_slots, -8192, "--session_token_slots=-8192"},
      {&FLAGS_session_token_slots, (int64_t{1} << 20) + 1,
       "--session_token_slots=1048577"},
      {&FLAGS_store_memtable_mib, 0, "--store_memtable_mib=0"},
      {&FLAGS_store_memtable_mib, -16, "--store_memtable_mib=-16"},
      {&FLAGS_store_memtable_mib, 4097, "--store_memtable_mib=4097"},
      {&FLAGS_store_block_cache_mib, 0, "--store_block_cache_mib=0"},
      {&FLAGS_store_block_cache_mib, int64_t{1} << 40,
       "--store_block_cache_mib="},
      {&FLAGS_error_cached_devices, 0, "--error_cached_devices=0"},
      {&FLAGS_error_cached_devices, -1, "--error_cached_devices=-1"},
      {&FLAGS_error_cached_devices, (int64_t{1} << 24) + 1,
       "--error_cached_devices=16777217"},
  };
  for (const Case& c : cases) {
    const int64_t before = absl::GetFlag(*c.flag);
    absl::SetFlag(c.flag, c.value);
    auto s = ShardSizesFromFlags();
    absl::SetFlag(c.flag, before);
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_TRUE(absl::StrContains(s.status().message(), c.name))
        << s.status();
    EXPECT_TRUE(absl::StrContains(s.status().message(), "must be between"))
        << s.status();
  }
  // Nothing stuck: the defaults read back after the refusals.
  auto s = ShardSizesFromFlags();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->session_token_slots, 8192u);
}

TEST(ShardFlagsTest, ValidateChecksSizesBuiltInCode) {
  ShardSizes s;
  EXPECT_TRUE(ValidateShardSizes(s).ok());
  s.status_reads.max_per_key = 0;
  EXPECT_EQ(ValidateShardSizes(s).code(), absl::StatusCode::kInvalidArgument);
  s = ShardSizes();
  s.session_token_slots = kMaxSessionTokenSlots + 1;
  EXPECT_TRUE(absl::StrContains(ValidateShardSizes(s).message(),
                                "--session_token_slots"));
  s = ShardSizes();
  s.store_memtable_bytes = (size_t{16} << 20) + 1;  // not whole MiB
  EXPECT_TRUE(absl::StrContains(ValidateShardSizes(s).message(),
                                "--store_memtable_mib"));
  s = ShardSizes();
  s.error_cached_devices = 0;
  EXPECT_TRUE(absl::StrContains(ValidateShardSizes(s).message(),
                                "--error_cached_devices"));
}

}  // namespace
}  // namespace sphere
