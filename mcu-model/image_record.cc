#include "mcu-model/image_record.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
#include "mcu-model/image.h"

namespace sphere::mcu {

absl::StatusOr<ImageRef> InternImage(const v1::StoredImage& stored) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* pool =
      new absl::flat_hash_map<std::string, std::weak_ptr<const ImageRecord>>();
  std::string key = crypto::Sha256(absl::StrCat(
      crypto::Sha256(stored.header()), crypto::Sha256(stored.signature()),
      stored.payload_sha256(), stored.payload_size()));
  absl::MutexLock l(&mu);
  auto it = pool->find(key);
  if (it != pool->end()) {
    if (ImageRef r = it->second.lock()) return r;
  }
  auto rec = std::make_shared<ImageRecord>();
  rec->stored = stored;
  if (!rec->header.ParseFromString(stored.header())) {
    return absl::InvalidArgumentError("stored image header does not parse");
  }
  rec->image_hash = ImageHash(stored.header());
  rec->register_index = RegisterForKind(rec->header.kind());
  if (pool->size() > 4096) {  // drop expired entries now and then
    for (auto i = pool->begin(); i != pool->end();) {
      auto cur = i++;
      if (cur->second.expired()) pool->erase(cur);
    }
  }
  (*pool)[key] = rec;
  return ImageRef(std::move(rec));
}

}  // namespace sphere::mcu
