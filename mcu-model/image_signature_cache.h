// Image signatures that verified are remembered process-wide (bounded; see
// image.cc), so many twins booting the same images pay one ECDSA
// verification per distinct (key, header, signature), not one per boot. An
// entry matches only those exact bytes; every other check of VerifyImage /
// VerifyStoredImage (header, format, payload digest and size) runs on every
// call. Counters, for tests and benchmarks.
#ifndef SPHERE_MCU_MODEL_IMAGE_SIGNATURE_CACHE_H_
#define SPHERE_MCU_MODEL_IMAGE_SIGNATURE_CACHE_H_

#include <cstddef>
#include <cstdint>

namespace sphere::mcu {

struct ImageSignatureCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  size_t entries = 0;
};
ImageSignatureCacheStats GetImageSignatureCacheStats();

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_IMAGE_SIGNATURE_CACHE_H_
