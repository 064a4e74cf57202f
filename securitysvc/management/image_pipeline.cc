#include "securitysvc/management/image_pipeline.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "mcu-model/image.h"

namespace sphere::management {

absl::StatusOr<v1::Image> ImagePipeline::Process(
    absl::string_view tenant_id, absl::string_view package) const {
  v1::ImagePackage pkg;
  if (!pkg.ParseFromArray(package.data(), package.size())) {
    return absl::InvalidArgumentError(
        "upload is not an image package (sphere.v1.ImagePackage)");
  }
  v1::ImageHeader header;
  if (!header.ParseFromString(pkg.header())) {
    return absl::InvalidArgumentError("image package header is malformed");
  }
  const bool is_app = header.kind() == v1::IMAGE_KIND_APPLICATION ||
                      header.kind() == v1::IMAGE_KIND_REALTIME_APP;
  if (!tenant_id.empty()) {
    if (!is_app) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tenants upload applications only; ", header.component(),
          " is an OS component released by the platform"));
    }
    // The platform signs what the tenant named: an app must live in the
    // "app:<component_id>" namespace, or it could pose as a boot-chain
    // component ("kernel" v999) to attestation and to anti-rollback.
    const std::string expected =
        mcu::AppComponentName(header.manifest().component_id());
    if (header.manifest().component_id().empty() ||
        header.component() != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "application component \"", header.component(),
          "\" must be named \"", expected,
          "\" (app:<manifest component_id>); boot-chain component names "
          "are reserved for the platform"));
    }
    auto signed_pkg = mcu::ResignImage(pkg, signing_key_);
    if (!signed_pkg.ok()) return signed_pkg.status();
    pkg = std::move(*signed_pkg);
  }
  auto verified = mcu::VerifyImage(pkg, signing_key_.PublicKey());
  if (!verified.ok()) {
    return absl::Status(
        verified.status().code(),
        absl::StrCat("image ", header.component(), " v", header.version(),
                     " is not signed by the platform: ",
                     verified.status().message()));
  }
  v1::Image image;
  image.set_id(crypto::HexEncode(verified->image_hash));
  image.set_tenant_id(std::string(tenant_id));
  image.set_component(verified->header.component());
  image.set_version(verified->header.version());
  image.set_kind(verified->header.kind());
  image.set_image_hash(verified->image_hash);
  image.set_size(verified->header.payload_size());
  if (!package_dir_.empty()) {
    if (auto s = rpc::WriteFile(
            absl::StrCat(package_dir_, "/", image.id(), ".pkg"),
            pkg.SerializeAsString());
        !s.ok()) {
      return s;
    }
  }
  return image;
}

}  // namespace sphere::management
