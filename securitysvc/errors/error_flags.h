// Command-line flags of the error-reporting ingest quota (shard_main), and
// the check that a quota can still accept one full batch.
//
//   --error_device_events_per_second  2000     sustained events/s per device
//   --error_device_event_burst        10000    events a device may send at once
//   --error_device_bytes_per_second   2097152  sustained bytes/s per device
//   --error_device_byte_burst         8388608  bytes a device may send at once
//   --error_device_max_in_flight      2        batches of one device between
//                                              Ingest and durability
//
// Why these defaults: docs/error-reporting.md ("Per-device quota"). A rate of
// 0 turns that bucket off (tests, benchmarks; never in production).
//
// Example (shard_main.cc):
//   absl::StatusOr<errors::ErrorStoreOptions> q =
//       errors::ErrorStoreOptionsFromFlags();
//   if (!q.ok()) { /* print q.status(), exit 2 */ }
//   eopts.store = *q;
#ifndef SPHERE_SECURITYSVC_ERRORS_ERROR_FLAGS_H_
#define SPHERE_SECURITYSVC_ERRORS_ERROR_FLAGS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "securitysvc/errors/error_store.h"

namespace sphere::errors {

// kMaxBatchBytes: the largest valid UploadErrorsRequest (kMaxEventsPerBatch
// events, each at every field's limit), rounded up: the byte burst must hold
// it or a device could never upload a full batch.
inline constexpr size_t kMaxEventBytes = 700;
inline constexpr size_t kMaxBatchBytes = kMaxEventsPerBatch * kMaxEventBytes;

// ValidateQuota: INVALID_ARGUMENT naming the flag when a burst cannot hold
// one full batch, a value is negative, or max_in_flight_per_device < 1.
absl::Status ValidateQuota(const ErrorStoreOptions& options);

// ErrorStoreOptionsFromFlags: the defaults of ErrorStoreOptions overridden by
// the --error_device_* flags, validated.
absl::StatusOr<ErrorStoreOptions> ErrorStoreOptionsFromFlags();

}  // namespace sphere::errors

#endif  // SPHERE_SECURITYSVC_ERRORS_ERROR_FLAGS_H_
