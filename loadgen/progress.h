// Progress: a live status line for the phase being run: phase, done/total,
// rate over the last tick, p50/p99 so far, errors. On a terminal the line
// is rewritten in place once per second; otherwise (a log file, a test) one
// line is appended every `quiet_interval`, so the output stays short.
//
// Thread-safety: Watch and Stop from the runner's thread; the printer runs
// on a thread of its own, reading PhaseStats (which is thread-safe).
#ifndef SPHERE_LOADGEN_PROGRESS_H_
#define SPHERE_LOADGEN_PROGRESS_H_

#include <cstdio>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "loadgen/stats.h"

namespace sphere::loadgen {

class Progress {
 public:
  Progress(FILE* out, bool tty,
           absl::Duration quiet_interval = absl::Seconds(10));
  ~Progress();  // Stop()
  // Watch switches the line to `stats` (nullptr: nothing to show).
  void Watch(const PhaseStats* stats);
  // Line formats one status line (no newline).
  static std::string Line(const PhaseStats& stats, absl::Time now,
                          double recent_rate);
  void Stop();

 private:
  void Loop();
  void PrintLocked(bool final) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  FILE* const out_;
  const bool tty_;
  const absl::Duration interval_;
  absl::Notification stop_;
  absl::Mutex mu_;
  const PhaseStats* stats_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t last_ops_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_time_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_PROGRESS_H_
