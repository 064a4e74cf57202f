// Twin state files: the one file per twin that the twin binary and the
// factory tool share, DIR/twins/NAME/twin.state (TwinStateFile, mode 0600,
// replaced atomically). The Twin library itself never touches files.
//
// Thread-safety: stateless functions; concurrent writers of one file race
// (last rename wins), as with any file.
#ifndef SPHERE_TWIN_STATE_FILE_H_
#define SPHERE_TWIN_STATE_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "twin/twin_state.pb.h"

namespace sphere::twin {

// Largest state file accepted (device flash images dominate).
inline constexpr size_t kMaxStateFileBytes = 64 << 20;
inline constexpr size_t kMaxTwinNameLength = 64;

// ValidateTwinName: 1..64 of [A-Za-z0-9._-], not starting with '.', so a
// name can never leave DIR/twins/. InvalidArgument names the problem.
absl::Status ValidateTwinName(const std::string& name);

// TwinDir is DIR/twins/NAME; TwinStatePath is TwinDir + "/twin.state".
std::string TwinDir(const std::string& state_dir, const std::string& name);
std::string TwinStatePath(const std::string& state_dir,
                          const std::string& name);

// ReadTwinState: NotFound (never manufactured: run the factory tool),
// DataLoss (corrupt or oversized), FailedPrecondition (unknown format).
absl::StatusOr<TwinStateFile> ReadTwinState(const std::string& path);
// WriteTwinState creates the twin's directory (0700) if needed and replaces
// the file atomically (0600).
absl::Status WriteTwinState(const std::string& path,
                            const TwinStateFile& state);

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_STATE_FILE_H_
