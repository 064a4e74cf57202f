// Metrics: process-wide counters, gauges and latency histograms kept in one
// prometheus-cpp registry, exported in Prometheus text format over HTTP
// (MetricsHttpServer, `/metrics`) and by every server's sphere.v1.Metrics
// gRPC service (RenderAll), both from the same registry.
//
// Example:
//   static auto* attests = metrics::Counter("sphere_attestations_total",
//                                           "Attestations by outcome");
//   attests->Increment("outcome=\"UP_TO_DATE\"");
//   static auto* lat = metrics::Histogram("sphere_attest_seconds", "...");
//   lat->Observe(seconds);
//
//   // Values computed at scrape time (store statistics, catalog lag):
//   auto handle = metrics::RegisterGaugeCallback(
//       "sphere_store_estimated_keys", "Keys per column family", [db] {
//         return std::vector<metrics::Sample>{{{{"cf", "devices"}}, 42}};
//       });  // unregistered when `handle` is destroyed
//
// Label sets are written in Prometheus syntax (`a="x",b="y"`). Every metric
// holds at most kMaxSeriesPerMetric label sets; further label sets are
// counted under the single series `overflow="true"`, so no caller can grow
// the registry without bound. Label values are cut to kMaxLabelValueBytes.
//
// Thread-safe; metric objects live for the process lifetime.
#ifndef SPHERE_COMMON_UTIL_METRICS_H_
#define SPHERE_COMMON_UTIL_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
class Collectable;
}  // namespace prometheus

namespace sphere::metrics {

inline constexpr int kMaxSeriesPerMetric = 1024;
inline constexpr size_t kMaxLabelValueBytes = 128;

using Labels = std::map<std::string, std::string>;

// ParseLabels reads `a="x",b="y"` (Prometheus label syntax, with \" \\ \n
// escapes in values). Errors on anything else.
absl::StatusOr<Labels> ParseLabels(absl::string_view text);

class CounterMetric {
 public:
  explicit CounterMetric(prometheus::Family<prometheus::Counter>* family)
      : family_(family) {}
  // Increment adds `n` to the series with the given Prometheus label set
  // (e.g. `outcome="ok"`; empty for no labels).
  void Increment(absl::string_view labels = "", uint64_t n = 1);
  void Increment(const Labels& labels, uint64_t n = 1);
  uint64_t Value(absl::string_view labels = "") const;
  uint64_t Value(const Labels& labels) const;

 private:
  prometheus::Counter* Series(const Labels& labels);
  prometheus::Family<prometheus::Counter>* const family_;
  mutable absl::Mutex mu_;
  int series_ ABSL_GUARDED_BY(mu_) = 0;
};

class GaugeMetric {
 public:
  explicit GaugeMetric(prometheus::Family<prometheus::Gauge>* family)
      : family_(family) {}
  void Set(double value, const Labels& labels = {});
  double Value(const Labels& labels = {}) const;

 private:
  prometheus::Family<prometheus::Gauge>* const family_;
  mutable absl::Mutex mu_;
  int series_ ABSL_GUARDED_BY(mu_) = 0;
};

// HistogramMetric has fixed exponential buckets from 50 µs to ~52 s.
class HistogramMetric {
 public:
  static constexpr int kBuckets = 21;
  explicit HistogramMetric(prometheus::Family<prometheus::Histogram>* family)
      : family_(family) {}
  void Observe(double seconds, const Labels& labels = {});
  uint64_t Count(const Labels& labels = {}) const;

 private:
  prometheus::Family<prometheus::Histogram>* const family_;
  mutable absl::Mutex mu_;
  int series_ ABSL_GUARDED_BY(mu_) = 0;
};

// Counter / Gauge / Histogram return the process-wide metric with that
// name, creating it on first use. A name already used for another type
// crashes (a programming error).
CounterMetric* Counter(absl::string_view name, absl::string_view help);
GaugeMetric* Gauge(absl::string_view name, absl::string_view help);
HistogramMetric* Histogram(absl::string_view name, absl::string_view help);

// Sample is one gauge value computed by a callback at scrape time.
struct Sample {
  Labels labels;
  double value = 0;
};

// GaugeCallbackHandle unregisters its callback when destroyed.
class GaugeCallbackHandle {
 public:
  explicit GaugeCallbackHandle(uint64_t id) : id_(id) {}
  ~GaugeCallbackHandle();
  GaugeCallbackHandle(const GaugeCallbackHandle&) = delete;
  GaugeCallbackHandle& operator=(const GaugeCallbackHandle&) = delete;

 private:
  const uint64_t id_;
};

// RegisterGaugeCallback adds a gauge family whose samples `collect` returns
// at each scrape (at most kMaxSeriesPerMetric are kept). `collect` must be
// quick and must not call back into this library.
std::unique_ptr<GaugeCallbackHandle> RegisterGaugeCallback(
    absl::string_view name, absl::string_view help,
    std::function<std::vector<Sample>()> collect);

// Collectable returns everything above (the registry and the callbacks) as
// one prometheus-cpp Collectable, for an Exposer.
std::shared_ptr<prometheus::Collectable> ProcessCollectable();

// RenderAll returns every metric in Prometheus text exposition format.
std::string RenderAll();

}  // namespace sphere::metrics

#endif  // SPHERE_COMMON_UTIL_METRICS_H_
