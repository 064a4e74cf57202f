// RolloutController: management's staged rollout of deployments (issue 11).
//
// A deployment rolls out in stages (by default 1 %, 10 %, 50 %, 100 % of
// its group) with a soak time per stage. Which devices fall in a stage is
// stable (InRolloutStage: a hash of the device id), and a device in a stage
// stays in every larger one. The controller publishes a stage by writing the
// deployment's rollout_fraction (and halted / halt_reason) through
// Hooks::apply, which management turns into a catalog change; shards then
// serve the new metadata variants.
//
// Tick (run on a timer thread by RunEvery, never on a gRPC callback thread;
// tests call it directly with a FakeClock) evaluates every running rollout:
//   * it HALTS by itself when the current stage's failure rate passes the
//     group's rollout_failure_threshold, once at least Plan::min_attempts
//     devices attempted (threshold 0 = never). Failures are failed installs
//     + rollbacks + installs that crashed or were watchdog-reset afterwards
//     (StageResultCounts.crashed_after_install, counted by the shards from
//     error reporting) + Hooks::extra_failures; attempted = installed +
//     failed + rolled back; all summed over the shards by Hooks::counts and
//     counted since the stage (re)started. The halt reason names each kind;
//   * failures keep counting during the soak: a stage halts as soon as its
//     rate passes the threshold, also after every device installed;
//   * else it advances to the next stage once the stage has soaked;
//   * after the last stage has soaked it is COMPLETE.
// Operators Pause (no advancing; the stage stays served), Resume (a paused or
// halted rollout; the soak restarts) and Abort (halted for good).
//
// Hooks::extra_failures is an extra seam (other failure sources); crashes and
// watchdog resets after install already arrive in the counts.
//
// State is kept in memory and published with the deployment
// (Deployment.rollout_status, baseline included); management re-creates it
// with Restore on restart.
// Thread-safety: thread-safe; hooks are called without the lock held.
#ifndef SPHERE_SECURITYSVC_UPDATE_ROLLOUT_CONTROLLER_H_
#define SPHERE_SECURITYSVC_UPDATE_ROLLOUT_CONTROLLER_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/util/clock.h"
#include "protos/management.pb.h"
#include "protos/update.pb.h"

namespace sphere::update {

class RolloutController {
 public:
  struct Plan {
    std::vector<uint32_t> stage_percents = {1, 10, 50, 100};
    absl::Duration soak = absl::Hours(1);
    uint64_t min_attempts = 1;  // attempts before a rate can halt
  };
  struct Hooks {
    // apply publishes the deployment (rollout_fraction, halted,
    // halt_reason) to the catalog. Required.
    std::function<absl::Status(const v1::Deployment&)> apply;
    // counts: the deployment's counts for one stage, summed over shards
    // (crashes after install and pending included). Required. An error
    // skips this evaluation (the rollout neither halts nor advances on data
    // it could not read).
    std::function<absl::StatusOr<v1::StageResultCounts>(
        const v1::Deployment& deployment, uint32_t stage_percent)>
        counts;
    // extra_failures: failures from another source since `since`, added to
    // the stage's failures. Optional.
    std::function<uint64_t(const std::string& deployment_id, absl::Time since)>
        extra_failures;
    // is_leader: Tick does nothing while it answers false (a management
    // replica that is not the leader). Optional (unset = always lead).
    std::function<bool()> is_leader;
  };

  RolloutController(const Clock* clock, Hooks hooks, Plan plan);
  ~RolloutController();

  // Start begins `deployment` at the first stage and publishes it.
  // AlreadyExists when it is already rolling out.
  absl::Status Start(const v1::Deployment& deployment,
                     double failure_threshold);
  // Restore re-creates a rollout from the state Commit stored in the
  // deployment (Deployment.rollout_status), without publishing anything.
  // InvalidArgument when the deployment carries no valid state.
  absl::Status Restore(const v1::Deployment& deployment);
  bool Has(const std::string& deployment_id) const;
  // Forget drops a rollout (its deployment was deleted). May be called from
  // Hooks::apply.
  void Forget(const std::string& deployment_id);
  absl::Status Pause(const std::string& deployment_id);
  absl::Status Resume(const std::string& deployment_id);
  absl::Status Abort(const std::string& deployment_id,
                     const std::string& reason);
  absl::StatusOr<v1::RolloutStatus> Status(
      const std::string& deployment_id) const;

  // Tick evaluates every running rollout once (see the class comment).
  void Tick();
  // RunEvery starts a thread calling Tick every `interval` until Stop.
  void RunEvery(absl::Duration interval);
  void Stop();

 private:
  struct Rollout {
    v1::Deployment deployment;
    v1::RolloutStatus status;
    // Counts when the stage last (re)started by Resume: the halt rule looks
    // only at what was reported since.
    v1::StageResultCounts baseline;
  };
  // Commit publishes `next` (deployment fraction and halt state through
  // Hooks::apply) and, when that worked, makes it the rollout's state.
  absl::Status Commit(Rollout next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  absl::StatusOr<Rollout> Get(const std::string& id) const;

  const Clock* const clock_;
  const Hooks hooks_;
  const Plan plan_;
  // Serialises every change (Start, Pause, Resume, Abort, Tick), hooks
  // included, so an operator's action and the timer never interleave.
  absl::Mutex op_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Rollout> rollouts_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_ROLLOUT_CONTROLLER_H_
