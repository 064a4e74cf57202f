#include "securitysvc/osbuild/os_build.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/image.h"

namespace sphere::osbuild {
namespace {}  // namespace

std::string OsImagesDir(const std::string &state_dir, uint32_t version) {
  return absl::StrCat(state_dir, "/images/os-", version);
}

absl::StatusOr<std::vector<BuiltOsImage>> BuildOs(
    const crypto::EcPrivateKey &signing_key, const std::string &state_dir,
    uint32_t version) {
  if (version == 0) {
    return absl::InvalidArgumentError(
        "OS versions start at 1 (component versions are anti-rollback "
        "counters)");
  }
  auto packages = mcu::BuildFactoryImages(signing_key, version);
  if (!packages.ok()) return packages.status();
  const std::string dir = OsImagesDir(state_dir, version);
  if (auto s = util::MakeDirs(dir); !s.ok()) return s;
  std::vector<BuiltOsImage> out;
  for (v1::ImagePackage &pkg : *packages) {
    // Self-check: what we ship must verify as devices will verify it.
    auto verified = mcu::VerifyImage(pkg, signing_key.PublicKey());
    if (!verified.ok()) return verified.status();
    BuiltOsImage b;
    b.component = verified->header.component();
    b.version = verified->header.version();
    b.image_id = crypto::HexEncode(verified->image_hash);
    b.path = absl::StrCat(dir, "/", b.component, ".pkg");
    if (auto s = util::WriteFile(b.path, pkg.SerializeAsString()); !s.ok()) {
      return s;
    }
    b.package = std::move(pkg);
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace sphere::osbuild
