// KillLoop: the child-writer kill harness of the crash-durability tests (in
// the spirit of RocksDB's db_crashtest), shared by common/store/crash_test and
// securitysvc/errors/errors_crash_test. Test-only.
//
// A writer child process prints one line on stdout per write it has had
// acknowledged (synced), one write(2) per line (atomic below PIPE_BUF).
// RunAndKill spawns it with stdout on a pipe, hands every line to the
// caller's `on_line` (which parses it, records the acknowledgement and says
// whether the line counts), and sends SIGKILL as soon as `kill_after` lines
// have counted: the kill point is a count of acknowledgements, never a sleep.
// The caller then reopens the store and checks that everything it recorded
// survived.
//
// Example:
//   store::KillChild child{store::TestBinary("common/store/crash_writer"),
//                          {dir, "4"}, {"SPHERE_STORE_KEY_HEX=..."}};
//   std::set<std::string> acked;
//   absl::StatusOr<int> n = store::RunAndKill(child, 1000,
//       [&](absl::string_view line) { acked.insert(std::string(line));
//                                     return true; });
//   ASSERT_TRUE(n.ok()) << n.status();   // killed after 1000 acks
//
// Thread-safety: RunAndKill may run concurrently with itself (each call owns
// its child and pipe); `on_line` runs on the calling thread.
#ifndef SPHERE_COMMON_STORE_KILL_LOOP_H_
#define SPHERE_COMMON_STORE_KILL_LOOP_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sphere::store {

// KillChild: the writer to run: executable path, its arguments (argv[1..])
// and environment entries ("NAME=value") added to the test's environment.
struct KillChild {
  std::string path;
  std::vector<std::string> args;
  std::vector<std::string> extra_env;
};

// TestBinary: the path of a data dependency of the running test, given its
// workspace-relative path (e.g. "common/store/crash_writer"), resolved under
// $TEST_SRCDIR/$TEST_WORKSPACE (outside Bazel: relative to ".").
std::string TestBinary(absl::string_view workspace_path);

// RunAndKill spawns `child`, feeds each stdout line (without its newline) to
// `on_line` until `kill_after` lines returned true, then SIGKILLs the child
// and reaps it. Returns the number of counted lines (== kill_after), or:
// Internal when the child cannot be spawned, Aborted when it exits or dies
// before `kill_after` acknowledgements (then its stderr says why; the lines
// read so far have been handed to `on_line`).
absl::StatusOr<int> RunAndKill(
    const KillChild& child, int kill_after,
    const std::function<bool(absl::string_view line)>& on_line);

}  // namespace sphere::store

#endif  // SPHERE_COMMON_STORE_KILL_LOOP_H_
