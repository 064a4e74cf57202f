#include "securitysvc/management/image_pipeline.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/image.h"
#include "securitysvc/management/limits.h"

namespace sphere::management {
namespace {

constexpr size_t kNonceBytes = 12;

std::string PackageLabel(absl::string_view image_id) {
  return absl::StrCat("sphere-image-package:", image_id);
}

}  // namespace

std::string PackageKeyFromMasterKey(absl::string_view master_key) {
  return crypto::HmacSha256(master_key, "sphere-image-package-key-v1");
}

std::string ImagePipeline::PathFor(absl::string_view image_id) const {
  return absl::StrCat(package_dir_, "/", image_id, ".pkg");
}

absl::StatusOr<v1::Image> ImagePipeline::Process(
    absl::string_view tenant_id, absl::string_view package) const {
  if (auto s = limits::ValidateSize("image package", package.size(),
                                    limits::kMaxImagePackageBytes);
      !s.ok()) {
    return s;
  }
  v1::ImagePackage pkg;
  if (!pkg.ParseFromArray(package.data(), package.size())) {
    return absl::InvalidArgumentError(
        "upload is not an image package (sphere.v1.ImagePackage)");
  }
  v1::ImageHeader header;
  if (!header.ParseFromString(pkg.header())) {
    return absl::InvalidArgumentError("image package header is malformed");
  }
  if (auto s =
          limits::ValidateComponentId("image component", header.component());
      !s.ok()) {
    return s;
  }
  const bool is_app = header.kind() == v1::IMAGE_KIND_APPLICATION ||
                      header.kind() == v1::IMAGE_KIND_REALTIME_APP;
  if (is_app) {
    if (auto s = limits::ValidateComponentId("app manifest component_id",
                                             header.manifest().component_id());
        !s.ok()) {
      return s;
    }
  }
  if (!tenant_id.empty()) {
    if (!is_app) {
      return absl::InvalidArgumentError(
          absl::StrCat("tenants upload applications only; ", header.component(),
                       " is an OS component released by the platform"));
    }
    // The platform signs what the tenant named: an app must live in the
    // "app:<component_id>" namespace, or it could pose as a boot-chain
    // component ("kernel" v999) to attestation and to anti-rollback.
    const std::string expected =
        mcu::AppComponentName(header.manifest().component_id());
    if (header.component() != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "application component \"", header.component(), "\" must be named \"",
          expected,
          "\" (app:<manifest component_id>); boot-chain component names "
          "are reserved for the platform"));
    }
    // The signed header names the tenant: devices key the app's
    // anti-rollback counter by (tenant, component), so another tenant's
    // "app:dw100" v999 cannot block this tenant's updates.
    auto signed_pkg = mcu::ResignImage(pkg, signing_key_, tenant_id);
    if (!signed_pkg.ok()) return signed_pkg.status();
    pkg = std::move(*signed_pkg);
  }
  auto verified = mcu::VerifyImage(pkg, signing_key_.PublicKey());
  if (!verified.ok()) {
    return absl::Status(
        verified.status().code(),
        absl::StrCat(
            "image ", header.component(), " v", header.version(),
            " is not signed by the platform: ", verified.status().message()));
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
    if (package_key_.size() != 32) {
      return absl::FailedPreconditionError(
          "image packages are stored encrypted, but no 32-byte package key "
          "is configured (derive it with PackageKeyFromMasterKey)");
    }
    const std::string nonce = crypto::RandomBytes(kNonceBytes);
    absl::StatusOr<std::string> sealed = crypto::AesGcmSeal(
        package_key_, nonce, pkg.SerializeAsString(), PackageLabel(image.id()));
    if (!sealed.ok()) return sealed.status();
    if (auto s = util::WriteFile(PathFor(image.id()),
                                 absl::StrCat(nonce, *sealed), 0600);
        !s.ok()) {
      return s;
    }
  }
  return image;
}

absl::StatusOr<v1::ImagePackage> ImagePipeline::ReadPackage(
    absl::string_view image_id) const {
  bool hex = image_id.size() == 64;
  for (char c : image_id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) hex = false;
  }
  if (!hex) {
    return absl::InvalidArgumentError(
        absl::StrCat("image id \"", limits::EscapedPrefix(image_id),
                     "\" is not 64 lowercase hex characters"));
  }
  absl::StatusOr<std::string> file = util::ReadFile(PathFor(image_id));
  if (!file.ok()) {
    return absl::NotFoundError(
        absl::StrCat("no stored package for image ", image_id));
  }
  if (file->size() < kNonceBytes + 16) {
    return absl::DataLossError(
        absl::StrCat("stored package of image ", image_id, " is truncated"));
  }
  absl::StatusOr<std::string> plain = crypto::AesGcmOpen(
      package_key_, absl::string_view(*file).substr(0, kNonceBytes),
      absl::string_view(*file).substr(kNonceBytes), PackageLabel(image_id));
  if (!plain.ok()) {
    return absl::DataLossError(absl::StrCat(
        "stored package of image ", image_id,
        " does not open under the package key (tampered, or sealed under "
        "another master key)"));
  }
  v1::ImagePackage pkg;
  if (!pkg.ParseFromString(*plain)) {
    return absl::DataLossError(
        absl::StrCat("stored package of image ", image_id, " is corrupt"));
  }
  return pkg;
}

}  // namespace sphere::management
