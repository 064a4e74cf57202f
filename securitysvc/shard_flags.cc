#include "securitysvc/shard_flags.h"

#include <cstdint>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

// int64 so a negative value reaches the check (and is refused by name)
// instead of wrapping around.
ABSL_FLAG(int64_t, status_read_threads,
          sphere::ShardSizes().status_reads.threads,
          "Threads reading the store for GetDeviceStatus/GetDeviceHistory "
          "(1-64)");
ABSL_FLAG(int64_t, status_read_queue,
          static_cast<int64_t>(sphere::ShardSizes().status_reads.max_queue),
          "Status/history reads waiting for a thread, all readers (1-65536); "
          "more are refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, status_read_per_reader,
          static_cast<int64_t>(sphere::ShardSizes().status_reads.max_per_key),
          "Of those, at most this many from one reader: a tenant or the "
          "platform (1-status_read_queue)");
ABSL_FLAG(int64_t, session_token_slots,
          static_cast<int64_t>(sphere::ShardSizes().session_token_slots),
          "Verified gateway session tokens remembered (1-1048576; each slot "
          "holds one token of at most 1 KiB)");

ABSL_FLAG(int64_t, store_memtable_mib,
          static_cast<int64_t>(sphere::ShardSizes().store_memtable_bytes >>
                               20),
          "RocksDB memtables of all column families together, MiB (1-4096); "
          "a fixed cost, whatever the fleet size");
ABSL_FLAG(int64_t, store_block_cache_mib,
          static_cast<int64_t>(sphere::ShardSizes().store_block_cache_bytes >>
                               20),
          "RocksDB block cache (index and filter blocks included), MiB "
          "(1-65536)");
ABSL_FLAG(int64_t, error_cached_devices,
          static_cast<int64_t>(sphere::ShardSizes().error_cached_devices),
          "Devices whose error-report high-water mark stays in memory "
          "(1-16777216; idle ones beyond it are forgotten and re-read)");

namespace sphere {
namespace {

// Raw: the values as int64, so a negative or huge flag value is checked
// (and named) before it is narrowed.
struct Raw {
  int64_t threads, queue, per_reader, slots;
  int64_t memtable_mib, block_cache_mib, error_devices;
};

absl::Status OutOfRange(absl::string_view flag, int64_t value, int64_t low,
                        int64_t high, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, ": ", what, " must be between ",
                   low, " and ", high, " (docs/shard-flags.md)"));
}

absl::Status Check(const Raw& r) {
  if (r.threads < 1 || r.threads > kMaxStatusReadThreads) {
    return OutOfRange("status_read_threads", r.threads, 1,
                      kMaxStatusReadThreads, "status read threads");
  }
  if (r.queue < 1 || r.queue > static_cast<int64_t>(kMaxStatusReadQueue)) {
    return OutOfRange("status_read_queue", r.queue, 1, kMaxStatusReadQueue,
                      "queued status reads");
  }
  if (r.per_reader < 1 || r.per_reader > r.queue) {
    return OutOfRange("status_read_per_reader", r.per_reader, 1, r.queue,
                      "queued status reads of one reader (at most "
                      "--status_read_queue)");
  }
  if (r.slots < 1 || r.slots > static_cast<int64_t>(kMaxSessionTokenSlots)) {
    return OutOfRange("session_token_slots", r.slots, 1,
                      static_cast<int64_t>(kMaxSessionTokenSlots),
                      "remembered session tokens");
  }
  if (r.memtable_mib < 1 || r.memtable_mib > kMaxStoreMemtableMib) {
    return OutOfRange("store_memtable_mib", r.memtable_mib, 1,
                      kMaxStoreMemtableMib, "RocksDB memtables (MiB)");
  }
  if (r.block_cache_mib < 1 || r.block_cache_mib > kMaxStoreBlockCacheMib) {
    return OutOfRange("store_block_cache_mib", r.block_cache_mib, 1,
                      kMaxStoreBlockCacheMib, "the RocksDB block cache (MiB)");
  }
  if (r.error_devices < 1 ||
      r.error_devices > static_cast<int64_t>(kMaxErrorCachedDevices)) {
    return OutOfRange("error_cached_devices", r.error_devices, 1,
                      static_cast<int64_t>(kMaxErrorCachedDevices),
                      "devices cached for error reports");
  }
  return absl::OkStatus();
}

int64_t Wide(size_t v) {
  return v > static_cast<size_t>(INT64_MAX) ? INT64_MAX
                                            : static_cast<int64_t>(v);
}

}  // namespace

absl::Status ValidateShardSizes(const ShardSizes& s) {
  // Byte sizes are checked in whole MiB: a size that is not a whole
  // number of MiB is refused too (it cannot come from the flags).
  auto mib = [](size_t bytes) {
    return bytes % (size_t{1} << 20) != 0 ? int64_t{0} : Wide(bytes >> 20);
  };
  return Check({s.status_reads.threads, Wide(s.status_reads.max_queue),
                Wide(s.status_reads.max_per_key), Wide(s.session_token_slots),
                mib(s.store_memtable_bytes), mib(s.store_block_cache_bytes),
                Wide(s.error_cached_devices)});
}

absl::StatusOr<ShardSizes> ShardSizesFromFlags() {
  const Raw r{absl::GetFlag(FLAGS_status_read_threads),
              absl::GetFlag(FLAGS_status_read_queue),
              absl::GetFlag(FLAGS_status_read_per_reader),
              absl::GetFlag(FLAGS_session_token_slots),
              absl::GetFlag(FLAGS_store_memtable_mib),
              absl::GetFlag(FLAGS_store_block_cache_mib),
              absl::GetFlag(FLAGS_error_cached_devices)};
  if (absl::Status st = Check(r); !st.ok()) return st;
  ShardSizes s;
  s.status_reads.threads = static_cast<int>(r.threads);
  s.status_reads.max_queue = static_cast<size_t>(r.queue);
  s.status_reads.max_per_key = static_cast<size_t>(r.per_reader);
  s.session_token_slots = static_cast<size_t>(r.slots);
  s.store_memtable_bytes = static_cast<size_t>(r.memtable_mib) << 20;
  s.store_block_cache_bytes = static_cast<size_t>(r.block_cache_mib) << 20;
  s.error_cached_devices = static_cast<size_t>(r.error_devices);
  return s;
}

}  // namespace sphere
