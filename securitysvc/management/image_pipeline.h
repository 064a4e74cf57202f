// ImagePipeline: what the platform does with an uploaded image package
// before it enters the catalog. All device software must be signed by the
// platform, so:
//  * a tenant's package (applications only) is checked for internal
//    consistency and re-signed with the platform image-signing key;
//  * a platform operator's package (OS components) must already verify
//    under the platform image-signing key.
// Component ids (and app manifest component ids) must pass
// limits::ValidateComponentId ([a-z0-9._:-], at most 64, no ".."), so no
// control character or path reaches the catalog, logs or terminals.
//
// Signed packages are kept under DIR/images/catalog/<id>.pkg for the update
// service, sealed at rest: nonce(12) || AES-256-GCM(package) with the
// associated data "sphere-image-package:<id>", under a key derived from the
// cluster master key (PackageKeyFromMasterKey); files are 0600. Read them
// back with ReadPackage. The Image record's image_hash is what devices
// measure at boot.
//
// Thread-safety: Process and ReadPackage may run concurrently.
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_IMAGE_PIPELINE_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_IMAGE_PIPELINE_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/crypto/crypto.h"
#include "protos/management.pb.h"

namespace sphere::management {

// PackageKeyFromMasterKey derives the 32-byte package-sealing key from the
// cluster master key (HMAC-SHA256 with a fixed label), so the master key
// itself never encrypts bulk data.
std::string PackageKeyFromMasterKey(absl::string_view master_key);

class ImagePipeline {
 public:
  // `package_key` (32 bytes) seals stored packages; empty `package_dir`
  // stores nothing.
  ImagePipeline(crypto::EcPrivateKey signing_key, std::string package_dir,
                std::string package_key = "")
      : signing_key_(std::move(signing_key)),
        package_dir_(std::move(package_dir)),
        package_key_(std::move(package_key)) {}

  // Process verifies (and for tenants re-signs) `package` and returns the
  // catalog record. Errors: InvalidArgument (malformed, wrong kind for the
  // uploader, invalid component id), Unauthenticated (platform package with
  // a bad signature), FailedPrecondition (no valid package key to store it).
  absl::StatusOr<v1::Image> Process(absl::string_view tenant_id,
                                    absl::string_view package) const;

  // ReadPackage opens the stored package of image `image_id` (64 hex).
  // Errors: NotFound, DataLoss (tampered or sealed under another key).
  absl::StatusOr<v1::ImagePackage> ReadPackage(
      absl::string_view image_id) const;

 private:
  std::string PathFor(absl::string_view image_id) const;

  const crypto::EcPrivateKey signing_key_;
  const std::string package_dir_;
  const std::string package_key_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_IMAGE_PIPELINE_H_
