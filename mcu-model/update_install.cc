#include "mcu-model/update_install.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "mcu-model/image.h"

namespace sphere::mcu {
namespace {

bool IsApp(v1::ImageKind k) {
  return k == v1::IMAGE_KIND_APPLICATION || k == v1::IMAGE_KIND_REALTIME_APP;
}

absl::Status Refuse(absl::StatusCode code, InstallError reason,
                    absl::string_view component, absl::string_view what) {
  return MakeInstallError(
      code, reason, absl::StrCat("update refused (", component, "): ", what));
}

}  // namespace

absl::Status PackageAssembler::Append(uint64_t offset, absl::string_view data) {
  if (offset != bytes_.size()) {
    return MakeInstallError(absl::StatusCode::kDataLoss,
                            InstallError::kPackageIncomplete,
                            absl::StrCat("download: chunk at offset ", offset,
                                         ", expected ", bytes_.size()));
  }
  if (data.size() > package_size_ - bytes_.size()) {
    return MakeInstallError(
        absl::StatusCode::kOutOfRange, InstallError::kPackageTooLong,
        absl::StrCat("download: ", bytes_.size() + data.size(),
                     " bytes would exceed the signed package length ",
                     package_size_, "; stopped reading"));
  }
  bytes_.append(data.data(), data.size());
  return absl::OkStatus();
}

absl::StatusOr<VerifiedPackage> CheckPackage(
    const Device& device, absl::Span<const InstallTarget> signed_set,
    absl::string_view tenant_id, absl::string_view image_id,
    absl::string_view bytes) {
  const InstallTarget* target = nullptr;
  for (const InstallTarget& t : signed_set) {
    if (t.image_id == image_id) target = &t;
  }
  if (target == nullptr) {
    return MakeInstallError(
        absl::StatusCode::kFailedPrecondition, InstallError::kNotInSignedSet,
        absl::StrCat("update refused: image ", image_id.substr(0, 64),
                     " is not in the signed target set"));
  }
  const std::string& comp = target->component;
  if (bytes.size() > target->package_size) {
    return Refuse(absl::StatusCode::kOutOfRange, InstallError::kPackageTooLong,
                  comp,
                  absl::StrCat(bytes.size(), " bytes, signed length ",
                               target->package_size));
  }
  if (bytes.size() < target->package_size) {
    return Refuse(absl::StatusCode::kDataLoss, InstallError::kPackageIncomplete,
                  comp,
                  absl::StrCat(bytes.size(), " bytes, signed length ",
                               target->package_size));
  }
  if (!crypto::ConstantTimeEquals(crypto::Sha256(bytes),
                                  target->package_sha256)) {
    return Refuse(absl::StatusCode::kUnauthenticated,
                  InstallError::kPackageHash, comp,
                  "package SHA-256 differs from the signed metadata");
  }
  VerifiedPackage out;
  if (!out.package.ParseFromArray(bytes.data(),
                                  static_cast<int>(bytes.size()))) {
    return Refuse(absl::StatusCode::kInvalidArgument, InstallError::kMalformed,
                  comp, "package does not parse");
  }
  absl::StatusOr<VerifiedImage> v =
      VerifyImage(out.package, device.image_signing_public_key());
  if (!v.ok()) {
    bool sig = v.status().code() == absl::StatusCode::kUnauthenticated;
    return Refuse(v.status().code(),
                  sig ? InstallError::kBadSignature : InstallError::kMalformed,
                  comp, v.status().message());
  }
  const v1::ImageHeader& h = v->header;
  if (v->image_hash != target->image_hash || h.component() != comp ||
      h.version() != target->version ||
      (target->kind != v1::IMAGE_KIND_UNSPECIFIED &&
       h.kind() != target->kind) ||
      (target->size != 0 && h.payload_size() != target->size)) {
    return Refuse(absl::StatusCode::kFailedPrecondition,
                  InstallError::kTargetMismatch, comp,
                  absl::StrCat("image (", h.component(), " v", h.version(),
                               ") differs from the signed target (", comp, " v",
                               target->version, ")"));
  }
  const std::string& hw = device.type().name;
  if (std::find(target->hardware.begin(), target->hardware.end(), hw) ==
      target->hardware.end()) {
    return Refuse(absl::StatusCode::kFailedPrecondition,
                  InstallError::kWrongHardware, comp,
                  absl::StrCat("image is not for hardware ", hw));
  }
  if (IsApp(h.kind())) {
    if (h.tenant_id() != tenant_id || target->tenant_id != tenant_id) {
      return Refuse(
          absl::StatusCode::kPermissionDenied, InstallError::kWrongTenant, comp,
          absl::StrCat("application of tenant '", h.tenant_id().substr(0, 128),
                       "', device belongs to '", tenant_id, "'"));
    }
  } else if (!h.tenant_id().empty()) {
    return Refuse(absl::StatusCode::kPermissionDenied,
                  InstallError::kWrongTenant, comp,
                  "OS image carries a tenant");
  }
  uint32_t floor =
      IsApp(h.kind())
          ? std::max(device.AntiRollbackCounter(h.tenant_id(), comp),
                     device.AntiRollbackCounter(comp))
          : device.AntiRollbackCounter(comp);
  if (h.version() < floor) {
    return Refuse(absl::StatusCode::kFailedPrecondition,
                  InstallError::kRollback, comp,
                  absl::StrCat("anti-rollback: version ", h.version(),
                               " < counter ", floor));
  }
  if (absl::Status s = device.CheckUpdateFits(h); !s.ok()) return s;
  out.header = h;
  out.target = *target;
  return out;
}

absl::Status StageVerified(Device& device, const VerifiedPackage& verified) {
  absl::Status s = device.StageUpdate(verified.package);
  if (s.ok()) return s;
  InstallError reason = InstallError::kNone;
  switch (s.code()) {
    case absl::StatusCode::kUnauthenticated:
      reason = InstallError::kBadSignature;
      break;
    case absl::StatusCode::kResourceExhausted:
      reason = InstallError::kTooLargeForFlash;
      break;
    case absl::StatusCode::kFailedPrecondition:
      reason = absl::StrContains(s.message(), "anti-rollback")
                   ? InstallError::kRollback
                   : InstallError::kNone;
      break;
    default:
      break;
  }
  return reason == InstallError::kNone
             ? s
             : MakeInstallError(s.code(), reason, s.message());
}

bool Installed(const Device& device, const InstallTarget& target) {
  return device.InstalledVersion(target.component) == target.version;
}

}  // namespace sphere::mcu
