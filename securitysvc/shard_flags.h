// Command-line flags for sizes of shared shard structures that used to be
// fixed in code (shard_main). The defaults are the values that were in code:
//
//   --status_read_threads     2     threads reading the store for
//                                   GetDeviceStatus / GetDeviceHistory
//   --status_read_queue       256   reads waiting for those threads (each
//                                   holds one request, at most 1,000 ids)
//   --status_read_per_reader  32    of those, at most this many from one
//                                   reader (a tenant, or the platform)
//   --session_token_slots     8192  verified gateway session tokens
//                                   remembered (each up to the 1 KiB a
//                                   client may send)
//   --store_memtable_mib      16    RocksDB memtables, all column families
//                                   together (a shared write buffer manager)
//   --store_block_cache_mib   8     RocksDB block cache, index and filter
//                                   blocks included
//   --error_cached_devices    32768 devices whose error-report high-water
//                                   mark is kept in memory (more are
//                                   forgotten when idle and re-read)
//
// The last three are fixed costs, not costs per device: issue 14 wants a
// shard's memory per device at or under 1 KiB, so nothing a shard keeps in
// memory may grow with the fleet beyond the catalog's devices.
//
// Every value is checked: zero, negative and absurd values are refused
// with INVALID_ARGUMENT naming the flag and its range (docs/shard-flags.md).
//
// Example (shard_main.cc):
//   absl::StatusOr<ShardSizes> sizes = ShardSizesFromFlags();
//   if (!sizes.ok()) return Fail(sizes.status());
//   aopts.status_reads = sizes->status_reads;
//   o.session_token_slots = sizes->session_token_slots;
#ifndef SPHERE_SECURITYSVC_SHARD_FLAGS_H_
#define SPHERE_SECURITYSVC_SHARD_FLAGS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/util/worker_pool.h"
#include "securitysvc/attestation/device_status_service.h"
#include "securitysvc/auth/device_authenticator.h"

namespace sphere {

// The accepted ranges.
inline constexpr int kMaxStatusReadThreads = 64;
inline constexpr size_t kMaxStatusReadQueue = 65536;
inline constexpr size_t kMaxSessionTokenSlots = auth::kMaxVerifiedTokenSlots;
inline constexpr int64_t kMaxStoreMemtableMib = 4096;
inline constexpr int64_t kMaxStoreBlockCacheMib = 65536;
inline constexpr size_t kMaxErrorCachedDevices = size_t{1} << 24;

struct ShardSizes {
  WorkerPool::Options status_reads =
      attestation::DeviceStatusServiceImpl::DefaultReadPool();
  size_t session_token_slots = auth::kVerifiedTokenSlots;
  // The shard's RocksDB memory (store::RocksOptions): memtables of all
  // column families together and the block cache, in bytes.
  size_t store_memtable_bytes = size_t{16} << 20;
  size_t store_block_cache_bytes = size_t{8} << 20;
  // errors::ErrorStoreOptions::max_cached_devices for the shard (~200 bytes
  // each: the 64-character id, the high-water mark, the table's slack).
  size_t error_cached_devices = 32768;
};

// ValidateShardSizes: INVALID_ARGUMENT naming the flag when a value is out
// of its range: threads in [1, kMaxStatusReadThreads], queue in
// [1, kMaxStatusReadQueue], per reader in [1, queue], token slots in
// [1, kMaxSessionTokenSlots], memtables in [1, kMaxStoreMemtableMib] MiB,
// block cache in [1, kMaxStoreBlockCacheMib] MiB, cached error devices in
// [1, kMaxErrorCachedDevices].
absl::Status ValidateShardSizes(const ShardSizes& sizes);

// ShardSizesFromFlags: the flags above, validated.
absl::StatusOr<ShardSizes> ShardSizesFromFlags();

}  // namespace sphere

#endif  // SPHERE_SECURITYSVC_SHARD_FLAGS_H_
