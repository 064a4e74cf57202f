#include "securitysvc/update/update_admin_service.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "securitysvc/attestation/device_status_service.h"

namespace sphere::update {
namespace {

// CurrentPercent: the stage percent devices of `d`'s current stage are
// counted under (UpdateMetadata.rollout_stage; 100 for a full rollout).
uint32_t CurrentPercent(const v1::Deployment& d) {
  const double f = d.rollout_fraction();
  if (!(f > 0) || f >= 1) return 100;
  return static_cast<uint32_t>(std::max(1.0, std::round(f * 100)));
}

}  // namespace

void UpdateAdminServiceImpl::Fill(const std::string& id,
                                  const v1::Deployment* current,
                                  v1::DeploymentCounts* response) const {
  auto counts = d_.results->Counts(id);
  std::map<uint32_t, v1::StageResultCounts> out;
  for (const auto& [stage, c] : counts) {
    v1::StageResultCounts& o = out[stage];
    o.set_rollout_stage(stage);
    o.set_installed(c.installed);
    o.set_failed(c.failed);
    o.set_rolled_back(c.rolled_back);
    o.set_deferred(c.deferred);
    o.set_crashed_after_install(c.crashed_after_install);
  }
  if (current != nullptr && d_.membership != nullptr) {
    const uint32_t pct = CurrentPercent(*current);
    const uint64_t in_stage =
        d_.membership->Count(current->device_group_id(), pct);
    // Devices of this stage that reported in it or in an earlier (smaller)
    // stage: a device in a stage is in every larger one.
    uint64_t reported = 0;
    for (const auto& [stage, c] : counts) {
      if (stage > 0 && stage <= pct) reported += c.reported();
    }
    v1::StageResultCounts& o = out[pct];
    o.set_rollout_stage(pct);
    o.set_in_stage(in_stage);
    o.set_pending(in_stage - std::min(in_stage, reported));
  }
  for (auto& [stage, c] : out) *response->add_stages() = std::move(c);
}

grpc::ServerUnaryReactor* UpdateAdminServiceImpl::GetDeploymentCounts(
    grpc::CallbackServerContext* context,
    const v1::GetDeploymentCountsRequest* request,
    v1::DeploymentCounts* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  bool posted = false;
  absl::Status status = [&]() -> absl::Status {
    auto peer = rpc::PeerFromContext(*context);
    if (!peer.ok()) return peer.status();
    auto reader =
        attestation::IdentifyStatusReader(peer->cert, d_.root_subject_line);
    if (!reader.ok()) return reader.status();
    const std::string& id = request->deployment_id();
    if (id.empty() || id.size() > kMaxDeploymentIdBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "deployment_id must be 1..", kMaxDeploymentIdBytes, " bytes"));
    }
    if (request->device_group_id().size() > kMaxGroupIdBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("device_group_id is ", request->device_group_id().size(),
                       " bytes; at most ", kMaxGroupIdBytes));
    }
    response->set_deployment_id(id);
    // The deployment, when it is the named group's current one.
    std::optional<v1::Deployment> current;
    if (!request->device_group_id().empty() && d_.catalog != nullptr) {
      auto dep = d_.catalog->CurrentDeployment(request->device_group_id());
      if (dep.ok() && dep->id() == id) current = *std::move(dep);
    }
    std::string tenant = d_.results->DeploymentTenant(id);
    if (tenant.empty() && current.has_value()) tenant = current->tenant_id();
    if (!reader->platform && tenant != reader->tenant_id) {
      return absl::OkStatus();  // another tenant's: as if nobody reported
    }
    if (!current.has_value() || d_.worker == nullptr ||
        d_.membership == nullptr) {
      Fill(id, nullptr, response);
      return absl::OkStatus();
    }
    // Counting the stage walks the group: on the worker.
    posted = d_.worker->Post(
        [this, reactor, response, id, dep = *std::move(current)] {
          Fill(id, &dep, response);
          reactor->Finish(grpc::Status::OK);
        });
    if (!posted) {
      return absl::ResourceExhaustedError(
          "update worker queue full; retry the counts shortly");
    }
    return absl::OkStatus();
  }();
  if (posted) return reactor;
  if (absl::IsPermissionDenied(status) || absl::IsUnauthenticated(status)) {
    log::Warning(
        "deployment counts denied",
        {{"peer", context->peer()}, {"error", std::string(status.message())}});
  }
  reactor->Finish(rpc::ToGrpcStatus(status));
  return reactor;
}

}  // namespace sphere::update
