// TwinRun: a long-running `twin ...` child process for cross-process tests.
// Spawn() starts it (tests/cluster_fixture.h SpawnPiped) and drains its
// output on a thread; AwaitOutput() waits for a line of it (a condition on
// the drained output, no sleeps). Start() is Spawn() for `twin run|run-basic`
// plus waiting (at most 60 s) until the twin prints "twin control serving";
// Control() is a TwinControl stub on the port and self-signed certificate
// the twin writes to its directory. Stop() sends SIGTERM and returns the
// exit code, Kill() sends SIGKILL and returns the signal; the destructor
// stops a running child.
//
// Thread-safety: call from the test's thread; output() from any thread.
#ifndef SPHERE_TESTS_TWIN_RUN_H_
#define SPHERE_TESTS_TWIN_RUN_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/twin_control.grpc.pb.h"

namespace sphere::testing {

class LocalCluster;

// TwinArgv: `twin --cluster FILE --name NAME --min_catalog_revision REV
// FLAGS... COMMAND` against `cluster`, at the catalog revision it has now
// (so the twin's shard answers from a catalog holding every change so far).
std::vector<std::string> TwinArgv(LocalCluster* cluster,
                                  const std::string& name,
                                  const std::vector<std::string>& flags,
                                  const std::string& command);

class TwinRun {
 public:
  TwinRun() = default;
  ~TwinRun();
  TwinRun(const TwinRun&) = delete;
  TwinRun& operator=(const TwinRun&) = delete;

  // Spawn starts `argv` and drains its output; it does not wait.
  absl::Status Spawn(const std::vector<std::string>& argv);
  // Start spawns a `twin run|run-basic` and waits until it serves control.
  absl::Status Start(const std::vector<std::string>& argv);
  // AwaitOutput: true once the output contains `text`; false when the child
  // closed its output or `timeout` passed first.
  bool AwaitOutput(absl::string_view text, absl::Duration timeout);
  // Control: a TwinControl stub for the twin whose directory is `twin_dir`
  // (twin::TwinDir(state_dir, name)).
  static absl::StatusOr<std::unique_ptr<v1::TwinControl::Stub>> Control(
      const std::string& twin_dir);
  int Stop();
  // Kill sends SIGKILL and reaps the child; returns the signal that ended it
  // (0 if it had exited on its own, -1 if none was running).
  int Kill();
  // Alive: the child has not exited (it was neither killed nor restarted).
  bool Alive();
  pid_t pid() const { return pid_; }
  std::string output();

 private:
  // End sends `signal` to a running child unless Alive() reaped it, reaps
  // it and joins the reader; returns its wait status.
  int End(int signal);

  pid_t pid_ = -1;
  int reaped_status_ = -1;  // wait status when Alive() reaped the child
  std::thread reader_;
  absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_TWIN_RUN_H_
