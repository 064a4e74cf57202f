// Exit codes: what a script can tell from spherectl's exit status. Each
// failure also prints one line "error: <message>" on stderr.
//
//   0  success
//   1  any other error (internal, data loss, unknown)
//   2  usage: unknown noun, verb or flag, a missing or malformed argument,
//      or a request the server refused as invalid (INVALID_ARGUMENT)
//   3  not found (NOT_FOUND)
//   4  permission denied (PERMISSION_DENIED, UNAUTHENTICATED)
//   5  unavailable: the cluster did not answer (UNAVAILABLE,
//      DEADLINE_EXCEEDED)
//   6  already exists (ALREADY_EXISTS)
//   7  refused in the current state, e.g. deleting something in use
//      (FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE)
//   8  a limit was reached (RESOURCE_EXHAUSTED)
#ifndef SPHERE_CLI_EXIT_CODES_H_
#define SPHERE_CLI_EXIT_CODES_H_

#include "absl/status/status.h"

namespace sphere::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,
  kExitUsage = 2,
  kExitNotFound = 3,
  kExitPermissionDenied = 4,
  kExitUnavailable = 5,
  kExitAlreadyExists = 6,
  kExitFailedPrecondition = 7,
  kExitResourceExhausted = 8,
};

// ExitCodeFor maps a command's final status to its exit code (table above).
int ExitCodeFor(const absl::Status& status);

// kExitCodeHelp is the table above as printed at the end of every --help.
extern const char kExitCodeHelp[];

}  // namespace sphere::cli

#endif  // SPHERE_CLI_EXIT_CODES_H_
