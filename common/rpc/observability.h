// Observability for every gRPC server: a server interceptor (installed by
// ServerRunner) that, for each call,
//
//  * counts it by method and status code (grpc_server_started_total,
//    grpc_server_handled_total{grpc_method,grpc_code}) and records its
//    latency (grpc_server_handling_seconds{grpc_method}, histogram);
//  * counts rejections by reason (sphere_rejections_total{reason}: the
//    status codes that mean the server refused the call, plus whatever
//    CountRejection reports, e.g. connection limits);
//  * logs one JSON request line with a request id (the caller's
//    `x-request-id` metadata if it is well-formed, else a fresh one, echoed
//    back in the initial metadata), the caller's identity (verified client
//    certificate), the method, the code and the (bounded) error message.
//    The line's level is per method (MethodLogLevel): health checks,
//    reflection, metrics scrapes and shard heartbeats log at debug, and so
//    do the hot device calls (kHotDeviceMethods: attestation, update checks
//    and downloads, error and telemetry uploads), whose rate is one or more
//    per device; everything else at info. A call that fails is logged at
//    info or above whatever its method (the error is what an operator
//    needs). Counters and histograms are recorded for every call. The
//    environment variable SPHERE_RPC_LOG_LEVELS overrides the table, e.g.
//    "Attest=info,GetUpdates=info" (method name, or full /pkg.Service/Method);
//    SetMethodLogLevel does the same from code. No work is spent on a line
//    below log::MinLevel();
//  * logs every successful state-changing call once as an audit event
//    (log::Audit): who, what (the method), and the object (identifying
//    fields of the response, else of the request). A method changes state
//    when its name starts with one of kStateChangingVerbs; the hot device
//    calls are device data, not operator changes, and are not audited.
//
// RouteGrpcLogsToJson makes gRPC's own log lines JSON lines too.
#ifndef SPHERE_COMMON_RPC_OBSERVABILITY_H_
#define SPHERE_COMMON_RPC_OBSERVABILITY_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "common/util/log.h"

namespace sphere::rpc {

inline constexpr absl::string_view kRequestIdHeader = "x-request-id";
inline constexpr size_t kMaxRequestIdBytes = 64;
inline constexpr int kMaxMethodLabels = 256;

// The verbs that name state-changing RPCs (CreateTenant, ClaimDevice, ...).
inline constexpr absl::string_view kStateChangingVerbs[] = {
    "Create", "Update", "Delete", "Claim",  "Revoke", "Release", "Request",
    "Accept", "Assign", "Upload", "Import", "Issue",  "Transfer"};

// IsStateChangingMethod: "/sphere.v1.ManagementService/ClaimDevice" -> true.
bool IsStateChangingMethod(absl::string_view full_method);

// Hot device calls: one or more per device per attestation, update check or
// upload. Logged at debug by default (see above). Matched on the method
// name after the last '/'.
inline constexpr absl::string_view kHotDeviceMethods[] = {
    "GetChallenge",       "Attest",       "GetChallenges",
    "AttestBatch",        "GetUpdates",   "DownloadImage",
    "ReportUpdateResult", "UploadErrors", "UploadTelemetry",
    "UploadErrorsBatch"};

// IsHotDeviceMethod: "/sphere.v1.AttestationService/Attest" -> true.
bool IsHotDeviceMethod(absl::string_view full_method);

// MethodLogLevel is the level of a call's request line: the override for the
// full method or its name (SetMethodLogLevel / SPHERE_RPC_LOG_LEVELS), else
// debug for quiet and hot methods, else info; a failed call (`ok` false)
// logs at least at info.
log::Level MethodLogLevel(absl::string_view full_method, bool ok);

// SetMethodLogLevel overrides the level of `method` (a method name such as
// "Attest", or a full "/sphere.v1.AttestationService/Attest"). At most
// kMaxMethodLabels overrides; more are ignored. Thread-safe.
void SetMethodLogLevel(absl::string_view method, log::Level level);

// ParseMethodLogLevels applies "Name=level,Name=level" (levels as
// log::ParseLevel) with SetMethodLogLevel; false (and nothing applied) if
// any entry is malformed or the text is longer than 4 KiB.
bool ParseMethodLogLevels(absl::string_view spec);

// CountRejection adds one to sphere_rejections_total{reason=...}.
void CountRejection(absl::string_view reason);

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewObservabilityInterceptorFactory();

// RouteGrpcLogsToJson sends gRPC's and protobuf's own log lines through
// log::Write (idempotent; call before creating servers or channels).
// Protobuf's lines (one per malformed string field in any request) are
// rate-limited; see sphere_log_suppressed_total.
void RouteGrpcLogsToJson();

}  // namespace sphere::rpc

#endif  // SPHERE_COMMON_RPC_OBSERVABILITY_H_
