// gRPC adapters for Contoso's API (protos/contoso.proto), thin: identify the
// caller, hand the work to the WorkerPool (durable writes and calls to
// Sphere never block a gRPC callback thread), call the core, map the status.
//
//  * DeviceGatewayService: devices over mTLS with their Sphere-issued
//    certificate. Identity, tenant and product come from the certificate
//    (auth::FromCertificate), never from a request field; DeviceRegistry
//    decides (full scope, known, not revoked, Contoso, DW100).
//  * ContosoSupportService: Contoso support staff and the owner portal over
//    mTLS with an operator certificate of Contoso's tenant (or a platform
//    operator); device certificates are refused.
//
// A full worker queue (or one caller's share of it) is answered with
// RESOURCE_EXHAUSTED: retry later.
#ifndef SPHERE_APPSVC_GRPC_SERVICES_H_
#define SPHERE_APPSVC_GRPC_SERVICES_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/device_registry.h"
#include "appsvc/sphere_source.h"
#include "common/util/clock.h"
#include "common/util/worker_pool.h"
#include "protos/contoso.grpc.pb.h"

namespace contoso::appsvc {

// Metadata a device (or a test, or the demo) may send to have its call
// authorized against a catalog at least this new, the way shards take
// min_catalog_revision: the call waits (on a worker thread, at most
// kMinRevisionWait) until appsvc's Watch reached that revision, so a
// revocation made at revision R is enforced for a call carrying R.
inline constexpr char kMinCatalogRevisionMetadata[] =
    "sphere-min-catalog-revision";
inline constexpr absl::Duration kMinRevisionWait = absl::Seconds(10);

// Timeline joins Contoso's entries with Sphere's (oldest first); the core of
// GetTimeline, shared with the web server.
absl::StatusOr<v1::Timeline> JoinedTimeline(ContosoCloud* cloud,
                                            SphereSource* sphere,
                                            const std::string& device_id);

class DeviceGatewayService final : public v1::DeviceGateway::CallbackService {
 public:
  DeviceGatewayService(ContosoCloud* cloud, const DeviceRegistry* registry,
                       sphere::WorkerPool* pool, sphere::Clock* clock)
      : cloud_(cloud), registry_(registry), pool_(pool), clock_(clock) {}

  grpc::ServerUnaryReactor* ReportTelemetry(
      grpc::CallbackServerContext* ctx, const v1::ReportTelemetryRequest* req,
      v1::ReportTelemetryResponse* resp) override;
  grpc::ServerUnaryReactor* PollCommands(
      grpc::CallbackServerContext* ctx, const v1::PollCommandsRequest* req,
      v1::PollCommandsResponse* resp) override;
  grpc::ServerUnaryReactor* CompleteCommand(
      grpc::CallbackServerContext* ctx, const v1::CompleteCommandRequest* req,
      v1::CompleteCommandResponse* resp) override;

  // Authenticate: the calling device's id, or the refusal.
  absl::StatusOr<std::string> Authenticate(
      const grpc::ServerContextBase& ctx) const;

 private:
  // Dispatch authenticates (after the requested catalog revision, on a
  // worker) and runs `work(device_id)` on a worker; `work` finishes the
  // reactor.
  grpc::ServerUnaryReactor* Dispatch(
      grpc::CallbackServerContext* ctx,
      std::function<void(grpc::ServerUnaryReactor*, const std::string&)> work);

  ContosoCloud* const cloud_;
  const DeviceRegistry* const registry_;
  sphere::WorkerPool* const pool_;
  sphere::Clock* const clock_;
};

class ContosoSupportService final : public v1::ContosoSupport::CallbackService {
 public:
  ContosoSupportService(ContosoCloud* cloud, const DeviceRegistry* registry,
                        SphereSource* sphere, sphere::WorkerPool* pool)
      : cloud_(cloud), registry_(registry), sphere_(sphere), pool_(pool) {}

  grpc::ServerUnaryReactor* ListDevices(grpc::CallbackServerContext* ctx,
                                        const v1::ListDevicesRequest* req,
                                        v1::ListDevicesResponse* resp) override;
  grpc::ServerUnaryReactor* GetDeviceInsights(
      grpc::CallbackServerContext* ctx, const v1::GetDeviceInsightsRequest* req,
      v1::DeviceInsights* resp) override;
  grpc::ServerUnaryReactor* GetTimeline(grpc::CallbackServerContext* ctx,
                                        const v1::GetTimelineRequest* req,
                                        v1::Timeline* resp) override;
  grpc::ServerUnaryReactor* RequestService(
      grpc::CallbackServerContext* ctx, const v1::RequestServiceRequest* req,
      v1::RequestServiceResponse* resp) override;
  grpc::ServerUnaryReactor* PlaceOrder(grpc::CallbackServerContext* ctx,
                                       const v1::PlaceOrderRequest* req,
                                       v1::PlaceOrderResponse* resp) override;

  // Authorize: OK for a Contoso tenant operator or a platform operator.
  absl::Status Authorize(const grpc::ServerContextBase& ctx) const;

 private:
  template <typename Resp, typename Fn>
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* ctx, Resp* resp,
                                Fn fn);

  ContosoCloud* const cloud_;
  const DeviceRegistry* const registry_;
  SphereSource* const sphere_;
  sphere::WorkerPool* const pool_;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_GRPC_SERVICES_H_
