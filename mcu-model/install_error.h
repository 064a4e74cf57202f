// InstallError: why the device refused or undid an update, carried as a
// payload on the absl::Status the install path returns, so the update agent
// reports (and tests assert) the reason without parsing messages.
//
// Example:
//   absl::Status s = device.CheckUpdateFits(header);
//   if (InstallErrorOf(s) == InstallError::kTooLargeForRam) ...
#ifndef SPHERE_MCU_MODEL_INSTALL_ERROR_H_
#define SPHERE_MCU_MODEL_INSTALL_ERROR_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sphere::mcu {

enum class InstallError {
  kNone = 0,           // OK, or a status without a reason
  kNotInSignedSet,     // image not listed in the accepted metadata
  kPackageTooLong,     // bytes past the signed package_size (endless data)
  kPackageIncomplete,  // fewer bytes than package_size / gap in the offsets
  kPackageHash,        // package SHA-256 differs from the signed one
  kMalformed,          // package or header does not parse
  kBadSignature,       // not signed by the platform image-signing key
  kTargetMismatch,     // header differs from the signed target (hash, ...)
  kWrongHardware,      // target not for this device type
  kTooLargeForFlash,   // does not fit its flash partition
  kTooLargeForRam,     // app memory_kib does not fit the RAM budget
  kWrongTenant,        // application of another tenant
  kRollback,           // version below the anti-rollback counter
  kCrashLoop,          // installed, crash-looped, rolled back
};

const char* InstallErrorName(InstallError e);
InstallError InstallErrorOf(const absl::Status& status);
absl::Status MakeInstallError(absl::StatusCode code, InstallError reason,
                              absl::string_view message);

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_INSTALL_ERROR_H_
