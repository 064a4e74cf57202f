#include "appsvc/gateway_service.h"

#include <sys/stat.h>

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "common/util/metrics.h"

namespace contoso::appsvc {
namespace {

constexpr size_t kGatewayKeyBytes = 32;

grpc::Status Busy() {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "appsvc is busy (work queue full); retry with backoff");
}

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx,
                               const absl::Status& s) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(sphere::rpc::ToGrpcStatus(s));
  return reactor;
}

absl::StatusOr<std::string> Metadata(const grpc::ServerContextBase& ctx,
                                     const char* key, size_t max_bytes) {
  auto it = ctx.client_metadata().find(key);
  if (it == ctx.client_metadata().end()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the gateway path needs '", key, "' metadata"));
  }
  if (it->second.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", key, "' metadata exceeds ", max_bytes, " bytes"));
  }
  return std::string(it->second.data(), it->second.size());
}

// ProveOne: GatewayAuth::ProveDevice on one proof as it came on the wire
// (its chain as PEM text or as DER certificates).
absl::StatusOr<GatewayAuth::Proven> ProveOne(GatewayAuth& auth,
                                             const v1::GatewayProveRequest& p) {
  // GatewayAuth counts and bounds the certificates; more than it takes
  // are only counted here, never read.
  absl::string_view ders[GatewayAuth::kMaxChainCertificates + 1];
  const size_t n = std::min<size_t>(p.chain_der_size(), std::size(ders));
  for (size_t i = 0; i < n; ++i) ders[i] = p.chain_der(static_cast<int>(i));
  return auth.ProveDevice(
      p.device_id(), p.nonce(),
      GatewayAuth::ProofChain{p.chain_pem(), absl::MakeConstSpan(ders, n)},
      p.signature());
}

sphere::metrics::CounterMetric* SamplesCounter() {
  static auto* c = sphere::metrics::Counter(
      "contoso_gateway_samples_total",
      "Telemetry samples stored durably by appsvc via the gateway path");
  return c;
}

}  // namespace

absl::Status ContosoGatewayService::CheckGateway(
    const grpc::ServerContextBase& ctx) {
  absl::StatusOr<sphere::rpc::PeerIdentity> peer =
      sphere::rpc::PeerFromContext(ctx);
  if (!peer.ok()) return peer.status();
  if (peer->claims().scope != "gateway") {
    return absl::PermissionDeniedError(
        "ContosoGateway needs a gateway certificate (scope \"gateway\"); "
        "devices with their own certificate use DeviceGateway");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ContosoGatewayService::DeviceOf(
    const grpc::ServerContextBase& ctx) const {
  if (auto s = CheckGateway(ctx); !s.ok()) return s;
  auto id = Metadata(ctx, kGatewayDeviceMetadata, 64);
  if (!id.ok()) return id.status();
  auto token = Metadata(ctx, kGatewaySessionMetadata, 1024);
  if (!token.ok()) return token.status();
  auto device = auth_->Authenticate(*token, *id);
  if (!device.ok()) return device.status();
  return device->device_id;
}

grpc::ServerUnaryReactor* ContosoGatewayService::GetChallenge(
    grpc::CallbackServerContext* ctx, const v1::GatewayChallengeRequest* req,
    v1::GatewayChallengeResponse* resp) {
  if (auto s = CheckGateway(*ctx); !s.ok()) return Done(ctx, s);
  absl::StatusOr<std::string> nonce = auth_->Challenge(req->device_id());
  if (nonce.ok()) resp->set_nonce(std::move(*nonce));
  return Done(ctx, nonce.status());
}

grpc::ServerUnaryReactor* ContosoGatewayService::Prove(
    grpc::CallbackServerContext* ctx, const v1::GatewayProveRequest* req,
    v1::GatewayProveResponse* resp) {
  if (auto s =
          sphere::rpc::CheckRequestSize(*req, kMaxProveRequestBytes, "Prove");
      !s.ok()) {
    return Done(ctx, s);
  }
  if (auto s = CheckGateway(*ctx); !s.ok()) return Done(ctx, s);
  auto* reactor = ctx->DefaultReactor();
  if (!pool_->TrySubmit(req->device_id(), [this, req, resp, reactor] {
        absl::StatusOr<GatewayAuth::Proven> proven = ProveOne(*auth_, *req);
        if (proven.ok()) {
          resp->set_expires_unix_ms(absl::ToUnixMillis(proven->expires));
          resp->set_session_token(std::move(proven->token));
        }
        reactor->Finish(sphere::rpc::ToGrpcStatus(proven.status()));
      })) {
    reactor->Finish(Busy());
  }
  return reactor;
}

grpc::ServerUnaryReactor* ContosoGatewayService::ReportTelemetry(
    grpc::CallbackServerContext* ctx, const v1::ReportTelemetryRequest* req,
    v1::ReportTelemetryResponse* resp) {
  if (auto s = sphere::rpc::CheckRequestSize(*req, kMaxGatewayTelemetryBytes,
                                             "ReportTelemetry");
      !s.ok()) {
    return Done(ctx, s);
  }
  absl::StatusOr<std::string> id = DeviceOf(*ctx);
  if (!id.ok()) return Done(ctx, id.status());
  auto* reactor = ctx->DefaultReactor();
  if (!pool_->TrySubmit(*id, [this, req, resp, reactor, id = *id] {
        auto r = cloud_->ReportTelemetry(id, *req);
        if (r.ok()) {
          *resp = std::move(*r);
          SamplesCounter()->Increment("", resp->accepted());
        }
        reactor->Finish(sphere::rpc::ToGrpcStatus(r.status()));
      })) {
    reactor->Finish(Busy());
  }
  return reactor;
}

grpc::ServerUnaryReactor* ContosoGatewayService::CountTelemetry(
    grpc::CallbackServerContext* ctx, const v1::CountTelemetryRequest* req,
    v1::CountTelemetryResponse* resp) {
  if (auto s = sphere::rpc::CheckRequestSize(*req, kMaxCountRequestBytes,
                                             "CountTelemetry");
      !s.ok()) {
    return Done(ctx, s);
  }
  if (req->devices_size() > kMaxCountDevices) {
    return Done(ctx, absl::InvalidArgumentError(
                         absl::StrCat("CountTelemetry takes at most ",
                                      kMaxCountDevices, " devices")));
  }
  if (auto s = CheckGateway(*ctx); !s.ok()) return Done(ctx, s);
  // Every device must be authenticated before anything is read.
  for (const v1::GatewayDevice& d : req->devices()) {
    if (d.session_token().empty()) {
      return Done(ctx, absl::UnauthenticatedError(absl::StrCat(
                           "CountTelemetry: no session token for device ",
                           d.device_id().substr(0, 64))));
    }
    auto device = auth_->Authenticate(d.session_token(), d.device_id());
    if (!device.ok()) return Done(ctx, device.status());
  }
  auto* reactor = ctx->DefaultReactor();
  if (!pool_->TrySubmit("gateway-count", [this, req, resp, reactor] {
        for (const v1::GatewayDevice& d : req->devices()) {
          absl::StatusOr<uint64_t> n = cloud_->CountSamples(d.device_id());
          if (!n.ok()) {
            reactor->Finish(sphere::rpc::ToGrpcStatus(n.status()));
            return;
          }
          resp->add_stored_samples(*n);
        }
        reactor->Finish(grpc::Status::OK);
      })) {
    reactor->Finish(Busy());
  }
  return reactor;
}

grpc::ServerUnaryReactor* ContosoGatewayService::GetChallenges(
    grpc::CallbackServerContext* ctx, const v1::GatewayChallengesRequest* req,
    v1::GatewayChallengesResponse* resp) {
  if (auto s = sphere::rpc::CheckRequestSize(*req, kMaxChallengesRequestBytes,
                                             "GetChallenges");
      !s.ok()) {
    return Done(ctx, s);
  }
  if (req->device_ids_size() == 0 || req->device_ids_size() > kMaxProveBatch) {
    return Done(ctx, absl::InvalidArgumentError(absl::StrCat(
                         "GetChallenges takes 1..", kMaxProveBatch,
                         " device ids (got ", req->device_ids_size(), ")")));
  }
  if (auto s = CheckGateway(*ctx); !s.ok()) return Done(ctx, s);
  for (const std::string& id : req->device_ids()) {
    v1::GatewayChallengeResult* r = resp->add_results();
    absl::StatusOr<std::string> nonce = auth_->Challenge(id);
    if (nonce.ok()) {
      r->set_nonce(std::move(*nonce));
    } else {
      r->set_code(static_cast<int>(nonce.status().code()));
      r->set_error(sphere::rpc::TruncateForStatus(nonce.status().message()));
    }
  }
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* ContosoGatewayService::ProveBatch(
    grpc::CallbackServerContext* ctx, const v1::GatewayProveBatchRequest* req,
    v1::GatewayProveBatchResponse* resp) {
  if (auto s = sphere::rpc::CheckRequestSize(*req, kMaxProveBatchBytes,
                                             "ProveBatch");
      !s.ok()) {
    return Done(ctx, s);
  }
  if (req->proofs_size() == 0 || req->proofs_size() > kMaxProveBatch) {
    return Done(ctx, absl::InvalidArgumentError(
                         absl::StrCat("ProveBatch takes 1..", kMaxProveBatch,
                                      " proofs (got ", req->proofs_size(), ")")));
  }
  absl::StatusOr<sphere::rpc::PeerIdentity> peer =
      sphere::rpc::PeerFromContext(*ctx);
  if (!peer.ok()) return Done(ctx, peer.status());
  if (auto s = CheckGateway(*ctx); !s.ok()) return Done(ctx, s);
  auto* reactor = ctx->DefaultReactor();
  const std::string key =
      absl::StrCat("gateway-prove|", peer->cert.common_name);
  if (!pool_->TrySubmit(key, [this, req, resp, reactor] {
        for (const v1::GatewayProveRequest& p : req->proofs()) {
          v1::GatewayProveResult* r = resp->add_results();
          absl::StatusOr<GatewayAuth::Proven> proven = ProveOne(*auth_, p);
          if (proven.ok()) {
            r->set_session_token(std::move(proven->token));
            r->set_expires_unix_ms(absl::ToUnixMillis(proven->expires));
          } else {
            r->set_code(static_cast<int>(proven.status().code()));
            r->set_error(
                sphere::rpc::TruncateForStatus(proven.status().message()));
          }
        }
        reactor->Finish(grpc::Status::OK);
      })) {
    reactor->Finish(Busy());
  }
  return reactor;
}

grpc::ServerUnaryReactor* ContosoGatewayService::ReportTelemetryBatch(
    grpc::CallbackServerContext* ctx,
    const v1::GatewayTelemetryBatchRequest* req,
    v1::GatewayTelemetryBatchResponse* resp) {
  if (auto s = sphere::rpc::CheckRequestSize(*req, kMaxTelemetryBatchBytes,
                                             "ReportTelemetryBatch");
      !s.ok()) {
    return Done(ctx, s);
  }
  if (req->items_size() == 0 || req->items_size() > kMaxTelemetryBatchDevices) {
    return Done(ctx, absl::InvalidArgumentError(absl::StrCat(
                         "ReportTelemetryBatch takes 1..",
                         kMaxTelemetryBatchDevices, " devices (got ",
                         req->items_size(), ")")));
  }
  absl::StatusOr<sphere::rpc::PeerIdentity> peer =
      sphere::rpc::PeerFromContext(*ctx);
  if (!peer.ok()) return Done(ctx, peer.status());
  if (auto s = CheckGateway(*ctx); !s.ok()) return Done(ctx, s);
  // Every item authenticated by its own token before anything is read.
  std::vector<ContosoCloud::TelemetryItem> items;
  std::vector<int> slots;  // items[j] answers results[slots[j]]
  for (int i = 0; i < req->items_size(); ++i) {
    const v1::GatewayTelemetry& item = req->items(i);
    v1::GatewayTelemetryResult* r = resp->add_results();
    absl::StatusOr<sphere::auth::DeviceContext> device =
        item.session_token().empty()
            ? absl::UnauthenticatedError(
                  "ReportTelemetryBatch: no session token for this device")
            : auth_->Authenticate(item.session_token(), item.device_id());
    if (!device.ok()) {
      r->set_code(static_cast<int>(device.status().code()));
      r->set_error(sphere::rpc::TruncateForStatus(device.status().message()));
      continue;
    }
    items.push_back({device->device_id, &item.batch()});
    slots.push_back(i);
  }
  if (items.empty()) return Done(ctx, absl::OkStatus());
  auto* reactor = ctx->DefaultReactor();
  const std::string key =
      absl::StrCat("gateway-telemetry|", peer->cert.common_name);
  if (!pool_->TrySubmit(key, [this, resp, reactor, items = std::move(items),
                              slots = std::move(slots)] {
        auto results = cloud_->ReportTelemetryMany(items);
        uint64_t accepted = 0;
        for (size_t j = 0; j < results.size(); ++j) {
          v1::GatewayTelemetryResult* r = resp->mutable_results(slots[j]);
          if (results[j].ok()) {
            accepted += results[j]->accepted();
            *r->mutable_response() = std::move(*results[j]);
          } else {
            r->set_code(static_cast<int>(results[j].status().code()));
            r->set_error(
                sphere::rpc::TruncateForStatus(results[j].status().message()));
          }
        }
        SamplesCounter()->Increment("", accepted);
        reactor->Finish(grpc::Status::OK);
      })) {
    reactor->Finish(Busy());
  }
  return reactor;
}

absl::StatusOr<std::string> LoadOrCreateGatewayKey(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    absl::StatusOr<std::string> key = sphere::util::ReadFile(path);
    if (!key.ok()) return key.status();
    if (key->size() != kGatewayKeyBytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " holds ", key->size(), " bytes, not a ", kGatewayKeyBytes,
          "-byte gateway key; remove it to generate a new one (every issued "
          "gateway token then stops working)"));
    }
    return key;
  }
  std::string key = sphere::crypto::RandomBytes(kGatewayKeyBytes);
  if (auto s = sphere::util::WriteFile(path, key, 0600); !s.ok()) return s;
  return key;
}

}  // namespace contoso::appsvc
