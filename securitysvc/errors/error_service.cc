#include "securitysvc/errors/error_service.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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

const shard::DeviceMethod& UploadBatchMethod() {
  static const auto* m = new shard::DeviceMethod(
      "upload_errors_batch", shard::DeviceAccess::kDevice,
      "sphere_upload_errors_batch_seconds");
  return *m;
}

metrics::CounterMetric* BatchCalls() {
  static auto* c = metrics::Counter("sphere_upload_errors_batch_calls_total",
                                    "UploadErrorsBatch calls by code");
  return c;
}

metrics::CounterMetric* BatchItems() {
  static auto* c =
      metrics::Counter("sphere_upload_errors_batch_items_total",
                       "UploadErrorsBatch items by their own code");
  return c;
}

// GatewayCaller: the key of a gateway's share of the shard's ingest queue:
// its certificate's identity (verified in the TLS handshake), else its
// address; bounded before it is kept.
std::string GatewayCaller(const grpc::ServerContextBase& context) {
  constexpr size_t kMaxCallerBytes = 256;
  std::string id = "gateway:";
  if (std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
      auth != nullptr) {
    for (const grpc::string_ref& v : auth->GetPeerIdentity()) {
      id.append(v.data(), std::min(v.size(), kMaxCallerBytes));
      id.push_back('/');
    }
  }
  if (id.size() == 8) id.append(context.peer());
  if (id.size() > kMaxCallerBytes) id.resize(kMaxCallerBytes);
  return id;
}

void SetItemError(v1::UploadErrorsResult* result, const absl::Status& s) {
  result->set_code(static_cast<int>(s.code()));
  result->set_message(rpc::TruncateForStatus(s.message()));
}

// Item codes are counted per call and added to the metric once, when the
// call finishes (not a label string and a series lookup per item).
constexpr int kItemCodes = 17;  // absl::StatusCode 0..16

// ItemCodeLabels: the batch-items counter's label text of each code.
const std::array<std::string, kItemCodes>& ItemCodeLabels() {
  static const auto* labels = [] {
    auto* l = new std::array<std::string, kItemCodes>;
    for (int c = 0; c < kItemCodes; ++c) {
      (*l)[c] = absl::StrCat(
          "code=\"",
          absl::StatusCodeToString(static_cast<absl::StatusCode>(c)), "\"");
    }
    return l;
  }();
  return *labels;
}

// BatchCall: one UploadErrorsBatch in progress. Items answer from any
// thread (the caller's for refusals, the group-commit thread once durable);
// the last one (or the loop's own guard) finishes the reactor.
struct BatchCall {
  grpc::ServerUnaryReactor* reactor = nullptr;
  absl::Time start;
  std::atomic<int> pending{1};  // the items not yet answered + the loop
  // Items answered, by code (an unknown code counts as UNKNOWN).
  std::array<std::atomic<uint32_t>, kItemCodes> codes{};

  void ItemDone(int code) {
    if (code < 0 || code >= kItemCodes) {
      code = static_cast<int>(absl::StatusCode::kUnknown);
    }
    codes[code].fetch_add(1, std::memory_order_relaxed);
    Release();
  }
  void Release() {
    if (pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    UploadBatchMethod().latency->Observe(
        absl::ToDoubleSeconds(absl::Now() - start));
    for (int c = 0; c < kItemCodes; ++c) {
      if (const uint32_t n = codes[c].load(std::memory_order_relaxed); n > 0) {
        BatchItems()->Increment(ItemCodeLabels()[c], n);
      }
    }
    BatchCalls()->Increment("code=\"OK\"");
    grpc::ServerUnaryReactor* r = reactor;
    delete this;
    r->Finish(grpc::Status::OK);
  }
};

}  // namespace

absl::Status ValidateUploadBatch(const v1::UploadErrorsBatchRequest& request) {
  if (request.items_size() == 0) {
    return absl::InvalidArgumentError(
        "UploadErrorsBatch: no items; send at least one device's batch");
  }
  if (request.items_size() > kMaxUploadBatchItems) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadErrorsBatch: ", request.items_size(), " items; at most ",
        kMaxUploadBatchItems, " per call (split the batch)"));
  }
  int64_t events = 0;
  for (const v1::UploadErrorsItem& item : request.items()) {
    events += item.upload().events_size();
  }
  if (events > kMaxUploadBatchEvents) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadErrorsBatch: ", events, " events in all; at most ",
        kMaxUploadBatchEvents, " per call (split the batch)"));
  }
  if (const size_t bytes = request.ByteSizeLong();
      bytes > kMaxUploadBatchBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UploadErrorsBatch: ", bytes, " bytes; at most ", kMaxUploadBatchBytes,
        " per call (split the batch)"));
  }
  return absl::OkStatus();
}

namespace {

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

grpc::ServerUnaryReactor* ErrorReportingServiceImpl::UploadErrorsBatch(
    grpc::CallbackServerContext* context,
    const v1::UploadErrorsBatchRequest* request,
    v1::UploadErrorsBatchResponse* response) {
  const absl::Time start = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status refused = device_calls_->RequireGateway(*context);
  if (absl::IsPermissionDenied(refused)) {
    refused = absl::PermissionDeniedError(
        "UploadErrorsBatch is for gateways: a device uploads its own errors "
        "with UploadErrors");
  }
  if (refused.ok()) refused = ValidateUploadBatch(*request);
  if (!refused.ok()) {
    if (absl::IsPermissionDenied(refused) ||
        absl::IsUnauthenticated(refused)) {
      log::Warning("device call denied",
                   {{"method", UploadBatchMethod().name},
                    {"peer", context->peer()},
                    {"error", std::string(refused.message())}});
    }
    UploadBatchMethod().latency->Observe(
        absl::ToDoubleSeconds(absl::Now() - start));
    BatchCalls()->Increment(absl::StrCat(
        "code=\"", absl::StatusCodeToString(refused.code()), "\""));
    reactor->Finish(rpc::ToGrpcStatus(refused));
    return reactor;
  }
  auto* batch = new BatchCall;
  batch->reactor = reactor;
  batch->start = start;
  const int n = request->items_size();
  auto* results = response->mutable_results();
  results->Reserve(n);
  for (int i = 0; i < n; ++i) {
    v1::UploadErrorsResult* r = results->Add();
    const std::string& id = request->items(i).upload().device_id();
    if (shard::IsHexDeviceId(id)) r->set_device_id(id);  // never echo a malformed one
  }
  batch->pending.fetch_add(n, std::memory_order_relaxed);
  const std::string caller = GatewayCaller(*context);
  absl::Status first_denial;
  int denials = 0;
  for (int i = 0; i < n; ++i) {
    const v1::UploadErrorsItem& item = request->items(i);
    v1::UploadErrorsResult* result = response->mutable_results(i);
    absl::StatusOr<shard::DeviceCall> call = device_calls_->IdentifyGatewayItem(
        *context, UploadMethod().access, item.session_token(),
        item.upload().device_id());
    if (!call.ok()) {
      if (absl::IsPermissionDenied(call.status()) ||
          absl::IsUnauthenticated(call.status())) {
        if (denials++ == 0) first_denial = call.status();
      }
      SetItemError(result, call.status());
      batch->ItemDone(result->code());
      continue;
    }
    if (std::optional<std::string> owner =
            device_calls_->RedirectAddress(call->device_id);
        owner.has_value()) {
      SetItemError(result, absl::FailedPreconditionError(absl::StrCat(
                               "device ", call->device_id,
                               " is served by shard ", *owner)));
      result->set_redirect_address(*owner);
      batch->ItemDone(result->code());
      continue;
    }
    const std::string tenant =
        call->context.has_value() ? call->context->tenant_id : "";
    errors_->Ingest(
        call->device_id, tenant, item.upload(),
        [this, batch, result, &upload = item.upload(),
         device = call->device_id](
            absl::StatusOr<v1::UploadErrorsResponse> r) {
          if (r.ok()) {
            if (on_accepted_) on_accepted_(device, upload);
            *result->mutable_response() = *r;
          } else {
            if (absl::IsInternal(r.status()) || absl::IsDataLoss(r.status())) {
              log::Error("device call failed",
                         {{"method", UploadBatchMethod().name},
                          {"device", device},
                          {"error", r.status().ToString()}});
            }
            SetItemError(result, r.status());
          }
          batch->ItemDone(result->code());
        },
        caller);
  }
  if (denials > 0) {
    // One line per call, not per item: a gateway's bad batch cannot flood
    // the log.
    log::Warning("device call denied",
                 {{"method", UploadBatchMethod().name},
                  {"peer", context->peer()},
                  {"items", absl::StrCat(denials)},
                  {"error", std::string(first_denial.message())}});
  }
  batch->Release();  // the loop's guard
  return reactor;
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
