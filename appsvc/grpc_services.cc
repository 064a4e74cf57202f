#include "appsvc/grpc_services.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/rpc/rpc.h"
#include "common/util/metrics.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/auth/scope.h"

namespace contoso::appsvc {
namespace {

constexpr size_t kMaxTelemetryRequestBytes = 256 << 10;
constexpr size_t kMaxSmallRequestBytes = 16 << 10;

grpc::Status Busy() {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "appsvc is busy (work queue full); retry with backoff");
}

// Samples a device sent again with a sequence already stored: retries of an
// unacknowledged batch, or a device reusing sequence numbers (a DW100 twin
// never does, even across restarts: tests/dw100_restart_e2e_test).
sphere::metrics::CounterMetric* DuplicatesCounter() {
  static auto* c = sphere::metrics::Counter(
      "contoso_telemetry_duplicates_total",
      "Telemetry samples appsvc received again (sequence already stored)");
  return c;
}

sphere::metrics::CounterMetric* SamplesCounter() {
  static auto* c =
      sphere::metrics::Counter("contoso_telemetry_samples_total",
                               "Telemetry samples stored durably by appsvc");
  return c;
}

}  // namespace

absl::StatusOr<v1::Timeline> JoinedTimeline(ContosoCloud* cloud,
                                            SphereSource* sphere,
                                            const std::string& device_id) {
  absl::StatusOr<v1::Timeline> t = cloud->ContosoTimeline(device_id);
  if (!t.ok()) return t.status();
  SphereFacts facts = sphere->Fetch(device_id);
  t->set_os_version(facts.os_version);
  t->set_app_version(facts.app_version);
  t->set_last_attestation(facts.last_attestation);
  t->set_sphere_error(absl::StrJoin(facts.errors, "; "));
  for (auto& e : facts.entries) *t->add_entries() = std::move(e);
  std::stable_sort(t->mutable_entries()->begin(), t->mutable_entries()->end(),
                   [](const v1::TimelineEntry& a, const v1::TimelineEntry& b) {
                     return a.time_unix_ms() < b.time_unix_ms();
                   });
  return t;
}

// ---- DeviceGateway ----------------------------------------------------

absl::StatusOr<std::string> DeviceGatewayService::Authenticate(
    const grpc::ServerContextBase& ctx) const {
  absl::StatusOr<sphere::rpc::PeerIdentity> peer =
      sphere::rpc::PeerFromContext(ctx);
  if (!peer.ok()) return peer.status();
  absl::StatusOr<sphere::auth::DeviceContext> device =
      sphere::auth::FromCertificate(peer->cert, clock_->Now());
  if (!device.ok()) return device.status();
  if (auto s = registry_->Authorize(*device); !s.ok()) return s;
  return device->device_id;
}

grpc::ServerUnaryReactor* DeviceGatewayService::Dispatch(
    grpc::CallbackServerContext* ctx,
    std::function<void(grpc::ServerUnaryReactor*, const std::string&)> work) {
  auto* reactor = ctx->DefaultReactor();
  int64_t min_revision = 0;
  auto md = ctx->client_metadata().find(kMinCatalogRevisionMetadata);
  if (md != ctx->client_metadata().end() &&
      !absl::SimpleAtoi(absl::string_view(md->second.data(), md->second.size()),
                        &min_revision)) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "sphere-min-catalog-revision must be a "
                                 "decimal revision"));
    return reactor;
  }
  if (min_revision <= registry_->revision()) {
    // The common case: authenticate on the callback thread (no waiting).
    absl::StatusOr<std::string> device = Authenticate(*ctx);
    if (!device.ok()) {
      reactor->Finish(sphere::rpc::ToGrpcStatus(device.status()));
      return reactor;
    }
    if (!pool_->TrySubmit(*device, [reactor, work = std::move(work),
                                    id = *device] { work(reactor, id); })) {
      reactor->Finish(Busy());
    }
    return reactor;
  }
  // Wait for the catalog on a worker (bounded), then authenticate there.
  absl::StatusOr<sphere::rpc::PeerIdentity> peer =
      sphere::rpc::PeerFromContext(*ctx);
  const std::string key = peer.ok() ? peer->claims().device_id : "";
  if (!pool_->TrySubmit(
          key, [this, ctx, reactor, min_revision, work = std::move(work)] {
            if (!registry_->WaitForRevision(min_revision, kMinRevisionWait)) {
              reactor->Finish(grpc::Status(
                  grpc::StatusCode::UNAVAILABLE,
                  absl::StrCat("appsvc has not yet seen catalog revision ",
                               min_revision, "; retry")));
              return;
            }
            absl::StatusOr<std::string> device = Authenticate(*ctx);
            if (!device.ok()) {
              reactor->Finish(sphere::rpc::ToGrpcStatus(device.status()));
              return;
            }
            work(reactor, *device);
          })) {
    reactor->Finish(Busy());
  }
  return reactor;
}

grpc::ServerUnaryReactor* DeviceGatewayService::ReportTelemetry(
    grpc::CallbackServerContext* ctx, const v1::ReportTelemetryRequest* req,
    v1::ReportTelemetryResponse* resp) {
  if (auto s = sphere::rpc::CheckRequestSize(*req, kMaxTelemetryRequestBytes,
                                             "ReportTelemetry");
      !s.ok()) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(sphere::rpc::ToGrpcStatus(s));
    return reactor;
  }
  return Dispatch(ctx, [this, req, resp](grpc::ServerUnaryReactor* reactor,
                                         const std::string& id) {
    auto r = cloud_->ReportTelemetry(id, *req);
    if (r.ok()) {
      *resp = std::move(*r);
      SamplesCounter()->Increment("", resp->accepted());
      if (resp->duplicates() > 0) {
        DuplicatesCounter()->Increment("", resp->duplicates());
      }
    }
    reactor->Finish(sphere::rpc::ToGrpcStatus(r.status()));
  });
}

grpc::ServerUnaryReactor* DeviceGatewayService::PollCommands(
    grpc::CallbackServerContext* ctx, const v1::PollCommandsRequest*,
    v1::PollCommandsResponse* resp) {
  return Dispatch(ctx, [this, resp](grpc::ServerUnaryReactor* reactor,
                                    const std::string& id) {
    auto r = cloud_->PollCommands(id);
    if (r.ok()) *resp = std::move(*r);
    reactor->Finish(sphere::rpc::ToGrpcStatus(r.status()));
  });
}

grpc::ServerUnaryReactor* DeviceGatewayService::CompleteCommand(
    grpc::CallbackServerContext* ctx, const v1::CompleteCommandRequest* req,
    v1::CompleteCommandResponse*) {
  if (auto s = sphere::rpc::CheckRequestSize(*req, kMaxSmallRequestBytes,
                                             "CompleteCommand");
      !s.ok()) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(sphere::rpc::ToGrpcStatus(s));
    return reactor;
  }
  return Dispatch(ctx, [this, req](grpc::ServerUnaryReactor* reactor,
                                   const std::string& id) {
    reactor->Finish(
        sphere::rpc::ToGrpcStatus(cloud_->CompleteCommand(id, *req)));
  });
}

// ---- ContosoSupport ---------------------------------------------------

absl::Status ContosoSupportService::Authorize(
    const grpc::ServerContextBase& ctx) const {
  absl::StatusOr<sphere::rpc::PeerIdentity> peer =
      sphere::rpc::PeerFromContext(ctx);
  if (!peer.ok()) return peer.status();
  const auto& claims = peer->claims();
  if (!claims.device_id.empty()) {
    return absl::PermissionDeniedError(
        "device certificates cannot use ContosoSupport; use a Contoso "
        "operator credential");
  }
  if (sphere::auth::ParseScope(claims.scope) ==
      sphere::auth::Scope::kPlatformOperator) {
    return absl::OkStatus();
  }
  if (claims.scope.empty() && registry_->IsConfiguredTenant(claims.tenant_id)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      "ContosoSupport needs an operator credential of Contoso's tenant");
}

template <typename Resp, typename Fn>
grpc::ServerUnaryReactor* ContosoSupportService::Run(
    grpc::CallbackServerContext* ctx, Resp* resp, Fn fn) {
  auto* reactor = ctx->DefaultReactor();
  if (auto s = Authorize(*ctx); !s.ok()) {
    reactor->Finish(sphere::rpc::ToGrpcStatus(s));
    return reactor;
  }
  if (!pool_->TrySubmit("support", [reactor, resp, fn = std::move(fn)] {
        auto r = fn();
        if (r.ok()) *resp = std::move(*r);
        reactor->Finish(sphere::rpc::ToGrpcStatus(r.status()));
      })) {
    reactor->Finish(Busy());
  }
  return reactor;
}

grpc::ServerUnaryReactor* ContosoSupportService::ListDevices(
    grpc::CallbackServerContext* ctx, const v1::ListDevicesRequest* req,
    v1::ListDevicesResponse* resp) {
  return Run(ctx, resp, [this, req] { return cloud_->ListDevices(*req); });
}

grpc::ServerUnaryReactor* ContosoSupportService::GetDeviceInsights(
    grpc::CallbackServerContext* ctx, const v1::GetDeviceInsightsRequest* req,
    v1::DeviceInsights* resp) {
  return Run(ctx, resp, [this, req] {
    return cloud_->GetDeviceInsights(req->device_id());
  });
}

grpc::ServerUnaryReactor* ContosoSupportService::GetTimeline(
    grpc::CallbackServerContext* ctx, const v1::GetTimelineRequest* req,
    v1::Timeline* resp) {
  return Run(ctx, resp, [this, req] {
    return JoinedTimeline(cloud_, sphere_, req->device_id());
  });
}

grpc::ServerUnaryReactor* ContosoSupportService::RequestService(
    grpc::CallbackServerContext* ctx, const v1::RequestServiceRequest* req,
    v1::RequestServiceResponse* resp) {
  return Run(ctx, resp, [this, req] { return cloud_->RequestService(*req); });
}

grpc::ServerUnaryReactor* ContosoSupportService::PlaceOrder(
    grpc::CallbackServerContext* ctx, const v1::PlaceOrderRequest* req,
    v1::PlaceOrderResponse* resp) {
  return Run(ctx, resp, [this, req] { return cloud_->PlaceOrder(*req); });
}

}  // namespace contoso::appsvc
