// mcu-model/update_install: the device's checks between "bytes arrived" and
// "image written to the inactive slot" (issue 11). The update agent (twin
// library) downloads a package for one target of the accepted, signed
// metadata, feeds its chunks to a PackageAssembler, then calls CheckPackage
// and StageVerified; it reboots, re-attests and confirms (Device).
//
// CheckPackage refuses, in this order (InstallError in install_error.h):
//   image_id not in the signed set            kNotInSignedSet
//   FailedPrecondition more bytes than the signed package_size kPackageTooLong
//   OutOfRange fewer bytes                               kPackageIncomplete
//   DataLoss SHA-256 differs from package_sha256       kPackageHash
//   Unauthenticated package does not parse                    kMalformed
//   InvalidArgument platform signature / payload digest       kBadSignature
//   Unauthenticated header differs from the target (image     kTargetMismatch
//   FailedPrecondition
//     hash, component, version, kind, size)
//   device type not in target.hardware        kWrongHardware FailedPrecondition
//   app of another tenant / OS with a tenant  kWrongTenant PermissionDenied
//   version below the anti-rollback counter   kRollback FailedPrecondition does
//   not fit flash / RAM                  kTooLargeFor...   ResourceExhausted
// None of these checks writes anything but the device's error ring.
//
// This library uses plain structs, not update.proto (which carries gRPC
// services), so mcu-model keeps linking protobuf only (and builds with
// --config=boringssl).
//
// Thread-safety: PackageAssembler is not thread-safe; functions are as safe
// as the Device they are given (one thread at a time).
//
// Example:
//   PackageAssembler a(target.package_size);
//   for (chunk : stream) RETURN_IF_ERROR(a.Append(chunk.offset, chunk.data));
//   auto v = CheckPackage(device, signed_set, tenant, target.image_id,
//                         a.bytes());
//   RETURN_IF_ERROR(StageVerified(device, *v));
//   device.Reboot();  ... re-attest ... device.ConfirmUpdate();
#ifndef SPHERE_MCU_MODEL_UPDATE_INSTALL_H_
#define SPHERE_MCU_MODEL_UPDATE_INSTALL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "mcu-model/device.h"
#include "mcu-model/install_error.h"
#include "protos/device.pb.h"

namespace sphere::mcu {

// InstallTarget is one entry of the accepted signed set (the fields of
// sphere.v1.UpdateTarget the device checks).
struct InstallTarget {
  std::string image_id;
  std::string component;
  uint32_t version = 0;
  std::string image_hash;      // 32 bytes
  uint64_t size = 0;           // payload bytes (0 = not stated)
  uint64_t package_size = 0;   // exact serialized ImagePackage length
  std::string package_sha256;  // 32 bytes
  std::vector<std::string> hardware;
  v1::ImageKind kind = v1::IMAGE_KIND_UNSPECIFIED;
  std::string tenant_id;
};

// PackageAssembler collects one package's chunks in order and never holds
// more than the signed length. A download that stops resumes at offset().
class PackageAssembler {
 public:
  explicit PackageAssembler(uint64_t package_size)
      : package_size_(package_size) {}
  // Append takes the chunk at `offset`. Errors (nothing appended):
  // kPackageTooLong (data past package_size: endless data),
  // kPackageIncomplete (offset is not offset(): a gap or overlap).
  absl::Status Append(uint64_t offset, absl::string_view data);
  uint64_t offset() const { return bytes_.size(); }
  uint64_t package_size() const { return package_size_; }
  bool complete() const { return bytes_.size() == package_size_; }
  const std::string& bytes() const { return bytes_; }
  void Reset() { bytes_.clear(); }

 private:
  uint64_t package_size_;
  std::string bytes_;
};

// VerifiedPackage is a package that passed CheckPackage.
struct VerifiedPackage {
  v1::ImagePackage package;
  v1::ImageHeader header;
  InstallTarget target;
};

// CheckPackage runs every check above for the package of `image_id` against
// the accepted signed set, the device (type, counters, flash, RAM, ROM key)
// and the tenant of the device's group (`tenant_id`, from the metadata).
absl::StatusOr<VerifiedPackage> CheckPackage(
    const Device& device, absl::Span<const InstallTarget> signed_set,
    absl::string_view tenant_id, absl::string_view image_id,
    absl::string_view package_bytes);

// StageVerified writes a verified package to the inactive slot (Device::
// StageUpdate, which checks signature, counters and flash again). The switch
// happens at the next Boot().
absl::Status StageVerified(Device& device, const VerifiedPackage& verified);

// Installed: the device runs `target`'s version of its component.
bool Installed(const Device& device, const InstallTarget& target);

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_UPDATE_INSTALL_H_
