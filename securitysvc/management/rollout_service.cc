#include "securitysvc/management/rollout_service.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/util/log.h"
#include "securitysvc/management/limits.h"
#include "securitysvc/management/management_service.h"

namespace sphere::management {
namespace {
constexpr size_t kMaxAbortReasonBytes = 200;
}  // namespace

RolloutService::RolloutService(RolloutManager* manager,
                               std::string root_subject_line, size_t max_queued)
    : manager_(manager),
      root_subject_line_(std::move(root_subject_line)),
      worker_(1, max_queued, 0) {}

RolloutService::~RolloutService() { worker_.Stop(); }

grpc::ServerUnaryReactor* RolloutService::Run(
    grpc::CallbackServerContext* ctx, const v1::RolloutRequest* req,
    v1::RolloutStatus* resp, std::function<absl::Status(const Caller&)> op) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Caller> caller = [&]() -> absl::StatusOr<Caller> {
    auto peer = rpc::PeerFromContext(*ctx);
    if (!peer.ok()) return peer.status();
    return IdentifyCaller(peer->cert, root_subject_line_);
  }();
  absl::Status checked = caller.status();
  if (checked.ok())
    checked = limits::ValidateReference("tenant", req->tenant_id());
  if (checked.ok() && req->deployment_id().empty()) {
    checked = absl::InvalidArgumentError(
        "a deployment id is required (see 'spherectl deployment list')");
  }
  if (checked.ok()) {
    checked = limits::ValidateReference("deployment", req->deployment_id());
  }
  if (checked.ok()) {
    checked = limits::ValidateSize("abort reason", req->reason().size(),
                                   kMaxAbortReasonBytes);
  }
  if (!checked.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(checked));
    return reactor;
  }
  const bool queued =
      worker_.Post([this, reactor, req, resp, c = *caller, op = std::move(op)] {
        absl::Status s = op ? op(c) : absl::OkStatus();
        if (s.ok()) {
          auto st = manager_->Status(c, req->tenant_id(), req->deployment_id());
          s = st.status();
          if (st.ok()) *resp = *std::move(st);
        }
        reactor->Finish(rpc::ToGrpcStatus(s));
      });
  if (!queued) {
    reactor->Finish(rpc::ToGrpcStatus(absl::ResourceExhaustedError(
        "too many rollout requests queued; retry shortly")));
  }
  return reactor;
}

grpc::ServerUnaryReactor* RolloutService::GetRolloutStatus(
    grpc::CallbackServerContext* ctx, const v1::RolloutRequest* req,
    v1::RolloutStatus* resp) {
  return Run(ctx, req, resp, nullptr);
}

grpc::ServerUnaryReactor* RolloutService::PauseRollout(
    grpc::CallbackServerContext* ctx, const v1::RolloutRequest* req,
    v1::RolloutStatus* resp) {
  return Run(ctx, req, resp, [this, req](const Caller& c) {
    return manager_->Pause(c, req->tenant_id(), req->deployment_id());
  });
}

grpc::ServerUnaryReactor* RolloutService::ResumeRollout(
    grpc::CallbackServerContext* ctx, const v1::RolloutRequest* req,
    v1::RolloutStatus* resp) {
  return Run(ctx, req, resp, [this, req](const Caller& c) {
    return manager_->Resume(c, req->tenant_id(), req->deployment_id());
  });
}

grpc::ServerUnaryReactor* RolloutService::AbortRollout(
    grpc::CallbackServerContext* ctx, const v1::RolloutRequest* req,
    v1::RolloutStatus* resp) {
  return Run(ctx, req, resp, [this, req](const Caller& c) {
    return manager_->Abort(c, req->tenant_id(), req->deployment_id(),
                           req->reason());
  });
}

ShardDeploymentCounts::ShardDeploymentCounts(Catalog* catalog,
                                             rpc::TlsFiles client_tls,
                                             absl::Duration deadline)
    : catalog_(catalog), tls_(std::move(client_tls)), deadline_(deadline) {}

v1::UpdateAdminService::Stub* ShardDeploymentCounts::StubFor(
    const std::string& address) {
  absl::MutexLock l(&mu_);
  auto& stub = stubs_[address];
  if (!stub) {
    stub = v1::UpdateAdminService::NewStub(rpc::NewChannel(address, tls_));
  }
  return stub.get();
}

absl::StatusOr<v1::StageResultCounts> ShardDeploymentCounts::Counts(
    const v1::Deployment& deployment, uint32_t stage_percent) {
  const std::string& deployment_id = deployment.id();
  auto map = catalog_->GetShardMap(Caller::PlatformOperator());
  if (!map.ok()) return map.status();
  if (map->shards().empty()) {
    return absl::UnavailableError("no shard is registered; no counts");
  }
  v1::StageResultCounts sum;
  sum.set_rollout_stage(stage_percent);
  v1::GetDeploymentCountsRequest req;
  req.set_deployment_id(deployment_id);
  req.set_device_group_id(deployment.device_group_id());
  for (const v1::Shard& shard : map->shards()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
    v1::DeploymentCounts resp;
    grpc::Status s =
        StubFor(shard.address())->GetDeploymentCounts(&ctx, req, &resp);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrFormat("shard %s (%s) did not give its counts: %s",
                          shard.id(), shard.address(), s.error_message()));
    }
    for (const v1::StageResultCounts& c : resp.stages()) {
      if (c.rollout_stage() != stage_percent) continue;
      sum.set_installed(sum.installed() + c.installed());
      sum.set_failed(sum.failed() + c.failed());
      sum.set_rolled_back(sum.rolled_back() + c.rolled_back());
      sum.set_deferred(sum.deferred() + c.deferred());
      sum.set_crashed_after_install(sum.crashed_after_install() +
                                    c.crashed_after_install());
      sum.set_pending(sum.pending() + c.pending());
      sum.set_in_stage(sum.in_stage() + c.in_stage());
    }
  }
  return sum;
}

}  // namespace sphere::management
