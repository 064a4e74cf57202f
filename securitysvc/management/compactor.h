// Compactor runs catalog compaction, work that must run once per cluster,
// on whichever management replica leads (LeaderElection). Every `interval`
// the leader compacts the change log to keep at most `keep_revisions` of
// history (watchers older than that get a snapshot, as after any
// compaction); Catalog::Compact also compacts the backend's own history
// (etcd's MVCC revisions). Followers do nothing and take over when they win
// the election.
//
// Thread-safety: owns one thread; the destructor stops and joins it.
//
// Example:
//   SoleLeader sole;  // one management process (embedded catalog)
//   Compactor compactor(catalog, &sole, {absl::Minutes(1), 10000});
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_COMPACTOR_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_COMPACTOR_H_

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/leader_election.h"

namespace sphere::management {

class Compactor {
 public:
  struct Options {
    absl::Duration interval = absl::Minutes(1);
    int64_t keep_revisions = 10000;
  };
  Compactor(Catalog* catalog, LeaderElection* election, Options options);
  ~Compactor();

  // RunOnce compacts if this replica leads and there is enough history;
  // returns the compacted revision (unchanged when nothing was done).
  absl::StatusOr<int64_t> RunOnce();

 private:
  void Loop();
  Catalog* const catalog_;
  LeaderElection* const election_;
  const Options options_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_COMPACTOR_H_
