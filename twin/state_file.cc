#include "twin/state_file.h"

#include <sys/stat.h>

#include <cctype>

#include "absl/strings/str_cat.h"
#include "common/util/file.h"

namespace sphere::twin {

absl::Status ValidateTwinName(const std::string& name) {
  if (name.empty() || name.size() > kMaxTwinNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("twin name must be 1 to ", kMaxTwinNameLength,
                     " characters, got ", name.size()));
  }
  if (name[0] == '.') {
    return absl::InvalidArgumentError(
        absl::StrCat("twin name '", name, "' must not start with '.'"));
  }
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
          c == '-')) {
      return absl::InvalidArgumentError(
          absl::StrCat("twin name '", name,
                       "' may use only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

std::string TwinDir(const std::string& state_dir, const std::string& name) {
  return absl::StrCat(state_dir, "/twins/", name);
}

std::string TwinStatePath(const std::string& state_dir,
                          const std::string& name) {
  return TwinDir(state_dir, name) + "/twin.state";
}

absl::StatusOr<TwinStateFile> ReadTwinState(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("no twin state at ", path,
                     ": manufacture the twin first "
                     "(bazel-bin/securitysvc/factory/factory)"));
  }
  if (static_cast<size_t>(st.st_size) > kMaxStateFileBytes) {
    return absl::DataLossError(absl::StrCat("twin state ", path, " is ",
                                            st.st_size, " bytes, over the ",
                                            kMaxStateFileBytes, " limit"));
  }
  auto bytes = util::ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  TwinStateFile state;
  if (bytes->size() > kMaxStateFileBytes || !state.ParseFromString(*bytes)) {
    return absl::DataLossError(
        absl::StrCat("twin state ", path, " is corrupt"));
  }
  if (state.format() != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("twin state ", path, " has format ", state.format(),
                     "; this twin understands format 1"));
  }
  return state;
}

absl::Status WriteTwinState(const std::string& path,
                            const TwinStateFile& state) {
  const std::string dir = path.substr(0, path.rfind('/'));
  if (absl::Status s = util::MakeDirs(dir, 0700); !s.ok()) return s;
  std::string bytes;
  if (!state.SerializeToString(&bytes)) {
    return absl::InternalError("cannot serialize twin state");
  }
  return util::WriteFile(path, bytes, 0600);
}

}  // namespace sphere::twin
