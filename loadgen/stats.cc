#include "loadgen/stats.h"

#include <signal.h>

#include <algorithm>
#include <cmath>

namespace sphere::loadgen {

int LatencyHistogram::BucketOf(uint64_t micros) {
  if (micros < kSubBuckets) return static_cast<int>(micros);
  const int msb = 63 - __builtin_clzll(micros);  // >= 4
  const int power = msb - 3;                     // 1 for [16, 32)
  const int sub = static_cast<int>((micros >> (msb - 4)) & (kSubBuckets - 1));
  const int bucket = power * kSubBuckets + sub;
  return std::min(bucket, kBuckets - 1);
}

double LatencyHistogram::BucketMidMicros(int bucket) {
  if (bucket < kSubBuckets) return bucket + 0.5;
  const int power = bucket / kSubBuckets;
  const int sub = bucket % kSubBuckets;
  const double width = std::ldexp(1.0, power - 1);
  const double low = std::ldexp(1.0, power + 3) + sub * width;
  return low + width / 2;
}

void LatencyHistogram::Record(absl::Duration latency) {
  int64_t us = absl::ToInt64Microseconds(latency);
  if (us < 0) us = 0;
  buckets_[BucketOf(static_cast<uint64_t>(us))].fetch_add(
      1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

double LatencyHistogram::PercentileMs(double q) const {
  uint64_t total = 0;
  std::array<uint64_t, kBuckets> snap;
  for (int i = 0; i < kBuckets; ++i) {
    snap[i] = buckets_[i].load(std::memory_order_relaxed);
    total += snap[i];
  }
  if (total == 0) return 0;
  // The smallest bucket whose cumulative count reaches ceil(q * total).
  const uint64_t rank = std::max<uint64_t>(
      1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(total))));
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += snap[i];
    if (seen >= rank) return BucketMidMicros(i) / 1000.0;
  }
  return BucketMidMicros(kBuckets - 1) / 1000.0;
}

void PhaseStats::Start(absl::Time now, uint64_t total) {
  start_us_.store(absl::ToUnixMicros(now));
  absl::MutexLock l(&mu_);
  total_ = total;
}

void PhaseStats::Finish(absl::Time now) {
  absl::MutexLock l(&mu_);
  finish_ = now;
}

void PhaseStats::Skip(std::string reason) {
  absl::MutexLock l(&mu_);
  skipped_ = true;
  skip_reason_ = std::move(reason);
}

void PhaseStats::RecordOk(absl::Time now, absl::Duration latency) {
  latency_.Record(latency);
  ops_.fetch_add(1, std::memory_order_relaxed);
  const int64_t start = start_us_.load(std::memory_order_relaxed);
  int64_t second = start == 0 ? 0 : (absl::ToUnixMicros(now) - start) / 1000000;
  second = std::clamp<int64_t>(second, 0, kMaxSeconds - 1);
  per_second_[second].fetch_add(1, std::memory_order_relaxed);
}

void PhaseStats::SetMetric(const std::string& name, double value) {
  absl::MutexLock l(&mu_);
  metrics_[name] = value;
}

std::map<std::string, double> PhaseStats::metrics() const {
  absl::MutexLock l(&mu_);
  return metrics_;
}

void PhaseStats::RecordError(absl::StatusCode code) {
  const size_t i = static_cast<size_t>(code);
  errors_[i < errors_.size() ? i
                             : static_cast<size_t>(absl::StatusCode::kUnknown)]
      .fetch_add(1, std::memory_order_relaxed);
}

bool PhaseStats::started() const { return start_us_.load() != 0; }

bool PhaseStats::finished() const {
  absl::MutexLock l(&mu_);
  return finish_ != absl::InfinitePast();
}

bool PhaseStats::skipped() const {
  absl::MutexLock l(&mu_);
  return skipped_;
}

std::string PhaseStats::skip_reason() const {
  absl::MutexLock l(&mu_);
  return skip_reason_;
}

uint64_t PhaseStats::total() const {
  absl::MutexLock l(&mu_);
  return total_;
}

uint64_t PhaseStats::error_count() const {
  uint64_t n = 0;
  for (const auto& e : errors_) n += e.load(std::memory_order_relaxed);
  return n;
}

std::map<std::string, uint64_t> PhaseStats::errors() const {
  std::map<std::string, uint64_t> out;
  for (size_t i = 0; i < errors_.size(); ++i) {
    const uint64_t n = errors_[i].load(std::memory_order_relaxed);
    if (n > 0) out[StatusCodeName(static_cast<absl::StatusCode>(i))] = n;
  }
  return out;
}

double PhaseStats::elapsed_s(absl::Time now) const {
  const int64_t start = start_us_.load();
  if (start == 0) return 0;
  absl::Time end = now;
  {
    absl::MutexLock l(&mu_);
    if (finish_ != absl::InfinitePast()) end = finish_;
  }
  return std::max(0.0,
                  absl::ToDoubleSeconds(end - absl::FromUnixMicros(start)));
}

double PhaseStats::ops_per_s(absl::Time now) const {
  const double s = elapsed_s(now);
  return s > 0 ? static_cast<double>(ops()) / s : 0;
}

std::vector<uint64_t> PhaseStats::throughput_series(absl::Time now) const {
  const int n =
      std::clamp(static_cast<int>(std::ceil(elapsed_s(now))), 0, kMaxSeconds);
  std::vector<uint64_t> out(n);
  for (int i = 0; i < n; ++i) out[i] = per_second_[i].load();
  return out;
}

namespace {
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);
extern "C" void OnStopSignal(int) { g_stop.store(true); }
}  // namespace

void InstallStopHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second signal kills
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void RequestStop() { g_stop.store(true); }
bool StopRequested() { return g_stop.load(std::memory_order_relaxed); }

std::string StatusCodeName(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return "OK";
    case absl::StatusCode::kCancelled:
      return "CANCELLED";
    case absl::StatusCode::kUnknown:
      return "UNKNOWN";
    case absl::StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case absl::StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case absl::StatusCode::kNotFound:
      return "NOT_FOUND";
    case absl::StatusCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case absl::StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case absl::StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case absl::StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case absl::StatusCode::kAborted:
      return "ABORTED";
    case absl::StatusCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case absl::StatusCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case absl::StatusCode::kInternal:
      return "INTERNAL";
    case absl::StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case absl::StatusCode::kDataLoss:
      return "DATA_LOSS";
    case absl::StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

}  // namespace sphere::loadgen
