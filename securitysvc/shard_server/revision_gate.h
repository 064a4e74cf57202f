// RevisionGate holds back calls that must not be answered before the shard's
// catalog has reached a revision (read-your-writes after a management
// change), without ever blocking the calling gRPC callback thread
// (issue 8 hole 4).
//
// WhenReached answers at once when it can:
//  * the catalog is already at `revision`: done(OK) on the calling thread;
//  * `revision` is more than Options::max_lead ahead of the catalog (no
//    amount of waiting will help soon, e.g. a forged huge revision):
//    done(UNAVAILABLE "catalog at revision R, requested M; retry");
//  * the parked set is full (Options::max_parked in all, max_per_key for one
//    key such as a device id): done(UNAVAILABLE ...; retry).
// Otherwise the call is parked and answered by the gate's own thread: OK as
// soon as the catalog reaches the revision, UNAVAILABLE at the earlier of the
// caller's deadline and Options::max_wait. `done` is called exactly once and
// must be cheap (it runs on the gate thread or the caller's thread).
//
// The gate learns about progress through `wait` (blocks up to a duration
// until the catalog reached a revision: the catalog follower's
// WaitForRevision); without one (in-process shards whose catalog is filled by
// hand) call Notify() after changing the catalog. Deadlines are wall-clock
// (gRPC deadlines are).
//
// Thread-safe. Stop (or the destructor) answers every parked call with
// UNAVAILABLE.
#ifndef SPHERE_SECURITYSVC_SHARD_SERVER_REVISION_GATE_H_
#define SPHERE_SECURITYSVC_SHARD_SERVER_REVISION_GATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sphere::shard {

class RevisionGate {
 public:
  struct Options {
    // A revision further ahead of the catalog than this is refused at once.
    int64_t max_lead = 10000;
    size_t max_parked = 256;
    size_t max_per_key = 2;
    // Longest a call stays parked, whatever its deadline.
    absl::Duration max_wait = absl::Seconds(5);
    // Longest the gate thread waits before re-checking deadlines.
    absl::Duration tick = absl::Milliseconds(50);
  };
  using CurrentRevision = std::function<int64_t()>;
  using WaitForRevision = std::function<bool(int64_t, absl::Duration)>;
  using Done = std::function<void(absl::Status)>;

  RevisionGate(CurrentRevision current, WaitForRevision wait, Options options);
  ~RevisionGate();
  RevisionGate(const RevisionGate&) = delete;
  RevisionGate& operator=(const RevisionGate&) = delete;

  // WhenReached calls `done` once the catalog reached `revision` (see the
  // class comment). `key` bounds how many calls one caller may park.
  void WhenReached(int64_t revision, absl::Time deadline, absl::string_view key,
                   Done done);
  // current: the catalog revision the gate sees now.
  int64_t current() const { return current_(); }
  // Notify: the catalog changed (only needed without a `wait` function).
  void Notify();
  void Stop();
  size_t parked() const;

 private:
  struct Parked {
    int64_t revision;
    absl::Time deadline;
    std::string key;
    Done done;
  };
  void Run();

  const CurrentRevision current_;
  const WaitForRevision wait_;
  const Options options_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by Notify/park
  std::vector<Parked> parked_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> per_key_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace sphere::shard

#endif  // SPHERE_SECURITYSVC_SHARD_SERVER_REVISION_GATE_H_
