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

struct ShardSizes {
  WorkerPool::Options status_reads =
      attestation::DeviceStatusServiceImpl::DefaultReadPool();
  size_t session_token_slots = auth::kVerifiedTokenSlots;
};

// ValidateShardSizes: INVALID_ARGUMENT naming the flag when a value is out
// of its range: threads in [1, kMaxStatusReadThreads], queue in
// [1, kMaxStatusReadQueue], per reader in [1, queue], token slots in
// [1, kMaxSessionTokenSlots].
absl::Status ValidateShardSizes(const ShardSizes& sizes);

// ShardSizesFromFlags: the flags above, validated.
absl::StatusOr<ShardSizes> ShardSizesFromFlags();

}  // namespace sphere

#endif  // SPHERE_SECURITYSVC_SHARD_FLAGS_H_
