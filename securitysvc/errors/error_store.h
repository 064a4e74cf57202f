// ErrorStore: the error-reporting core of a shard (no gRPC). Devices upload
// batches of ErrorEvents; operators and relying parties query reports, page
// through them and read issues (events grouped by signature).
//
// Storage (column families). Format 2 (issue 14, stop 23): keys are
// binary and fixed-width after the tenant and signature names: a device id
// is its 32 bytes (not 64 hex), sequences and times are 8-byte big-endian
// (so byte order is numeric order). RocksDB's memtable compares keys on
// every insert; format 1's printable keys were 85-155 bytes and cost ~53 %
// of an upload's shard CPU in those compares. One accepted batch is ONE
// value plus a few compact index entries (issue 12):
//   errors_by_tenant_v2  <tenant>/<received_ms:8><device:32><first_seq:8>
//                     -> the batch's new events (an UploadErrorsRequest with
//                        only `events`, sorted by sequence)
//       the batch itself; the tenant+time query and CSV export scan it;
//   errors_by_device_v2  <device:32><last_seq:8> -> "<first_seq>,
//                     <received_ms>,<tenant>"
//       the per-device query and the exact duplicate check; a device's
//       stored batches cover disjoint sequence ranges [first, last];
//   errors_by_issue_v2   <tenant>/<component>/<version>/<kind:2><exit:4>
//                     <device:32><first_seq:8>  -> "<received_ms>,<count>"
//       one per signature per batch (count = sum of event counts; exit is
//       the int32 + 2^31, big-endian): component+version lookups, issues
//       and their trend per release;
//   error_devices     <device, 64 hex> -> "<dropped events>,<high-water mark>"
//       (unchanged from format 1) written only when the device reports more
//       dropped events than before (not once per batch: issue 14). A
//       device's high-water mark (its greatest stored sequence) is the last
//       errors_by_device_v2 key of the device, read with one reverse seek;
//       the mark in this record is what it was when the record was last
//       written.
// Format 1 (stops <= 22) wrote the same values under printable keys in
// errors_by_tenant, errors_by_device and errors_by_issue
// (<tenant>/<ms:13>/<device hex>/<first:20>, <device hex>/<last:20>,
// <tenant>/<component>/<version>/<kind:3>/<exit:10>/<device hex>/<first:20>).
// MigrateFormat1 moves them to format 2 when the shard starts (the error
// plugin calls it before the ErrorStore exists); the format-1 column
// families stay open (empty) so an upgraded store keeps opening.
//
// Ingest: validated (limits below; a bad batch is refused whole, naming the
// event and field, nothing stored), then the device's upload quota (token
// buckets of events and bytes, and at most max_in_flight_per_device batches
// between Ingest and durability: one device can never fill the shared
// group-commit queue; RESOURCE_EXHAUSTED, nothing stored). Duplicates: an
// in-memory, bounded per-device high-water mark. A batch whose sequences are
// all above it (the normal case) is built and queued at once with no read;
// so is a device's first upload ever: an in-memory filter of the devices
// with stored batches (DeviceFilter, bounded; filled by one scan of
// errors_by_device's keys on a thread of its own when the ErrorStore starts,
// and by every batch built since) tells a device with nothing stored from
// one that may have some. Otherwise (a retry, a device the filter may hold
// whose state is not in memory, or before that scan has finished) the batch
// goes to the ingest worker thread, which reads the device's last index key (and
// its record only when the batch reports dropped events) and the stored
// batches overlapping the batch's range: never a read on the caller's
// (gRPC callback) thread. The caller's callback runs once the batch is
// durable (from the group-commit thread) or on refusal. Two uploads of one
// device whose sequence ranges overlap, in flight at once: the second is
// refused with ABORTED (retry: it will then count as duplicates), so an event
// is never acknowledged as a duplicate of a write that later fails. An event
// whose sequence lies inside a stored batch's range without being part of it
// is refused (INVALID_ARGUMENT: a device's sequences rise).
//
// Retention: kRetention (14 days) after the service received a batch,
// against the injected clock. Queries hide expired reports at once;
// SweepExpired deletes them (point deletes in the three column families,
// found through the time-ordered tenant index) and then CompactRange drops
// the data physically (RocksDB: deletes + manual compaction; no compaction
// filter, so the Store interface stays storage-neutral).
//
// The ErrorStore must be the only writer of its column families while it
// exists (MigrateFormat1 runs before it): a batch written behind its back
// could be missing from the filter, and its events stored twice.
//
// Thread-safety: all methods may be called concurrently.
#ifndef SPHERE_SECURITYSVC_ERRORS_ERROR_STORE_H_
#define SPHERE_SECURITYSVC_ERRORS_ERROR_STORE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/store/group_commit.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "common/util/rate_limiter.h"
#include "protos/error_reporting.pb.h"
#include "securitysvc/errors/device_filter.h"

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

inline constexpr char kByDevice[] = "errors_by_device_v2";
inline constexpr char kByTenant[] = "errors_by_tenant_v2";
inline constexpr char kByIssue[] = "errors_by_issue_v2";
inline constexpr char kDevices[] = "error_devices";
// Format 1's column families (empty once MigrateFormat1 has run).
inline constexpr char kByDeviceV1[] = "errors_by_device";
inline constexpr char kByTenantV1[] = "errors_by_tenant";
inline constexpr char kByIssueV1[] = "errors_by_issue";

// ColumnFamilies: the column families ErrorStore needs (format 1's too).
std::vector<std::string> ColumnFamilies();

// Format-2 keys (layout above) of a device given as 64 lowercase hex:
// tests, the benchmark's floor and tools build keys with these.
std::string BatchKey(absl::string_view tenant, int64_t received_ms,
                     absl::string_view device_hex, uint64_t first);
std::string DeviceIndexKey(absl::string_view device_hex, uint64_t last);
std::string IssueKey(absl::string_view tenant, absl::string_view component,
                     absl::string_view version, int kind, int32_t exit_code,
                     absl::string_view device_hex, uint64_t first);

// MigrateFormat1 rewrites every format-1 key (errors_by_tenant,
// errors_by_device, errors_by_issue) as its format-2 key with the same
// value and deletes the old one; returns how many keys it moved (0 when
// there were none). Each write moves up to 10,000 keys atomically, so a
// crash in between leaves the rest for the next call. DataLoss names a
// format-1 key it cannot parse. Call it before an ErrorStore uses `store`.
absl::StatusOr<int64_t> MigrateFormat1(store::Store* store);

// ValidateBatch: INVALID_ARGUMENT naming the first violated limit.
absl::Status ValidateBatch(const v1::UploadErrorsRequest& request);
// ValidateTenantId: 1..64 bytes of [A-Za-z0-9._-].
absl::Status ValidateTenantId(absl::string_view tenant_id);

// ToReport: the stored report for `event` (Azure Sphere's report shape).
v1::ErrorReport ToReport(const std::string& device_id,
                         const std::string& tenant_id,
                         const v1::ErrorEvent& event, int64_t received_ms);

// Per-device upload quota and memory bounds. A rate of 0 disables that
// bucket (tests, the crash writer). Bursts must hold one full batch.
struct ErrorStoreOptions {
  double device_events_per_second = 2000;
  double device_event_burst = 10000;
  double device_bytes_per_second = 2 << 20;
  double device_byte_burst = 8 << 20;
  // Batches of one device between Ingest and durability (its share of the
  // group-commit queue: <= this x 1000 events).
  int max_in_flight_per_device = 2;
  // Devices whose high-water mark is kept in memory (beyond: idle ones are
  // forgotten and re-read from error_devices by the worker).
  size_t max_cached_devices = 200000;
  // Batches waiting for the ingest worker (beyond: RESOURCE_EXHAUSTED).
  // Every device's first upload since the shard started waits here (one
  // read), and a gateway's UploadErrorsBatch brings up to 256 at once; a
  // job holds no copy of its events (~200 bytes), so 8192 is ~2 MB.
  size_t max_worker_queue = 8192;
  // Of those, what one caller (Ingest's `caller`: a gateway's identity, or
  // the device itself) may hold (beyond: RESOURCE_EXHAUSTED for that caller
  // only): one gateway can never fill the queue every other caller shares.
  // 0 = max_worker_queue / 2.
  size_t max_worker_queue_per_caller = 0;
  // The filter of devices with stored batches (ErrorStore's comment): a
  // device's first upload ever needs no read. false: every device whose
  // state is not in memory takes the worker's read (tests of that path).
  bool filter_stored_devices = true;
  // Its memory (~1.25 bytes a device with stored batches, up to 2.5 as it
  // grows); beyond it the filter answers "maybe" for every device.
  size_t stored_devices_filter_max_bytes = size_t{64} << 20;
};

// ForEachStoredEvent calls `fn` for every stored event, batch by batch in
// errors_by_tenant order (expired ones not yet swept included): durability
// checks and tools. DataLoss on a corrupt batch.
absl::Status ForEachStoredEvent(
    store::Reader& reader,
    const std::function<void(absl::string_view device, absl::string_view tenant,
                             const v1::ErrorEvent& event)>& fn);

class ErrorStore {
 public:
  using IngestDone =
      std::function<void(absl::StatusOr<v1::UploadErrorsResponse>)>;

  // All pointers must outlive the ErrorStore; the writers must be stopped
  // (their callbacks run) before the ErrorStore is destroyed.
  ErrorStore(store::Store* store, store::GroupCommitWriter* writer,
             Clock* clock, ErrorStoreOptions options = {});
  // Several group-commit writers over the same store: a device's batches
  // always go to the same writer (chosen by a hash of the device id), so its
  // records stay in order; different writers' synced writes run at once and
  // RocksDB merges them into one WAL sync with parallel memtable inserts
  // (one writer thread alone inserts every key of every group serially).
  // `writers` must not be empty.
  ErrorStore(store::Store* store,
             std::vector<store::GroupCommitWriter*> writers, Clock* clock,
             ErrorStoreOptions options = {});
  ~ErrorStore();
  ErrorStore(const ErrorStore&) = delete;
  ErrorStore& operator=(const ErrorStore&) = delete;

  // Ingest stores `request`'s new events for the device (identity from the
  // caller's credential) and calls `done` exactly once: with the counts once
  // durable, or with the refusal (INVALID_ARGUMENT, ABORTED for a concurrent
  // upload of the same events, RESOURCE_EXHAUSTED when the device is over
  // its quota or a queue is full, or the store's error). Never blocks and
  // never reads the store on the calling thread. `request` must stay valid
  // until `done` runs (a gRPC reactor's request does); it is not copied.
  // `caller` is who holds the upload's place in the shared ingest queue
  // (empty: the device itself); it bounds one caller's share.
  void Ingest(const std::string& device_id, const std::string& tenant_id,
              const v1::UploadErrorsRequest& request, IngestDone done,
              absl::string_view caller = {});

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

  // AwaitDeviceFilter blocks until the startup scan that fills the filter of
  // devices with stored batches has ended; true when the filter is in use
  // (false: ErrorStoreOptions::filter_stored_devices is off, or the scan
  // failed). Tests and benchmarks; uploads never wait for the scan.
  bool AwaitDeviceFilter();

 private:
  struct Job;
  struct DeviceState {
    bool loaded = false;          // hwm read from errors_by_device
    bool dropped_loaded = false;  // dropped read from error_devices
    uint64_t hwm = 0;             // every stored sequence is <= hwm
    uint64_t dropped = 0;
    // Sequence ranges [first, last] of batches between Ingest and
    // durability.
    std::vector<std::pair<uint64_t, uint64_t>> in_flight;
  };
  struct StoredBatch {
    uint64_t first = 0, last = 0;
    std::vector<uint64_t> seqs;  // sorted
  };

  int64_t FloorMs() const;
  absl::Status TakeQuota(const std::string& device_id,
                         const v1::UploadErrorsRequest& request);
  // Device states are keyed by the device's 32 id bytes (Job::device_bin).
  DeviceState& StateLocked(absl::string_view device_bin)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unregister(absl::string_view device_bin, uint64_t first,
                  uint64_t last);
  // Slow path (worker thread): reads the device's last index key (and its
  // record when the batch reports dropped events) and the stored
  // batches overlapping the job's range, then builds.
  void Resolve(std::shared_ptr<Job> job);
  // Builds the write batch of the job's new events (classified against
  // `stored`, sorted by last) and submits it to the group commit.
  void Build(const std::shared_ptr<Job>& job,
             const std::vector<StoredBatch>& stored);
  void WorkerLoop();
  // The startup scan of errors_by_device's keys into stored_ (its own
  // thread); on success, stored_ answers from then on.
  void FillStoredDevices();

  store::GroupCommitWriter* WriterFor(const std::string& device) const;

  store::Store* const store_;
  const std::vector<store::GroupCommitWriter*> writers_;
  Clock* const clock_;
  const ErrorStoreOptions options_;
  const size_t max_queue_per_caller_;
  std::unique_ptr<RateLimiter> event_quota_;
  std::unique_ptr<RateLimiter> byte_quota_;
  absl::Mutex mu_;
  // By the device's 32 id bytes.
  absl::flat_hash_map<std::string, DeviceState> devices_ ABSL_GUARDED_BY(mu_);
  // Every device with a batch in errors_by_device (or Built since start),
  // once stored_ready_; before, only those Built since start.
  DeviceFilter stored_ ABSL_GUARDED_BY(mu_);
  bool stored_ready_ ABSL_GUARDED_BY(mu_) = false;
  bool filling_ ABSL_GUARDED_BY(mu_) = false;  // the scan is running
  std::atomic<bool> stop_filling_{false};
  std::thread filler_;

  absl::Mutex worker_mu_;
  std::deque<std::shared_ptr<Job>> work_ ABSL_GUARDED_BY(worker_mu_);
  // Jobs in work_ by caller (absent = none).
  absl::flat_hash_map<std::string, size_t> queued_by_caller_
      ABSL_GUARDED_BY(worker_mu_);
  bool stopping_ ABSL_GUARDED_BY(worker_mu_) = false;
  std::thread worker_;
};

}  // namespace sphere::errors

#endif  // SPHERE_SECURITYSVC_ERRORS_ERROR_STORE_H_
