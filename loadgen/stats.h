// PhaseStats: what one load-generator phase measured, recorded from any
// thread without locks on the hot path (atomics only), read by the progress
// printer and the report writer.
//
//  * LatencyHistogram: log-linear buckets (16 per power of two, <= 6.25 %
//    relative error) from 1 µs to ~19 h; percentiles are bucket midpoints.
//  * ops completed per second since the phase started (up to kMaxSeconds
//    slots; later completions land in the last slot), for throughput plots.
//  * errors by gRPC status code name ("UNAVAILABLE": 3, ...).
//  * skipped + reason: a phase whose service this cluster does not serve.
//  * metrics: a phase's own extra numbers by name (e.g. update_install's
//    "mb_per_s"), reported next to the standard fields.
//
// Thread-safety: Record* from any thread; Start/Finish/Skip from the thread
// that runs the phase; readers see a consistent-enough snapshot (counters
// are read one by one).
#ifndef SPHERE_LOADGEN_STATS_H_
#define SPHERE_LOADGEN_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sphere::loadgen {

class LatencyHistogram {
 public:
  static constexpr int kSubBuckets = 16;
  static constexpr int kPowers = 36;  // 2^36 µs ~ 19 h
  static constexpr int kBuckets = kSubBuckets * kPowers;

  void Record(absl::Duration latency);
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // Percentile in milliseconds (q in [0, 1]); 0 when empty.
  double PercentileMs(double q) const;
  // Bucket helpers (exposed for tests).
  static int BucketOf(uint64_t micros);
  static double BucketMidMicros(int bucket);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
};

class PhaseStats {
 public:
  static constexpr int kMaxSeconds = 7200;

  explicit PhaseStats(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }

  void Start(absl::Time now, uint64_t total);
  void Finish(absl::Time now);
  void Skip(std::string reason);

  // RecordOk: one operation completed successfully, `latency` after it began.
  void RecordOk(absl::Time now, absl::Duration latency);
  // RecordError: one RPC or operation failed with `code` (a retried
  // operation may fail several times before it succeeds).
  void RecordError(absl::StatusCode code);
  // SetMetric records (or replaces) one extra number of this phase.
  void SetMetric(const std::string& name, double value);
  std::map<std::string, double> metrics() const;

  bool started() const;
  bool finished() const;
  bool skipped() const;
  std::string skip_reason() const;
  uint64_t total() const;
  uint64_t ops() const { return ops_.load(std::memory_order_relaxed); }
  uint64_t error_count() const;
  std::map<std::string, uint64_t> errors() const;
  // Seconds from Start to Finish (or to `now` while running).
  double elapsed_s(absl::Time now) const;
  double ops_per_s(absl::Time now) const;
  const LatencyHistogram& latency() const { return latency_; }
  // Completions per second, one entry per elapsed second.
  std::vector<uint64_t> throughput_series(absl::Time now) const;

 private:
  const std::string name_;
  LatencyHistogram latency_;
  std::atomic<uint64_t> ops_{0};
  std::array<std::atomic<uint64_t>, 17> errors_{};  // by absl::StatusCode
  std::array<std::atomic<uint32_t>, kMaxSeconds> per_second_{};
  std::atomic<int64_t> start_us_{0};  // unix µs; 0 = not started

  mutable absl::Mutex mu_;
  absl::Time finish_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  bool skipped_ ABSL_GUARDED_BY(mu_) = false;
  std::string skip_reason_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, double> metrics_ ABSL_GUARDED_BY(mu_);
};

// Stop: a run-wide request to stop early (SIGINT / SIGTERM). Phases check
// it between operations and return CANCELLED; the runner still writes the
// report with what was measured. InstallStopHandlers makes the first
// SIGINT or SIGTERM request a stop and the second one kill as usual.
void InstallStopHandlers();
void RequestStop();
bool StopRequested();

// StatusCodeName: "OK", "CANCELLED", ... "UNAUTHENTICATED" (gRPC's names).
std::string StatusCodeName(absl::StatusCode code);

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_STATS_H_
