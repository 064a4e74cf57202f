// os_build: what the OS vendor's build system produces for one OS version,
// in a form operators hand to 'spherectl os release --images-dir'.
//
// BuildOs builds every boot-chain component (pluton-runtime,
// security-monitor, bootloader, kernel, os-services) at `version`, signs each
// with the platform image-signing key and writes it to
//   STATE_DIR/images/os-<version>/<component>.pkg
// (directories are created as needed; existing packages are replaced, which
// is harmless: the image id is the hash of the signed header, so a rebuild of
// the same version yields the same ids). local_cluster uses it for the
// factory OS; the os_builder tool for later versions.
//
// Example:
//   auto pki = pki::Load(dir);
//   auto built = osbuild::BuildOs(pki->image_signing_key, dir, 2);
//   for (const auto& b : *built) std::cout << b.component << " " << b.path;
//
// Thread-compatible: concurrent builds of the same version race on the files.
#ifndef SPHERE_SECURITYSVC_OSBUILD_OS_BUILD_H_
#define SPHERE_SECURITYSVC_OSBUILD_OS_BUILD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/crypto/crypto.h"
#include "protos/device.pb.h"

namespace sphere::osbuild {

// BuiltOsImage is one signed boot-chain component written to disk.
struct BuiltOsImage {
  std::string component;  // e.g. "kernel"
  uint32_t version = 0;
  std::string image_id;  // hex SHA-256 of the signed header (Image.id)
  std::string path;      // STATE_DIR/images/os-V/<component>.pkg
  v1::ImagePackage package;
};

// OsImagesDir returns STATE_DIR/images/os-<version>.
std::string OsImagesDir(const std::string &state_dir, uint32_t version);

// BuildOs builds, signs, self-verifies and writes the boot chain for
// `version` (>= 1). Errors: InvalidArgument (version 0, unusable key),
// Internal/Unavailable from the file system.
absl::StatusOr<std::vector<BuiltOsImage>> BuildOs(
    const crypto::EcPrivateKey &signing_key, const std::string &state_dir,
    uint32_t version);

}  // namespace sphere::osbuild

#endif  // SPHERE_SECURITYSVC_OSBUILD_OS_BUILD_H_
