// os_builder: the OS vendor's build system, standing in for the real one.
//
//   os_builder --state-dir DIR --version V
//
// Builds and signs every boot-chain component at version V with the platform
// image-signing key in DIR/pki (which must exist: start a cluster on DIR
// first) into DIR/images/os-V/<component>.pkg, and prints one line per
// component: COMPONENT VERSION IMAGE-ID PATH. Release the result with
//   spherectl os release --feed RetailEval --version V
//       --images-dir DIR/images/os-V
// Errors print "error: <message>" and exit 1.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "securitysvc/osbuild/os_build.h"
#include "securitysvc/pki/pki.h"

namespace sphere::osbuild {
namespace {

constexpr char kUsage[] = "usage: os_builder --state-dir DIR --version V\n";

int Fail(const absl::Status &s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

int Main(int argc, char **argv) {
  std::string dir, version_text;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string *target = nullptr;
    if (absl::StartsWith(a, "--state-dir") ||
        absl::StartsWith(a, "--state_dir")) {
      target = &dir;
    } else if (absl::StartsWith(a, "--version")) {
      target = &version_text;
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fputs(kUsage, stderr);
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("unknown argument \"", a, "\"")));
    }
    size_t eq = a.find('=');
    if (eq != std::string::npos) {
      *target = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      *target = argv[++i];
    } else {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("option ", a, " needs a value")));
    }
  }
  if (dir.empty() || version_text.empty()) {
    std::fputs(kUsage, stderr);
    return Fail(absl::InvalidArgumentError(
        "both --state-dir and --version are required"));
  }
  uint32_t version = 0;
  if (!absl::SimpleAtoi(version_text, &version) || version == 0) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--version must be a whole number >= 1, not \"", version_text, "\"")));
  }
  pki::MasterKeySource no_master_key_needed;        // only the signing key is
  no_master_key_needed.required = false;            // used; the master key may
  auto pki = pki::Load(dir, no_master_key_needed);  // live elsewhere
  if (!pki.ok()) {
    return Fail(absl::Status(
        pki.status().code(),
        absl::StrCat("cannot load the platform image-signing key from ", dir,
                     "/pki: ", pki.status().message())));
  }
  auto built = BuildOs(pki->image_signing_key, dir, version);
  if (!built.ok()) return Fail(built.status());
  for (const BuiltOsImage &b : *built) {
    std::cout << b.component << " " << b.version << " " << b.image_id << " "
              << b.path << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace sphere::osbuild

int main(int argc, char **argv) { return sphere::osbuild::Main(argc, argv); }
