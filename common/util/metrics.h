// Metrics: process-wide counters and latency histograms, exported in
// Prometheus text format by every server's Metrics service.
//
// Example:
//   static auto* attests = metrics::Counter("sphere_attestations_total",
//                                           "Attestations by outcome");
//   attests->Increment("outcome=\"UP_TO_DATE\"");
//   static auto* lat = metrics::Histogram("sphere_attest_seconds", "...");
//   lat->Observe(seconds);
//
// Thread-safe; metric objects live for the process lifetime.
#ifndef SPHERE_COMMON_UTIL_METRICS_H_
#define SPHERE_COMMON_UTIL_METRICS_H_

#include <array>
#include <atomic>
#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace sphere::metrics {

class CounterMetric {
 public:
  CounterMetric(std::string name, std::string help)
      : name_(std::move(name)), help_(std::move(help)) {}
  // Increment adds `n` to the series with the given Prometheus label set
  // (e.g. `outcome="ok"`; empty for no labels).
  void Increment(absl::string_view labels = "", uint64_t n = 1);
  uint64_t Value(absl::string_view labels = "") const;
  void Render(std::string* out) const;

 private:
  const std::string name_, help_;
  mutable absl::Mutex mu_;
  std::map<std::string, uint64_t> series_ ABSL_GUARDED_BY(mu_);
};

// HistogramMetric has fixed exponential buckets from 50 µs to ~52 s.
class HistogramMetric {
 public:
  static constexpr int kBuckets = 21;
  HistogramMetric(std::string name, std::string help)
      : name_(std::move(name)), help_(std::move(help)) {}
  void Observe(double seconds);
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  void Render(std::string* out) const;

 private:
  const std::string name_, help_;
  std::array<std::atomic<uint64_t>, kBuckets + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};
};

// Counter / Histogram return the process-wide metric with that name,
// creating it on first use.
CounterMetric* Counter(absl::string_view name, absl::string_view help);
HistogramMetric* Histogram(absl::string_view name, absl::string_view help);

// RenderAll returns every metric in Prometheus text exposition format.
std::string RenderAll();

}  // namespace sphere::metrics

#endif  // SPHERE_COMMON_UTIL_METRICS_H_
