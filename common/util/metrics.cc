#include "common/util/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <cstdlib>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sphere::metrics {
namespace {

// Built once: Observe passes them on every call (std::pow per bucket showed
// up in the per-attestation profile).
const prometheus::Histogram::BucketBoundaries& Buckets() {
  static const auto* b = [] {
    auto* out = new prometheus::Histogram::BucketBoundaries();
    for (int i = 0; i < HistogramMetric::kBuckets; ++i) {
      out->push_back(50e-6 * std::pow(2.0, i));
    }
    return out;
  }();
  return *b;
}

const Labels& OverflowLabels() {
  static const Labels* l = new Labels{{"overflow", "true"}};
  return *l;
}

Labels Bounded(const Labels& labels) {
  Labels out;
  for (const auto& [k, v] : labels) {
    out[k] =
        v.size() > kMaxLabelValueBytes ? v.substr(0, kMaxLabelValueBytes) : v;
  }
  return out;
}

struct Callback {
  std::string name, help;
  std::function<std::vector<Sample>()> collect;
};

struct Registry {
  absl::Mutex mu;
  std::shared_ptr<prometheus::Registry> prom =
      std::make_shared<prometheus::Registry>();
  absl::flat_hash_map<std::string, std::unique_ptr<CounterMetric>> counters
      ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, std::unique_ptr<GaugeMetric>> gauges
      ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, std::unique_ptr<HistogramMetric>> histograms
      ABSL_GUARDED_BY(mu);
  // Held while callbacks run, so a handle's destructor waits for a scrape
  // that is calling its callback.
  absl::Mutex cb_mu ABSL_ACQUIRED_AFTER(mu);
  uint64_t next_callback ABSL_GUARDED_BY(cb_mu) = 1;
  std::map<uint64_t, Callback> callbacks ABSL_GUARDED_BY(cb_mu);
};

Registry& GetRegistry() {
  static Registry* r = new Registry();
  return *r;
}

// ProcessMetrics is the registry plus the scrape-time callbacks.
class ProcessMetrics final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    Registry& r = GetRegistry();
    std::vector<prometheus::MetricFamily> out = r.prom->Collect();
    absl::MutexLock l(&r.cb_mu);
    // Callbacks with the same name form one family.
    std::map<std::string, prometheus::MetricFamily> families;
    for (const auto& [_, c] : r.callbacks) {
      auto& family = families[c.name];
      family.name = c.name;
      family.help = c.help;
      family.type = prometheus::MetricType::Gauge;
      for (const Sample& s : c.collect()) {
        if (family.metric.size() >= kMaxSeriesPerMetric) break;
        prometheus::ClientMetric m;
        for (const auto& [k, v] : Bounded(s.labels)) m.label.push_back({k, v});
        m.gauge.value = s.value;
        family.metric.push_back(std::move(m));
      }
    }
    for (auto& [_, f] : families) out.push_back(std::move(f));
    return out;
  }
};

}  // namespace

absl::StatusOr<Labels> ParseLabels(absl::string_view text) {
  Labels out;
  size_t i = 0;
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("label set ", text.substr(0, 64), ": ", what, " at ", i));
  };
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() &&
           (absl::ascii_isalnum(text[i]) || text[i] == '_')) {
      ++i;
    }
    if (i == start || absl::ascii_isdigit(text[start])) {
      return error("expected a label name");
    }
    std::string name(text.substr(start, i - start));
    if (i + 1 >= text.size() || text[i] != '=' || text[i + 1] != '"') {
      return error("expected =\"");
    }
    i += 2;
    std::string value;
    while (true) {
      if (i >= text.size()) return error("unterminated value");
      char c = text[i++];
      if (c == '"') break;
      if (c == '\\') {
        if (i >= text.size()) return error("dangling escape");
        char e = text[i++];
        if (e == 'n') {
          value.push_back('\n');
        } else if (e == '\\' || e == '"') {
          value.push_back(e);
        } else {
          return error("unknown escape");
        }
      } else {
        value.push_back(c);
      }
    }
    out[name] = std::move(value);
    if (i < text.size()) {
      if (text[i] != ',') return error("expected ,");
      ++i;
    }
  }
  return out;
}

namespace {
Labels MustParse(absl::string_view text) {
  if (text.empty()) return {};
  auto labels = ParseLabels(text);
  if (!labels.ok()) {
    // A label string is a literal in our own code: a bad one is a bug.
    fprintf(stderr, "metrics: %s\n", labels.status().ToString().c_str());
    abort();
  }
  return *std::move(labels);
}

// AddSeries returns the series for `labels`, or the overflow series once
// `*series` reached the limit.
template <typename T, typename... Args>
T* AddSeries(prometheus::Family<T>* family, absl::Mutex* mu, int* series,
             const Labels& labels, const Args&... args) {
  Labels bounded = Bounded(labels);
  absl::MutexLock l(mu);
  if (family->Has(bounded)) return &family->Add(bounded, args...);
  if (*series >= kMaxSeriesPerMetric - 1) {
    return &family->Add(OverflowLabels(), args...);
  }
  ++*series;
  return &family->Add(bounded, args...);
}
}  // namespace

prometheus::Counter* CounterMetric::Series(const Labels& labels) {
  return AddSeries(family_, &mu_, &series_, labels);
}

namespace {
// Series of CounterMetric::Increment(text) calls by metric and label text.
// Hot paths pass the same literal label text on every call (an attestation
// outcome, a method and code); parsing it into a Labels map, bounding that
// and looking it up in the prometheus family cost more than the increment
// itself. Counters live as long as the process, so the pointers stay valid.
// Bounded: at most kMaxCachedLabelTexts texts per metric are remembered;
// further texts take the parsing path on every call.
constexpr size_t kMaxCachedLabelTexts = 256;
struct TextSeriesCache {
  absl::Mutex mu;
  absl::flat_hash_map<const CounterMetric*,
                      absl::flat_hash_map<std::string, prometheus::Counter*>>
      by_metric ABSL_GUARDED_BY(mu);
};
TextSeriesCache& TextSeries() {
  static auto* c = new TextSeriesCache();
  return *c;
}
}  // namespace

void CounterMetric::Increment(absl::string_view labels, uint64_t n) {
  TextSeriesCache& cache = TextSeries();
  {
    absl::ReaderMutexLock l(&cache.mu);
    auto m = cache.by_metric.find(this);
    if (m != cache.by_metric.end()) {
      auto it = m->second.find(labels);
      if (it != m->second.end()) {
        it->second->Increment(static_cast<double>(n));
        return;
      }
    }
  }
  prometheus::Counter* series = Series(MustParse(labels));
  {
    absl::MutexLock l(&cache.mu);
    auto& texts = cache.by_metric[this];
    if (texts.size() < kMaxCachedLabelTexts) {
      texts.emplace(std::string(labels), series);
    }
  }
  series->Increment(static_cast<double>(n));
}

void CounterMetric::Increment(const Labels& labels, uint64_t n) {
  Series(labels)->Increment(static_cast<double>(n));
}

uint64_t CounterMetric::Value(absl::string_view labels) const {
  return Value(MustParse(labels));
}

uint64_t CounterMetric::Value(const Labels& labels) const {
  absl::MutexLock l(&mu_);
  Labels bounded = Bounded(labels);
  if (!family_->Has(bounded)) return 0;
  return static_cast<uint64_t>(family_->Add(bounded).Value());
}

void GaugeMetric::Set(double value, const Labels& labels) {
  AddSeries(family_, &mu_, &series_, labels)->Set(value);
}

double GaugeMetric::Value(const Labels& labels) const {
  absl::MutexLock l(&mu_);
  Labels bounded = Bounded(labels);
  if (!family_->Has(bounded)) return 0;
  return family_->Add(bounded).Value();
}

void HistogramMetric::Observe(double seconds, const Labels& labels) {
  AddSeries(family_, &mu_, &series_, labels, Buckets())->Observe(seconds);
}

uint64_t HistogramMetric::Count(const Labels& labels) const {
  absl::MutexLock l(&mu_);
  Labels bounded = Bounded(labels);
  if (!family_->Has(bounded)) return 0;
  return family_->Add(bounded, Buckets()).Collect().histogram.sample_count;
}

CounterMetric* Counter(absl::string_view name, absl::string_view help) {
  Registry& r = GetRegistry();
  absl::MutexLock l(&r.mu);
  auto& slot = r.counters[name];
  if (!slot) {
    auto& family = prometheus::BuildCounter()
                       .Name(std::string(name))
                       .Help(std::string(help))
                       .Register(*r.prom);
    slot = std::make_unique<CounterMetric>(&family);
  }
  return slot.get();
}

GaugeMetric* Gauge(absl::string_view name, absl::string_view help) {
  Registry& r = GetRegistry();
  absl::MutexLock l(&r.mu);
  auto& slot = r.gauges[name];
  if (!slot) {
    auto& family = prometheus::BuildGauge()
                       .Name(std::string(name))
                       .Help(std::string(help))
                       .Register(*r.prom);
    slot = std::make_unique<GaugeMetric>(&family);
  }
  return slot.get();
}

HistogramMetric* Histogram(absl::string_view name, absl::string_view help) {
  Registry& r = GetRegistry();
  absl::MutexLock l(&r.mu);
  auto& slot = r.histograms[name];
  if (!slot) {
    auto& family = prometheus::BuildHistogram()
                       .Name(std::string(name))
                       .Help(std::string(help))
                       .Register(*r.prom);
    slot = std::make_unique<HistogramMetric>(&family);
  }
  return slot.get();
}

GaugeCallbackHandle::~GaugeCallbackHandle() {
  Registry& r = GetRegistry();
  absl::MutexLock l(&r.cb_mu);
  r.callbacks.erase(id_);
}

std::unique_ptr<GaugeCallbackHandle> RegisterGaugeCallback(
    absl::string_view name, absl::string_view help,
    std::function<std::vector<Sample>()> collect) {
  Registry& r = GetRegistry();
  absl::MutexLock l(&r.cb_mu);
  uint64_t id = r.next_callback++;
  r.callbacks[id] = {std::string(name), std::string(help), std::move(collect)};
  return std::make_unique<GaugeCallbackHandle>(id);
}

std::shared_ptr<prometheus::Collectable> ProcessCollectable() {
  static auto* c =
      new std::shared_ptr<ProcessMetrics>(std::make_shared<ProcessMetrics>());
  return *c;
}

std::string RenderAll() {
  return prometheus::TextSerializer().Serialize(
      ProcessCollectable()->Collect());
}

}  // namespace sphere::metrics
