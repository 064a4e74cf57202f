// malloc_settings: tcmalloc's settings for the server and loadgen binaries,
// applied before main() by a static initializer (this target is
// alwayslink, a dependency of //third_party/system_libs:malloc only).
//
// Aggressive decommit: tcmalloc returns freed spans to the OS at once
// instead of keeping them. Measured at 100,000 devices (docs/benchmarks.md,
// "Attest phase: the allocator"): shards hold 808 B per device after attest
// with it, 1,026 B without (glibc: 762 B), for a few % of the CPU tcmalloc
// saves. An operator's TCMALLOC_AGGRESSIVE_DECOMMIT in the environment wins.
#include <gperftools/malloc_extension_c.h>

#include <cstdlib>

namespace {

const bool kSettingsApplied = [] {
  if (std::getenv("TCMALLOC_AGGRESSIVE_DECOMMIT") == nullptr) {
    MallocExtension_SetNumericProperty("tcmalloc.aggressive_memory_decommit",
                                       1);
  }
  return true;
}();

}  // namespace
