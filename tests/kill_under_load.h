// KillUnderLoad: the kill -9 loop of the durability tests (RocksDB crash-test
// style). Worker threads write as fast as they can and record every
// acknowledgement; after `kill_after` acknowledgements (or once every worker
// gave up) the harness calls `kill` (SIGKILL of the server), tells the
// workers to stop and joins them. The caller then restarts or opens the
// server's data offline and checks that every acknowledged write is there.
//
//   KillUnderLoad load(/*threads=*/2, /*kill_after=*/RandomKillPoint(30, 150));
//   load.Run(
//       [&](int t) {
//         while (!load.killed()) {
//           if (!Write(t).ok()) {
//             if (!load.killed()) ADD_FAILURE() << "write before the kill";
//             return;
//           }
//           load.Ack([&] { acked.push_back(...); });  // under the lock
//         }
//       },
//       [&] { ASSERT_EQ(kill(pid, SIGKILL), 0); });
//
// Thread-safety: Ack and WithLock may be called from any worker; the state
// they guard (the caller's record of acknowledged writes) must only be
// touched under them until Run returns. No sleeps: the harness waits on a
// condition over the acknowledgement count.
#ifndef SPHERE_TESTS_KILL_UNDER_LOAD_H_
#define SPHERE_TESTS_KILL_UNDER_LOAD_H_

#include <atomic>
#include <functional>

#include "absl/synchronization/mutex.h"

namespace sphere::testing {

// RandomKillPoint draws from [lo, hi] with a per-process seed that is printed
// on first use, so a failing kill point can be reproduced with
// SPHERE_CRASH_SEED=<seed>.
int RandomKillPoint(int lo, int hi);

class KillUnderLoad {
 public:
  KillUnderLoad(int threads, int kill_after)
      : threads_(threads), kill_after_(kill_after) {}
  KillUnderLoad(const KillUnderLoad&) = delete;
  KillUnderLoad& operator=(const KillUnderLoad&) = delete;

  // Run starts `threads` workers calling worker(thread index), waits until
  // `kill_after` acknowledgements were recorded or every worker returned,
  // marks the load killed, calls `kill`, and joins the workers. A worker
  // returns when killed() turns true or at its first failure.
  void Run(const std::function<void(int thread)>& worker,
           const std::function<void()>& kill);

  // killed: the server is being (or was) killed: failures from now on are
  // expected and end the worker quietly.
  bool killed() const { return killed_.load(); }

  // Ack counts one acknowledgement, running `record` (if any) under the
  // harness lock first.
  void Ack(const std::function<void()>& record = nullptr);
  // WithLock runs `f` under the harness lock (for shared records that are
  // not acknowledgements).
  void WithLock(const std::function<void()>& f);

  // acks: acknowledgements so far.
  int acks() const;
  int kill_after() const { return kill_after_; }

 private:
  bool Done() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return acks_ >= kill_after_ || active_ == 0;
  }

  const int threads_;
  const int kill_after_;
  std::atomic<bool> killed_{false};
  mutable absl::Mutex mu_;
  int acks_ ABSL_GUARDED_BY(mu_) = 0;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_KILL_UNDER_LOAD_H_
