// ImageRecord: an image as held in (modelled) flash. Immutable and
// content-addressed: identical images installed on many devices share one
// record (InternImage), so per-device memory holds only a pointer.
// InternImage is thread-safe.
#ifndef SPHERE_MCU_MODEL_IMAGE_RECORD_H_
#define SPHERE_MCU_MODEL_IMAGE_RECORD_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "protos/device.pb.h"

namespace sphere::mcu {

struct ImageRecord {
  v1::StoredImage stored;  // header + signature + payload digest/size
  v1::ImageHeader header;  // parsed (NOT trusted until verified)
  std::string image_hash;  // ImageHash(stored.header)
  int register_index = 3;  // RegisterForKind(header.kind)
  const std::string& component() const { return header.component(); }
  // Owning tenant of an application image ("" for platform OS images).
  const std::string& tenant_id() const { return header.tenant_id(); }
  uint32_t version() const { return header.version(); }
  uint32_t size_kib() const {
    return static_cast<uint32_t>((stored.payload_size() + 1023) / 1024);
  }
};
using ImageRef = std::shared_ptr<const ImageRecord>;

// InternImage parses the header and returns the shared record for `stored`.
// Errors: InvalidArgument (header does not parse). Does not verify.
absl::StatusOr<ImageRef> InternImage(const v1::StoredImage& stored);

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_IMAGE_RECORD_H_
