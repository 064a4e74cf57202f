#include "loadgen/progress.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sphere::loadgen {

Progress::Progress(FILE* out, bool tty, absl::Duration quiet_interval)
    : out_(out),
      tty_(tty),
      interval_(tty ? absl::Seconds(1) : quiet_interval),
      thread_([this] { Loop(); }) {}

Progress::~Progress() { Stop(); }

void Progress::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
  Watch(nullptr);
}

void Progress::Watch(const PhaseStats* stats) {
  absl::MutexLock l(&mu_);
  if (stats_ != nullptr) PrintLocked(/*final=*/true);
  stats_ = stats;
  last_ops_ = 0;
  last_time_ = absl::Now();
}

std::string Progress::Line(const PhaseStats& s, absl::Time now,
                           double recent_rate) {
  std::string errs;
  for (const auto& [code, n] : s.errors()) {
    absl::StrAppend(&errs, errs.empty() ? "" : " ", code, "=", n);
  }
  return absl::StrFormat(
      "%-14s %9d/%-9d %8.0f/s  p50 %8.3f ms  p99 %8.3f ms  errors %s", s.name(),
      s.ops(), s.total(), recent_rate, s.latency().PercentileMs(0.5),
      s.latency().PercentileMs(0.99), errs.empty() ? "0" : errs);
}

void Progress::PrintLocked(bool final) {
  if (stats_ == nullptr || !stats_->started()) return;
  const absl::Time now = absl::Now();
  const uint64_t ops = stats_->ops();
  const double dt = absl::ToDoubleSeconds(now - last_time_);
  const double rate =
      final ? stats_->ops_per_s(now) : (dt > 0 ? (ops - last_ops_) / dt : 0);
  last_ops_ = ops;
  last_time_ = now;
  const std::string line = Line(*stats_, now, rate);
  if (tty_) {
    std::fprintf(out_, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(out_, "%s%s\n", line.c_str(), final ? " (done)" : "");
  }
  std::fflush(out_);
}

void Progress::Loop() {
  while (!stop_.WaitForNotificationWithTimeout(interval_)) {
    absl::MutexLock l(&mu_);
    PrintLocked(/*final=*/false);
  }
}

}  // namespace sphere::loadgen
