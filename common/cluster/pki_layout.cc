#include "common/cluster/pki_layout.h"

#include "absl/strings/str_cat.h"

namespace sphere::cluster {

std::string PkiDir(absl::string_view state_dir) {
  return absl::StrCat(state_dir, "/pki");
}

std::string PkiPath(absl::string_view state_dir, absl::string_view name) {
  return absl::StrCat(state_dir, "/pki/", name);
}

}  // namespace sphere::cluster
