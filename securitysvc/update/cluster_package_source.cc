#include "securitysvc/update/cluster_package_source.h"

#include "securitysvc/management/image_pipeline.h"

namespace sphere::update {

std::shared_ptr<PackageSource> ClusterPackageSource(
    const std::string& state_dir, const std::string& master_key) {
  // Only ReadPackage is used: no signing key.
  auto pipeline = std::make_shared<management::ImagePipeline>(
      crypto::EcPrivateKey(), state_dir + "/images/catalog",
      management::PackageKeyFromMasterKey(master_key));
  return std::make_shared<FunctionPackageSource>(
      [pipeline](absl::string_view id) -> absl::StatusOr<std::string> {
        auto pkg = pipeline->ReadPackage(id);
        if (!pkg.ok()) return pkg.status();
        return pkg->SerializeAsString();
      });
}

}  // namespace sphere::update
