// Which malloc a binary that depends on //third_party/system_libs:malloc
// runs with: tcmalloc in the normal build, glibc's under the sanitizer
// configs (asan, tsan, fuzz), which interpose malloc themselves.
#include <dlfcn.h>
#ifndef SPHERE_EXPECT_GLIBC_MALLOC
#include <gperftools/malloc_extension_c.h>
#endif

#include <cstdlib>
#include <string>

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
// malloc_settings.cc ran before main(): freed memory goes back to the OS.
TEST(MallocTest, TcmallocReturnsFreedSpansAtOnce) {
  size_t decommit = 0;
  ASSERT_EQ(MallocExtension_GetNumericProperty(
                "tcmalloc.aggressive_memory_decommit", &decommit),
            1);
  EXPECT_EQ(decommit, 1u);
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
