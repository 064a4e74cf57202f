#include "cli/exit_codes.h"

namespace sphere::cli {

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
      return kExitUsage;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return kExitPermissionDenied;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    case absl::StatusCode::kAlreadyExists:
      return kExitAlreadyExists;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kOutOfRange:
      return kExitFailedPrecondition;
    case absl::StatusCode::kResourceExhausted:
      return kExitResourceExhausted;
    default:
      return kExitError;
  }
}

const char kExitCodeHelp[] =
    "Exit codes:\n"
    "  0 success\n"
    "  1 other error\n"
    "  2 usage or invalid input (unknown noun, verb or flag; bad value)\n"
    "  3 not found\n"
    "  4 permission denied\n"
    "  5 cluster unavailable or timed out\n"
    "  6 already exists\n"
    "  7 refused in this state (e.g. still in use)\n"
    "  8 limit reached\n";

}  // namespace sphere::cli
