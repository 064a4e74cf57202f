#include "common/util/metrics.h"

#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sphere::metrics {
namespace {

double BucketBound(int i) { return 50e-6 * std::pow(2.0, i); }

struct Registry {
  absl::Mutex mu;
  std::map<std::string, std::unique_ptr<CounterMetric>> counters;
  std::map<std::string, std::unique_ptr<HistogramMetric>> histograms;
};

Registry& GetRegistry() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace

void CounterMetric::Increment(absl::string_view labels, uint64_t n) {
  absl::MutexLock l(&mu_);
  series_[std::string(labels)] += n;
}

uint64_t CounterMetric::Value(absl::string_view labels) const {
  absl::MutexLock l(&mu_);
  auto it = series_.find(std::string(labels));
  return it == series_.end() ? 0 : it->second;
}

void CounterMetric::Render(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ", help_, "\n# TYPE ", name_,
                  " counter\n");
  absl::MutexLock l(&mu_);
  for (const auto& [labels, v] : series_) {
    if (labels.empty()) {
      absl::StrAppend(out, name_, " ", v, "\n");
    } else {
      absl::StrAppend(out, name_, "{", labels, "} ", v, "\n");
    }
  }
}

void HistogramMetric::Observe(double seconds) {
  int i = 0;
  while (i < kBuckets && seconds > BucketBound(i)) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(seconds * 1e6),
                        std::memory_order_relaxed);
}

void HistogramMetric::Render(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name_, " ", help_, "\n# TYPE ", name_,
                  " histogram\n");
  uint64_t cumulative = 0;
  for (int i = 0; i < kBuckets; ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    absl::StrAppend(out, name_, "_bucket{le=\"",
                    absl::StrFormat("%g", BucketBound(i)), "\"} ", cumulative,
                    "\n");
  }
  cumulative += buckets_[kBuckets].load(std::memory_order_relaxed);
  absl::StrAppend(out, name_, "_bucket{le=\"+Inf\"} ", cumulative, "\n");
  absl::StrAppend(
      out, name_, "_sum ",
      absl::StrFormat("%.6f", sum_micros_.load(std::memory_order_relaxed) / 1e6),
      "\n", name_, "_count ", count_.load(std::memory_order_relaxed), "\n");
}

CounterMetric* Counter(absl::string_view name, absl::string_view help) {
  Registry& r = GetRegistry();
  absl::MutexLock l(&r.mu);
  auto& slot = r.counters[std::string(name)];
  if (!slot) {
    slot = std::make_unique<CounterMetric>(std::string(name),
                                           std::string(help));
  }
  return slot.get();
}

HistogramMetric* Histogram(absl::string_view name, absl::string_view help) {
  Registry& r = GetRegistry();
  absl::MutexLock l(&r.mu);
  auto& slot = r.histograms[std::string(name)];
  if (!slot) {
    slot = std::make_unique<HistogramMetric>(std::string(name),
                                             std::string(help));
  }
  return slot.get();
}

std::string RenderAll() {
  Registry& r = GetRegistry();
  std::string out;
  absl::MutexLock l(&r.mu);
  for (const auto& [_, c] : r.counters) c->Render(&out);
  for (const auto& [_, h] : r.histograms) h->Render(&out);
  return out;
}

}  // namespace sphere::metrics
