// UpdateAdminServiceImpl: operators' (and management's RolloutController's)
// read of what this shard's update plug-in counted per deployment
// (protos/update.proto UpdateAdminService). Operator certificates issued by
// the platform root only (attestation::IdentifyStatusReader, as for
// DeviceStatusService): a platform operator reads every deployment, a tenant
// operator its tenant's; another tenant's deployment answers exactly like
// one nobody reported for (empty counts).
//
// Counts per stage: installed, failed, rolled back, deferred and installs
// that crashed afterwards (UpdateResults, in memory). With the request's
// device_group_id, while the deployment is that group's current one, the
// entry of its current stage also carries in_stage and pending
// (StageMembership); that walk runs on the update worker, never on the
// callback thread (a full worker queue answers RESOURCE_EXHAUSTED).
//
// Thread-safety: thread-safe.
#ifndef SPHERE_SECURITYSVC_UPDATE_UPDATE_ADMIN_SERVICE_H_
#define SPHERE_SECURITYSVC_UPDATE_UPDATE_ADMIN_SERVICE_H_

#include <string>

#include "common/util/worker_pool.h"
#include "protos/update.grpc.pb.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/update/stage_membership.h"
#include "securitysvc/update/update_results.h"

namespace sphere::update {

// Deployment ids are UUIDs; longer request fields are refused.
inline constexpr size_t kMaxDeploymentIdBytes = 64;
inline constexpr size_t kMaxGroupIdBytes = 64;

class UpdateAdminServiceImpl final
    : public v1::UpdateAdminService::CallbackService {
 public:
  // Everything must outlive the service. catalog, membership and worker may
  // be null: then no pending counts.
  struct Deps {
    const UpdateResults* results = nullptr;
    const catalog::CatalogView* catalog = nullptr;
    StageMembership* membership = nullptr;
    WorkerPool* worker = nullptr;
    std::string root_subject_line;
  };
  explicit UpdateAdminServiceImpl(Deps deps) : d_(std::move(deps)) {}
  UpdateAdminServiceImpl(const UpdateResults* results,
                         std::string root_subject_line) {
    d_.results = results;
    d_.root_subject_line = std::move(root_subject_line);
  }

  grpc::ServerUnaryReactor* GetDeploymentCounts(
      grpc::CallbackServerContext* context,
      const v1::GetDeploymentCountsRequest* request,
      v1::DeploymentCounts* response) override;

 private:
  // Fill writes the counts of `id` (and, with `current`, the pending count
  // of its current stage) into `response`.
  void Fill(const std::string& id, const v1::Deployment* current,
            v1::DeploymentCounts* response) const;

  Deps d_;
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_UPDATE_ADMIN_SERVICE_H_
