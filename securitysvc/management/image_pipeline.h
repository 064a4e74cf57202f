// ImagePipeline: what the platform does with an uploaded image package
// before it enters the catalog. All device software must be signed by the
// platform, so:
//  * a tenant's package (applications only) is checked for internal
//    consistency and re-signed with the platform image-signing key;
//  * a platform operator's package (OS components) must already verify
//    under the platform image-signing key.
// Signed packages are kept under DIR/images/catalog/<id>.pkg for the update
// service. The Image record's image_hash is what devices measure at boot.
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_IMAGE_PIPELINE_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_IMAGE_PIPELINE_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/crypto/crypto.h"
#include "protos/management.pb.h"

namespace sphere::management {

class ImagePipeline {
 public:
  ImagePipeline(crypto::EcPrivateKey signing_key, std::string package_dir)
      : signing_key_(std::move(signing_key)),
        package_dir_(std::move(package_dir)) {}

  // Process verifies (and for tenants re-signs) `package` and returns the
  // catalog record. Errors: InvalidArgument (malformed, wrong kind for the
  // uploader), Unauthenticated (platform package with a bad signature).
  absl::StatusOr<v1::Image> Process(absl::string_view tenant_id,
                                    absl::string_view package) const;

 private:
  const crypto::EcPrivateKey signing_key_;
  const std::string package_dir_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_IMAGE_PIPELINE_H_
