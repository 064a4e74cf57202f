// malloc_settings: how the server and loadgen binaries return freed memory
// to the OS under tcmalloc (//third_party/system_libs:malloc).
//
// tcmalloc keeps freed spans (aggressive decommit is off), and a background
// thread started before main() returns what the page heap holds beyond a
// slack to the OS once per period. Environment (read once, at start):
//   TCMALLOC_AGGRESSIVE_DECOMMIT       tcmalloc's own; when set, it wins
//   SPHERE_MALLOC_RELEASE_PERIOD_MS    default 1000; 0 turns the thread off
//   SPHERE_MALLOC_RELEASE_SLACK_MB     default 32
// Only the normal build has this header's definitions: the sanitizer builds
// link no tcmalloc.
#ifndef SPHERE_THIRD_PARTY_SYSTEM_LIBS_MALLOC_SETTINGS_H_
#define SPHERE_THIRD_PARTY_SYSTEM_LIBS_MALLOC_SETTINGS_H_

#include <cstddef>
#include <cstdint>

namespace sphere::malloc_settings {

// ReleaseExcessFreeMemory returns to the OS the free bytes tcmalloc's page
// heap holds beyond `slack_bytes`, in one pass; it returns how many bytes
// it asked tcmalloc to release (0 when the heap holds no more than the
// slack).
size_t ReleaseExcessFreeMemory(size_t slack_bytes);

// PageHeapFreeBytes: free bytes tcmalloc holds mapped (not yet returned).
size_t PageHeapFreeBytes();

// The background releaser's passes and bytes released so far (0 when the
// thread is off).
uint64_t ReleaserPasses();
uint64_t ReleasedBytes();

}  // namespace sphere::malloc_settings

#endif  // SPHERE_THIRD_PARTY_SYSTEM_LIBS_MALLOC_SETTINGS_H_
