// malloc_settings: tcmalloc's settings for the server and loadgen binaries,
// applied before main() by a static initializer (this target is
// alwayslink, a dependency of //third_party/system_libs:malloc only).
//
// Freed memory is kept, and returned in the background. Stop 22 turned on
// tcmalloc's aggressive decommit: every free of a span became an madvise,
// and every madvise a TLB shootdown on every core. On the PVM guests this
// project now runs on, that was half of loadgen's CPU in the error_report
// phase and ~10 % of the shards' (perf -a -g, docs/benchmarks.md "The
// allocator's decommit"), and it halved management's claim rate. Instead,
// tcmalloc keeps freed spans for reuse, and one thread returns what the
// page heap holds beyond a slack once per period: one pass of madvise calls
// per second instead of one per free, and the idle memory still goes back.
// An operator's TCMALLOC_AGGRESSIVE_DECOMMIT in the environment wins.
#include "third_party/system_libs/malloc_settings.h"

#include <gperftools/malloc_extension_c.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <chrono>
#include <cstdlib>
#include <thread>

namespace sphere::malloc_settings {
namespace {

std::atomic<uint64_t> g_passes{0};
std::atomic<uint64_t> g_released{0};

size_t EnvSize(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (end == v || *end != '\0') return fallback;
  return static_cast<size_t>(n);
}

void ReleaseLoop(std::chrono::milliseconds period, size_t slack) {
  for (;;) {
    std::this_thread::sleep_for(period);  // a timer, not synchronisation
    g_released.fetch_add(ReleaseExcessFreeMemory(slack),
                         std::memory_order_relaxed);
    g_passes.fetch_add(1, std::memory_order_relaxed);
  }
}

const bool kSettingsApplied = [] {
  if (std::getenv("TCMALLOC_AGGRESSIVE_DECOMMIT") == nullptr) {
    MallocExtension_SetNumericProperty("tcmalloc.aggressive_memory_decommit",
                                       0);
  }
  const size_t period_ms = EnvSize("SPHERE_MALLOC_RELEASE_PERIOD_MS", 1000);
  size_t slack_mb = EnvSize("SPHERE_MALLOC_RELEASE_SLACK_MB", 32);
  if (slack_mb > (SIZE_MAX >> 20)) slack_mb = 32;  // would overflow: default
  const size_t slack = slack_mb << 20;
  if (period_ms > 0) {
    // The thread starts before main() with every signal blocked (it
    // inherits this thread's mask, set here around its creation): a process
    // that blocks SIGTERM/SIGINT in main and takes them with sigwait (the
    // servers' graceful shutdown) never has one delivered to this thread,
    // not even before the thread first runs.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &saved);
    // Detached: it only sleeps and calls tcmalloc, which outlives every
    // static destructor; the process ends it at exit.
    std::thread(ReleaseLoop, std::chrono::milliseconds(period_ms), slack)
        .detach();
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  }
  return true;
}();

}  // namespace

size_t PageHeapFreeBytes() {
  size_t free_bytes = 0;
  if (MallocExtension_GetNumericProperty("tcmalloc.pageheap_free_bytes",
                                         &free_bytes) == 0) {
    return 0;
  }
  return free_bytes;
}

size_t ReleaseExcessFreeMemory(size_t slack_bytes) {
  const size_t free_bytes = PageHeapFreeBytes();
  if (free_bytes <= slack_bytes) return 0;
  const size_t excess = free_bytes - slack_bytes;
  MallocExtension_ReleaseToSystem(excess);
  return excess;
}

uint64_t ReleaserPasses() { return g_passes.load(std::memory_order_relaxed); }
uint64_t ReleasedBytes() { return g_released.load(std::memory_order_relaxed); }

}  // namespace sphere::malloc_settings
