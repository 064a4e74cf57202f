// allocator: loadgen's hold on tcmalloc's settings, through its C API bound
// weakly, so the sanitizer builds (glibc's malloc, see
// //third_party/system_libs:malloc) run the same code with no effect.
#ifndef SPHERE_LOADGEN_ALLOCATOR_H_
#define SPHERE_LOADGEN_ALLOCATOR_H_

#include <cstddef>
#include <optional>

namespace sphere::loadgen {

// AggressiveDecommit: tcmalloc's "aggressive_memory_decommit" (every freed
// span returned to the OS at once), or nullopt when tcmalloc is not linked.
std::optional<bool> AggressiveDecommit();

// ReleaseFreeMemory returns every free byte tcmalloc holds to the OS (before
// RSS is read for the report); glibc's malloc_trim too.
void ReleaseFreeMemory();

// DecommitScope sets aggressive decommit to `on` for its lifetime and puts
// the previous setting back at its end, returning what it kept to the OS.
// It does nothing without tcmalloc or when the setting is already `on`.
class DecommitScope {
 public:
  explicit DecommitScope(bool on);
  ~DecommitScope();
  DecommitScope(const DecommitScope&) = delete;
  DecommitScope& operator=(const DecommitScope&) = delete;

  // Whether the scope changed the setting.
  bool changed() const { return changed_; }

 private:
  size_t saved_ = 0;
  bool changed_ = false;
};

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_ALLOCATOR_H_
