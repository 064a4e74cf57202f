// Which malloc a binary that depends on //third_party/system_libs:malloc
// runs with: tcmalloc in the normal build, glibc's under the sanitizer
// configs (asan, tsan, fuzz), which interpose malloc themselves.
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#ifndef SPHERE_EXPECT_GLIBC_MALLOC
#include <gperftools/malloc_extension_c.h>

#include "third_party/system_libs/malloc_settings.h"
#endif

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace {

// LibraryDefining: the file name of the shared object that defines the
// global symbol `name` as this process resolves it.
std::string LibraryDefining(const char* name) {
  void* sym = dlsym(RTLD_DEFAULT, name);
  if (sym == nullptr) return "";
  Dl_info info;
  if (dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

TEST(MallocTest, MallocComesFromTheConfiguredAllocator) {
  const std::string lib = LibraryDefining("malloc");
#ifdef SPHERE_EXPECT_GLIBC_MALLOC
  EXPECT_EQ(lib.find("tcmalloc"), std::string::npos) << lib;
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "tc_malloc"), nullptr);
#else
  EXPECT_NE(lib.find("libtcmalloc_minimal"), std::string::npos) << lib;
  EXPECT_EQ(LibraryDefining("free"), lib);
  EXPECT_NE(dlsym(RTLD_DEFAULT, "tc_malloc"), nullptr);
#endif
}

#ifndef SPHERE_EXPECT_GLIBC_MALLOC
// malloc_settings.cc ran before main(): tcmalloc keeps freed spans (no
// madvise per free), unless the environment says otherwise.
TEST(MallocTest, TcmallocKeepsFreedSpansForReuse) {
  if (std::getenv("TCMALLOC_AGGRESSIVE_DECOMMIT") != nullptr) {
    GTEST_SKIP() << "TCMALLOC_AGGRESSIVE_DECOMMIT is set: the operator's";
  }
  size_t decommit = 1;
  ASSERT_EQ(MallocExtension_GetNumericProperty(
                "tcmalloc.aggressive_memory_decommit", &decommit),
            1);
  EXPECT_EQ(decommit, 0u);
}

// What the background thread does each period: the free memory the page
// heap holds beyond the slack goes back to the OS, the slack stays.
TEST(MallocTest, ReleaseExcessFreeMemoryKeepsOnlyTheSlack) {
  namespace ms = sphere::malloc_settings;
  constexpr size_t kChunk = 1 << 20;  // page-heap spans, not size classes
  constexpr size_t kChunks = 96;
  std::vector<void*> chunks;
  for (size_t i = 0; i < kChunks; ++i) {
    auto* p = static_cast<unsigned char*>(std::malloc(kChunk));
    ASSERT_NE(p, nullptr);
    for (size_t j = 0; j < kChunk; j += 4096) p[j] = 1;  // resident
    chunks.push_back(p);
  }
  for (void* p : chunks) std::free(p);
  // Kept, not returned at once (the releaser may have run in between, so
  // only "some" is asserted here).
  const size_t held = ms::PageHeapFreeBytes();
  EXPECT_GT(held, 0u);

  constexpr size_t kSlack = 8 << 20;
  const size_t asked = ms::ReleaseExcessFreeMemory(kSlack);
  EXPECT_LE(ms::PageHeapFreeBytes(), kSlack);
  if (held > kSlack) EXPECT_GT(asked, 0u);
  // Nothing beyond the slack left: a second pass asks for nothing.
  EXPECT_EQ(ms::ReleaseExcessFreeMemory(kSlack), 0u);
}

// The background thread runs: its passes advance and the page heap ends
// within the default slack (32 MiB) after a burst of frees. Waits on that
// condition, bounded; the thread's period is 1 s.
TEST(MallocTest, BackgroundReleaserReturnsTheExcess) {
  namespace ms = sphere::malloc_settings;
  if (std::getenv("SPHERE_MALLOC_RELEASE_PERIOD_MS") != nullptr ||
      std::getenv("SPHERE_MALLOC_RELEASE_SLACK_MB") != nullptr) {
    GTEST_SKIP() << "releaser configured from the environment";
  }
  std::vector<void*> chunks;
  for (int i = 0; i < 96; ++i) {
    auto* p = static_cast<unsigned char*>(std::malloc(1 << 20));
    ASSERT_NE(p, nullptr);
    for (size_t j = 0; j < (1 << 20); j += 4096) p[j] = 1;
    chunks.push_back(p);
  }
  for (void* p : chunks) std::free(p);
  const uint64_t passes0 = ms::ReleaserPasses();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!(ms::ReleaserPasses() >= passes0 + 2 &&
           ms::PageHeapFreeBytes() <= (32u << 20))) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << "passes " << ms::ReleaserPasses() - passes0 << ", free "
        << ms::PageHeapFreeBytes();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(ms::ReleasedBytes(), 0u);
}

// A process that blocks SIGTERM in main and waits for it with sigwait (the
// servers' and the twin's graceful shutdown) gets it there: the releaser
// thread, started before main with no signal blocked, blocks them all.
TEST(MallocTest, SigtermGoesToSigwaitNotToTheReleaserThread) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, nullptr), 0);
  // Process-directed, as `kill` sends it: delivered to a thread that does
  // not block it (the default action would end this test binary), or left
  // pending for sigwait when every thread blocks it.
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  int sig = 0;
  ASSERT_EQ(sigwait(&term, &sig), 0);
  EXPECT_EQ(sig, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &term, nullptr), 0);
}

// The freed memory is still usable after it went back to the OS.
TEST(MallocTest, MemoryReleasedToTheOsIsReusable) {
  namespace ms = sphere::malloc_settings;
  auto* p = static_cast<unsigned char*>(std::malloc(4 << 20));
  ASSERT_NE(p, nullptr);
  p[0] = 7;
  std::free(p);
  ms::ReleaseExcessFreeMemory(0);
  auto* q = static_cast<unsigned char*>(std::malloc(4 << 20));
  ASSERT_NE(q, nullptr);
  q[0] = 9;
  q[(4 << 20) - 1] = 10;
  EXPECT_EQ(q[0], 9);
  std::free(q);
}
#endif

TEST(MallocTest, AllocatesReallocatesAndFrees) {
  // The sizes the shard's hot path uses: small protobuf fields up to a full
  // AttestBatch response (~0.7 MB).
  for (size_t n : {2u, 64u, 4096u, 700u * 1024u}) {
    auto* p = static_cast<unsigned char*>(std::malloc(n));
    ASSERT_NE(p, nullptr);
    p[0] = 1;
    p[n - 1] = 2;
    p = static_cast<unsigned char*>(std::realloc(p, 2 * n));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p[0], 1);
    EXPECT_EQ(p[n - 1], 2);
    std::free(p);
  }
}

}  // namespace
