// UpdateAdminServiceImpl: operators' (and management's RolloutController's)
// read of what this shard's update plug-in counted per deployment
// (protos/update.proto UpdateAdminService). Operator certificates issued by
// the platform root only (attestation::IdentifyStatusReader, as for
// DeviceStatusService): a platform operator reads every deployment, a tenant
// operator its tenant's; another tenant's deployment answers exactly like
// one nobody reported for (empty counts).
//
// In memory, synchronous on the callback thread (no I/O). Thread-safe.
#ifndef SPHERE_SECURITYSVC_UPDATE_UPDATE_ADMIN_SERVICE_H_
#define SPHERE_SECURITYSVC_UPDATE_UPDATE_ADMIN_SERVICE_H_

#include <string>

#include "protos/update.grpc.pb.h"
#include "securitysvc/update/update_results.h"

namespace sphere::update {

// Deployment ids are UUIDs; longer request fields are refused.
inline constexpr size_t kMaxDeploymentIdBytes = 64;

class UpdateAdminServiceImpl final
    : public v1::UpdateAdminService::CallbackService {
 public:
  UpdateAdminServiceImpl(const UpdateResults* results,
                         std::string root_subject_line)
      : results_(results), root_subject_line_(std::move(root_subject_line)) {}

  grpc::ServerUnaryReactor* GetDeploymentCounts(
      grpc::CallbackServerContext* context,
      const v1::GetDeploymentCountsRequest* request,
      v1::DeploymentCounts* response) override;

 private:
  const UpdateResults* const results_;
  const std::string root_subject_line_;
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_UPDATE_ADMIN_SERVICE_H_
