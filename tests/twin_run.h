// TwinRun: a long-running `twin ... run|run-basic` child process for
// cross-process tests. Start() spawns it (tests/cluster_fixture.h
// SpawnPiped), drains its output on a thread and blocks until the twin
// prints "twin control serving" (a pipe read, no sleeps; at most 60 s);
// Control() is a TwinControl stub on the port and self-signed certificate
// the twin writes to its directory. Stop() sends SIGTERM and returns the
// exit code; the destructor stops a running child.
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
#include "absl/synchronization/mutex.h"
#include "protos/twin_control.grpc.pb.h"

namespace sphere::testing {

class TwinRun {
 public:
  TwinRun() = default;
  ~TwinRun();
  TwinRun(const TwinRun&) = delete;
  TwinRun& operator=(const TwinRun&) = delete;

  absl::Status Start(const std::vector<std::string>& argv);
  // Control: a TwinControl stub for the twin whose directory is `twin_dir`
  // (twin::TwinDir(state_dir, name)).
  static absl::StatusOr<std::unique_ptr<v1::TwinControl::Stub>> Control(
      const std::string& twin_dir);
  int Stop();
  // Alive: the child has not exited (it was neither killed nor restarted).
  bool Alive();
  pid_t pid() const { return pid_; }
  std::string output();

 private:
  pid_t pid_ = -1;
  int reaped_status_ = -1;  // wait status when Alive() reaped the child
  std::thread reader_;
  absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_TWIN_RUN_H_
