#include "common/update/metadata_test_support.h"

#include "common/crypto/crypto.h"

namespace sphere::update {

v1::UpdateTarget TestTarget(const std::string& component, uint32_t version) {
  v1::UpdateTarget t;
  t.set_component(component);
  t.set_version(version);
  t.set_image_hash(crypto::Sha256(component + std::to_string(version)));
  t.set_image_id(crypto::HexEncode(t.image_hash()));
  t.set_size(1000);
  t.set_package_size(1200);
  t.set_package_sha256(crypto::Sha256("pkg" + component));
  t.add_hardware("mt3620");
  t.set_kind(v1::IMAGE_KIND_KERNEL);
  return t;
}

v1::UpdateMetadata TestMetadata(uint64_t version,
                                const std::vector<std::string>& components) {
  v1::UpdateMetadata md;
  md.set_metadata_version(version);
  md.set_issued_unix_ms(absl::ToUnixMillis(kMetadataTestNow - absl::Hours(1)));
  md.set_expires_unix_ms(
      absl::ToUnixMillis(kMetadataTestNow + absl::Hours(24)));
  md.set_tenant_id("tenant-1");
  md.set_device_group_id("group-1");
  for (const std::string& c : components) *md.add_targets() = TestTarget(c, 2);
  return md;
}

}  // namespace sphere::update
