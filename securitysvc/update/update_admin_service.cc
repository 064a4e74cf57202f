#include "securitysvc/update/update_admin_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "securitysvc/attestation/device_status_service.h"

namespace sphere::update {

grpc::ServerUnaryReactor* UpdateAdminServiceImpl::GetDeploymentCounts(
    grpc::CallbackServerContext* context,
    const v1::GetDeploymentCountsRequest* request,
    v1::DeploymentCounts* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status = [&]() -> absl::Status {
    auto peer = rpc::PeerFromContext(*context);
    if (!peer.ok()) return peer.status();
    auto reader =
        attestation::IdentifyStatusReader(peer->cert, root_subject_line_);
    if (!reader.ok()) return reader.status();
    const std::string& id = request->deployment_id();
    if (id.empty() || id.size() > kMaxDeploymentIdBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "deployment_id must be 1..", kMaxDeploymentIdBytes, " bytes"));
    }
    response->set_deployment_id(id);
    const std::string tenant = results_->DeploymentTenant(id);
    if (!reader->platform && tenant != reader->tenant_id) {
      return absl::OkStatus();  // another tenant's: as if nobody reported
    }
    auto counts = results_->Counts(id);
    std::vector<uint32_t> stages;
    for (const auto& [stage, c] : counts) stages.push_back(stage);
    std::sort(stages.begin(), stages.end());
    for (uint32_t stage : stages) {
      const StageCounts& c = counts[stage];
      v1::StageResultCounts* out = response->add_stages();
      out->set_rollout_stage(stage);
      out->set_installed(c.installed);
      out->set_failed(c.failed);
      out->set_rolled_back(c.rolled_back);
      out->set_deferred(c.deferred);
    }
    return absl::OkStatus();
  }();
  if (absl::IsPermissionDenied(status) || absl::IsUnauthenticated(status)) {
    log::Warning("deployment counts denied",
                 {{"peer", context->peer()},
                  {"error", std::string(status.message())}});
  }
  reactor->Finish(rpc::ToGrpcStatus(status));
  return reactor;
}

}  // namespace sphere::update
