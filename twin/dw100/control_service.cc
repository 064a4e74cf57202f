#include "twin/dw100/control_service.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"

namespace sphere::dw100 {

grpc::ServerUnaryReactor* TwinControlService::OnLoop(
    grpc::CallbackServerContext* ctx, std::function<absl::Status()> fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!loop_->Post([reactor, fn = std::move(fn)] {
        reactor->Finish(rpc::ToGrpcStatus(fn()));
      })) {
    reactor->Finish(rpc::ToGrpcStatus(absl::ResourceExhaustedError(
        "twin is busy or stopping: too many control operations queued")));
  }
  return reactor;
}

grpc::ServerUnaryReactor* TwinControlService::GetStatus(
    grpc::CallbackServerContext* ctx, const v1::GetStatusRequest*,
    v1::TwinStatus* resp) {
  return OnLoop(ctx, [this, resp] {
    *resp = loop_->StatusOnLoop();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TwinControlService::Attest(
    grpc::CallbackServerContext* ctx, const v1::TwinAttestRequest* req,
    v1::TwinStatus* resp) {
  const int64_t min_revision = req->min_catalog_revision();
  return OnLoop(ctx, [this, resp, min_revision] {
    loop_->AttestOnLoop(min_revision);
    *resp = loop_->StatusOnLoop();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TwinControlService::Reboot(
    grpc::CallbackServerContext* ctx, const v1::RebootRequest*,
    v1::TwinStatus* resp) {
  return OnLoop(ctx, [this, resp] {
    loop_->RebootOnLoop();
    *resp = loop_->StatusOnLoop();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TwinControlService::CheckForUpdates(
    grpc::CallbackServerContext* ctx, const v1::CheckForUpdatesRequest*,
    v1::TwinStatus* resp) {
  return OnLoop(ctx, [this, resp] {
    absl::Status s = loop_->CheckForUpdatesOnLoop(absl::Seconds(60));
    *resp = loop_->StatusOnLoop();
    return s;
  });
}

grpc::ServerUnaryReactor* TwinControlService::InjectFault(
    grpc::CallbackServerContext* ctx, const v1::InjectFaultRequest* req,
    v1::TwinStatus* resp) {
  const v1::InjectFaultRequest::Fault fault = req->fault();
  if (fault == v1::InjectFaultRequest::FAULT_UNSPECIFIED ||
      !v1::InjectFaultRequest::Fault_IsValid(fault)) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(rpc::ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "InjectFault: fault ", static_cast<int>(fault),
        " is not one of APP_CRASH, TAMPER, DRYING_HEATER_DRIFT, "
        "DRYING_HEATER_HOT, RINSE_AGENT_LOW, POWER_LOSS_DURING_UPDATE"))));
    return reactor;
  }
  return OnLoop(ctx, [this, resp, fault] {
    absl::Status s = loop_->InjectFaultOnLoop(fault);
    *resp = loop_->StatusOnLoop();
    return s;
  });
}

grpc::ServerUnaryReactor* TwinControlService::RunDiagnostics(
    grpc::CallbackServerContext* ctx, const v1::RunDiagnosticsRequest* req,
    v1::DiagnosticsReport* resp) {
  if (req->requested_by().size() > kMaxRequestedByBytes) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(rpc::ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "RunDiagnostics: requested_by is ", req->requested_by().size(),
        " bytes, at most ", kMaxRequestedByBytes))));
    return reactor;
  }
  std::string by = req->requested_by();
  return OnLoop(ctx, [this, resp, by = std::move(by)] {
    *resp = loop_->RunDiagnosticsOnLoop(by);
    return absl::OkStatus();
  });
}

}  // namespace sphere::dw100
