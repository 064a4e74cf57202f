// RolloutManager: management's side of issue 11's staged rollout. It owns a
// update::RolloutController and wires it to the catalog:
//   * publishing: every stage advance, halt, pause, resume and abort is a
//     Catalog::SetDeploymentRollout (rollout_fraction, halted, halt_reason
//     and the serialized RolloutStatus), one catalog revision that the Watch
//     replicates to shards, which serve the new metadata variants;
//   * persistence: Open restores every rollout from the catalog (the state
//     travels in Deployment.rollout_status), so a restarted management
//     carries on with the same stage, soak start, pause and baseline;
//   * discovery: Tick (and an operator call naming it) starts a rollout for
//     every deployment created staged (rollout_fraction < 1, no
//     rollout_status yet; see CatalogOptions::new_deployment_rollout_fraction)
//     with its group's rollout_failure_threshold;
//   * counts: a DeploymentCountSource (in the management process, every
//     shard's UpdateAdminService.GetDeploymentCounts, summed).
// Tick runs on the manager's own thread (RunEvery), never on a gRPC callback
// thread; it does nothing while Options::is_leader answers false.
//
// Operator methods are tenant-scoped like the catalog's deployment methods:
// another tenant's deployment answers NotFound exactly like a missing one.
//
// Thread-safety: thread-safe.
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_ROLLOUT_MANAGER_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_ROLLOUT_MANAGER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/util/clock.h"
#include "protos/update.pb.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/update/rollout_controller.h"

namespace sphere::management {

// DeploymentCountSource: a deployment's update results for one rollout
// stage, summed over every shard (crashes after install, and the stage's
// pending devices when it is the deployment's current stage, included).
class DeploymentCountSource {
 public:
  virtual ~DeploymentCountSource() = default;
  virtual absl::StatusOr<v1::StageResultCounts> Counts(
      const v1::Deployment& deployment, uint32_t stage_percent) = 0;
};

class RolloutManager {
 public:
  struct Options {
    update::RolloutController::Plan plan;
    // Leader gate (management replicas): unset = always the leader.
    std::function<bool()> is_leader;
  };

  // Open restores every rollout recorded in the catalog. `catalog`, `clock`
  // and `counts` must outlive the manager.
  static absl::StatusOr<std::unique_ptr<RolloutManager>> Open(
      Catalog* catalog, const Clock* clock, DeploymentCountSource* counts,
      Options options);
  ~RolloutManager();

  // Tick starts newly created staged deployments, then evaluates every
  // running rollout (advance after soak, halt at the threshold).
  void Tick();
  void RunEvery(absl::Duration interval);
  void Stop();

  // Status: the rollout with the current stage's counts fetched now.
  // NotFound for another tenant's deployment or one that is not staged.
  absl::StatusOr<v1::RolloutStatus> Status(const Caller& caller,
                                           absl::string_view tenant,
                                           absl::string_view deployment_id);
  // FailedPrecondition when the rollout is not in a state that allows it
  // (e.g. resuming an aborted one).
  absl::Status Pause(const Caller& caller, absl::string_view tenant,
                     absl::string_view deployment_id);
  absl::Status Resume(const Caller& caller, absl::string_view tenant,
                      absl::string_view deployment_id);
  absl::Status Abort(const Caller& caller, absl::string_view tenant,
                     absl::string_view deployment_id, absl::string_view reason);

 private:
  RolloutManager(Catalog* catalog, DeploymentCountSource* counts);
  // Visible: the deployment when the caller may see it and it is staged;
  // NotFound otherwise.
  absl::StatusOr<v1::Deployment> Visible(const Caller& caller,
                                         absl::string_view tenant,
                                         absl::string_view deployment_id);
  void StartNew();
  // StartOne starts `d`'s rollout if it was created staged and has none.
  absl::Status StartOne(const v1::Deployment& d);

  Catalog* const catalog_;
  DeploymentCountSource* const counts_;
  std::function<bool()> is_leader_;
  std::unique_ptr<update::RolloutController> controller_;
  absl::Notification stop_;
  std::thread stop_thread_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_ROLLOUT_MANAGER_H_
