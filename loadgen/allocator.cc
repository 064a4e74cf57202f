#include "loadgen/allocator.h"

#include <malloc.h>

// tcmalloc's C API, weak: the binary links tcmalloc in the normal build
// and glibc's malloc under the sanitizers (third_party/system_libs:malloc),
// where these stay null.
extern "C" int MallocExtension_GetNumericProperty(const char* property,
                                                  size_t* value)
    __attribute__((weak));
extern "C" int MallocExtension_SetNumericProperty(const char* property,
                                                  size_t value)
    __attribute__((weak));
extern "C" void MallocExtension_ReleaseFreeMemory() __attribute__((weak));

namespace sphere::loadgen {
namespace {
constexpr char kDecommit[] = "tcmalloc.aggressive_memory_decommit";
}  // namespace

std::optional<bool> AggressiveDecommit() {
  size_t v = 0;
  if (MallocExtension_GetNumericProperty == nullptr ||
      MallocExtension_GetNumericProperty(kDecommit, &v) == 0) {
    return std::nullopt;
  }
  return v != 0;
}

void ReleaseFreeMemory() {
  if (MallocExtension_ReleaseFreeMemory != nullptr) {
    MallocExtension_ReleaseFreeMemory();
  }
  malloc_trim(0);
}

DecommitScope::DecommitScope(bool on) {
  if (MallocExtension_GetNumericProperty == nullptr ||
      MallocExtension_SetNumericProperty == nullptr ||
      MallocExtension_GetNumericProperty(kDecommit, &saved_) == 0 ||
      (saved_ != 0) == on) {
    return;  // not tcmalloc, or already as asked
  }
  changed_ = MallocExtension_SetNumericProperty(kDecommit, on ? 1 : 0) != 0;
}

DecommitScope::~DecommitScope() {
  if (!changed_) return;
  MallocExtension_SetNumericProperty(kDecommit, saved_);
  ReleaseFreeMemory();
}

}  // namespace sphere::loadgen
