// ErrorStore: the error-reporting core of a shard (no gRPC). Devices upload
// batches of ErrorEvents; operators and relying parties query reports, page
// through them and read issues (events grouped by signature).
//
// Storage (column families, keys designed for the queries; every key part is
// printable and '/'-separated, numbers zero-padded so order is numeric):
//   errors_by_device  <device>/<seq:20>                       -> ErrorReport
//       the idempotency key (device, sequence) and the per-device query;
//   errors_by_tenant  <tenant>/<received_ms:13>/<device>/<seq:20> -> ErrorReport
//       the tenant+time query and CSV export;
//   errors_by_issue   <tenant>/<component>/<version>/<kind:3>/<exit:10>/
//                     <device>/<seq:20>                       -> "<received_ms>,<count>"
//       component+version lookups, issues and their trend per release;
//   error_devices     <device>                                -> dropped events
//
// Ingest: validated (limits below; a bad batch is refused whole, naming the
// event and field, nothing stored), then events already stored are counted
// as duplicates and the rest go, with their three index keys, to the shard's
// GroupCommitWriter. The caller's callback runs once the batch is durable
// (from the group-commit thread) or at once on refusal: Ingest never blocks.
// Two uploads of the same (device, sequence) in flight at once: the second
// is refused with ABORTED (retry: it will then count as a duplicate), so an
// event is never acknowledged as a duplicate of a write that later fails.
//
// Retention: kRetention (14 days) after the service received an event,
// against the injected clock. Queries hide expired reports at once;
// SweepExpired deletes them (point deletes in the three column families,
// found through the time-ordered tenant index) and then CompactRange drops
// the data physically (RocksDB: deletes + manual compaction; no compaction
// filter, so the Store interface stays storage-neutral).
//
// Thread-safety: all methods may be called concurrently.
#ifndef SPHERE_SECURITYSVC_ERRORS_ERROR_STORE_H_
#define SPHERE_SECURITYSVC_ERRORS_ERROR_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/store/group_commit.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "protos/error_reporting.pb.h"

namespace sphere::errors {

// Limits, checked before anything is stored, logged or echoed.
inline constexpr int kMaxEventsPerBatch = 1000;
inline constexpr size_t kMaxComponentBytes = 64;
inline constexpr size_t kMaxVersionBytes = 32;
inline constexpr size_t kMaxDetailBytes = 512;
inline constexpr uint32_t kMaxEventCount = 1000000;
inline constexpr size_t kMaxTenantIdBytes = 64;
inline constexpr uint32_t kDefaultPageSize = 100;
inline constexpr uint32_t kMaxPageSize = 1000;
inline constexpr size_t kMaxPageTokenBytes = 512;
// Keys one query call may scan (filters can skip many): a page may come back
// short with a next_page_token; keep paging.
inline constexpr int kMaxScanPerPage = 20000;
// Issue keys one ListIssues/GetIssue call may aggregate (beyond: truncated).
inline constexpr int kMaxIssueScan = 500000;
inline constexpr uint32_t kDefaultIssues = 100;
inline constexpr uint32_t kMaxIssues = 1000;
inline constexpr absl::Duration kRetention = absl::Hours(24 * 14);

inline constexpr char kByDevice[] = "errors_by_device";
inline constexpr char kByTenant[] = "errors_by_tenant";
inline constexpr char kByIssue[] = "errors_by_issue";
inline constexpr char kDevices[] = "error_devices";

// ColumnFamilies: the column families ErrorStore needs.
std::vector<std::string> ColumnFamilies();

// ValidateBatch: INVALID_ARGUMENT naming the first violated limit.
absl::Status ValidateBatch(const v1::UploadErrorsRequest& request);
// ValidateTenantId: 1..64 bytes of [A-Za-z0-9._-].
absl::Status ValidateTenantId(absl::string_view tenant_id);

// ToReport: the stored report for `event` (Azure Sphere's report shape).
v1::ErrorReport ToReport(const std::string& device_id,
                         const std::string& tenant_id,
                         const v1::ErrorEvent& event, int64_t received_ms);

class ErrorStore {
 public:
  using IngestDone =
      std::function<void(absl::StatusOr<v1::UploadErrorsResponse>)>;

  // All pointers must outlive the ErrorStore.
  ErrorStore(store::Store* store, store::GroupCommitWriter* writer,
             Clock* clock)
      : store_(store), writer_(writer), clock_(clock) {}

  // Ingest stores `request`'s new events for the device (identity from the
  // caller's credential) and calls `done` exactly once: with the counts once
  // durable, or with the refusal (INVALID_ARGUMENT, ABORTED for a concurrent
  // upload of the same events, RESOURCE_EXHAUSTED when the write queue is
  // full, or the store's error).
  void Ingest(const std::string& device_id, const std::string& tenant_id,
              const v1::UploadErrorsRequest& request, IngestDone done);

  // Query: reports of request.tenant_id() (authorisation is the caller's),
  // oldest first by received time (by sequence for one device).
  absl::StatusOr<v1::QueryErrorsResponse> Query(
      const v1::QueryErrorsRequest& request) const;

  absl::StatusOr<v1::ListIssuesResponse> ListIssues(
      const v1::ListIssuesRequest& request) const;
  absl::StatusOr<v1::GetIssueResponse> GetIssue(
      const v1::GetIssueRequest& request) const;

  // SweepExpired deletes every report received more than kRetention ago and
  // compacts; returns how many reports it deleted.
  absl::StatusOr<int64_t> SweepExpired();

  // DroppedEvents: the largest dropped_events the device reported (0 if
  // none).
  absl::StatusOr<uint64_t> DroppedEvents(const std::string& device_id) const;

 private:
  int64_t FloorMs() const;

  store::Store* const store_;
  store::GroupCommitWriter* const writer_;
  Clock* const clock_;
  absl::Mutex mu_;
  // (device, sequence) keys of batches between Ingest and durability.
  absl::flat_hash_set<std::string> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::errors

#endif  // SPHERE_SECURITYSVC_ERRORS_ERROR_STORE_H_
