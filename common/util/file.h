// File helpers for PEM, state and configuration files. Plain POSIX: code that
// only reads or writes files depends on this target, not on common/rpc (and
// so does not link gRPC).
//
//   absl::StatusOr<std::string> pem = util::ReadFile(dir + "/root.pem");
//   RETURN_IF_ERROR(util::MakeDirs(dir, 0700));
//   RETURN_IF_ERROR(util::WriteFile(dir + "/twin.state", bytes, 0600));
//
// Thread-safe: the functions share no state. WriteFile is atomic against
// readers (temp file + rename) but two writers of one path race: the last
// rename wins.
#ifndef SPHERE_COMMON_UTIL_FILE_H_
#define SPHERE_COMMON_UTIL_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sphere::util {

// ReadFile returns the whole file; NotFound when it cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// WriteFile replaces `path` atomically: it writes PATH.tmp.PID with `mode`,
// fsyncs it and renames it over `path`. Internal on any I/O error.
absl::Status WriteFile(const std::string& path, absl::string_view contents,
                       int mode = 0644);

// MakeDirs creates `path` and any missing parents (like `mkdir -p`); new
// directories get `mode`. Existing directories are left as they are.
absl::Status MakeDirs(const std::string& path, int mode = 0755);

}  // namespace sphere::util

#endif  // SPHERE_COMMON_UTIL_FILE_H_
