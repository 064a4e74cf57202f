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
//    Health checks, reflection, metrics scrapes and shard heartbeats log at
//    debug level; everything else at info;
//  * logs every successful state-changing call once as an audit event
//    (log::Audit): who, what (the method), and the object (identifying
//    fields of the response, else of the request). A method changes state
//    when its name starts with one of kStateChangingVerbs.
//
// RouteGrpcLogsToJson makes gRPC's own log lines JSON lines too.
#ifndef SPHERE_COMMON_RPC_OBSERVABILITY_H_
#define SPHERE_COMMON_RPC_OBSERVABILITY_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace sphere::rpc {

inline constexpr absl::string_view kRequestIdHeader = "x-request-id";
inline constexpr size_t kMaxRequestIdBytes = 64;
inline constexpr int kMaxMethodLabels = 256;

// The verbs that name state-changing RPCs (CreateTenant, ClaimDevice, ...).
inline constexpr absl::string_view kStateChangingVerbs[] = {
    "Create", "Update", "Delete", "Claim",  "Revoke",  "Release", "Request",
    "Accept", "Assign", "Upload", "Import", "Issue",   "Transfer"};

// IsStateChangingMethod: "/sphere.v1.ManagementService/ClaimDevice" -> true.
bool IsStateChangingMethod(absl::string_view full_method);

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
