#include "securitysvc/errors/error_service.h"

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "common/util/metrics.h"
#include "securitysvc/attestation/device_status_service.h"

namespace sphere::errors {
namespace {

const shard::DeviceMethod& UploadMethod() {
  // kDevice: an update-only (outdated) device still reports its errors.
  static const auto* m =
      new shard::DeviceMethod("upload_errors", shard::DeviceAccess::kDevice,
                              "sphere_upload_errors_seconds");
  return *m;
}

metrics::CounterMetric* QueryCalls() {
  static auto* c =
      metrics::Counter("sphere_error_query_calls_total",
                       "Error-reporting operator calls by method and code");
  return c;
}

}  // namespace

grpc::ServerUnaryReactor* ErrorReportingServiceImpl::UploadErrors(
    grpc::CallbackServerContext* context,
    const v1::UploadErrorsRequest* request,
    v1::UploadErrorsResponse* response) {
  return device_calls_->UnaryAsync(
      context, UploadMethod(), request->device_id(),
      [this, request, response](const shard::DeviceCall& call,
                                shard::DeviceCallHandler::Finish finish) {
        const std::string tenant =
            call.context.has_value() ? call.context->tenant_id : "";
        errors_->Ingest(call.device_id, tenant, *request,
                        [this, request, device = call.device_id, response,
                         finish](absl::StatusOr<v1::UploadErrorsResponse> r) {
                          if (r.ok() && on_accepted_)
                            on_accepted_(device, *request);
                          if (r.ok()) *response = *std::move(r);
                          finish(r.status());
                        });
      });
}

grpc::ServerUnaryReactor* ErrorReportingServiceImpl::Operator(
    grpc::CallbackServerContext* context, absl::string_view method,
    const std::string& tenant_id, const std::function<absl::Status()>& fn) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status;
  absl::StatusOr<rpc::PeerIdentity> peer = rpc::PeerFromContext(*context);
  if (!peer.ok()) {
    status = peer.status();
  } else if (auto reader = attestation::IdentifyStatusReader(
                 peer->cert, root_subject_line_);
             !reader.ok()) {
    status = reader.status();
  } else if (auto v = ValidateTenantId(tenant_id); !v.ok()) {
    status = v;
  } else if (!reader->platform && reader->tenant_id != tenant_id) {
    status = absl::PermissionDeniedError(
        absl::StrCat("credential of tenant ", reader->tenant_id,
                     " may not read the error reports of tenant ", tenant_id,
                     "; use that tenant's credential"));
  } else {
    status = fn();
  }
  if (absl::IsPermissionDenied(status) || absl::IsUnauthenticated(status)) {
    log::Warning("error reports denied",
                 {{"method", std::string(method)},
                  {"peer", context->peer()},
                  {"error", std::string(status.message())}});
  }
  QueryCalls()->Increment(absl::StrCat("method=\"", method, "\",code=\"",
                                       absl::StatusCodeToString(status.code()),
                                       "\""));
  reactor->Finish(rpc::ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* ErrorReportingServiceImpl::QueryErrors(
    grpc::CallbackServerContext* context, const v1::QueryErrorsRequest* request,
    v1::QueryErrorsResponse* response) {
  return Operator(context, "query_errors", request->tenant_id(), [&] {
    auto r = errors_->Query(*request);
    if (!r.ok()) return r.status();
    *response = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ErrorReportingServiceImpl::ListIssues(
    grpc::CallbackServerContext* context, const v1::ListIssuesRequest* request,
    v1::ListIssuesResponse* response) {
  return Operator(context, "list_issues", request->tenant_id(), [&] {
    auto r = errors_->ListIssues(*request);
    if (!r.ok()) return r.status();
    *response = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ErrorReportingServiceImpl::GetIssue(
    grpc::CallbackServerContext* context, const v1::GetIssueRequest* request,
    v1::GetIssueResponse* response) {
  return Operator(context, "get_issue", request->tenant_id(), [&] {
    auto r = errors_->GetIssue(*request);
    if (!r.ok()) return r.status();
    *response = *std::move(r);
    return absl::OkStatus();
  });
}

}  // namespace sphere::errors
