#include "securitysvc/shard_server/device_call.h"

#include <grpc/grpc_security_constants.h>

#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"

namespace sphere::shard {

bool IsHexDeviceId(absl::string_view id) {
  if (id.size() != kMaxDeviceIdBytes) return false;
  for (char c : id) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

namespace {

metrics::CounterMetric* CallCounter() {
  static auto* c =
      metrics::Counter("sphere_device_calls_total",
                       "Device-facing calls by method and gRPC status code");
  return c;
}

absl::Status CheckRequestedId(absl::string_view requested,
                              absl::string_view authenticated) {
  if (requested.empty() || requested == authenticated) return absl::OkStatus();
  if (!IsHexDeviceId(requested)) {
    return absl::InvalidArgumentError(
        "device_id must be 64 lowercase hex characters (the hex SHA-256 of "
        "the device public key), or empty to use the credential's device");
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "device ", authenticated, " may not act for device ", requested,
      ": a device acts only for itself (leave device_id empty or set it to "
      "the credential's device)"));
}

// PeerCertificate: the call's verified TLS peer certificate, parsed once
// per certificate: a connection presents the same one on every call, as a
// TLS session would. Keyed by the whole PEM (exact match, no digest to
// compute or collide), bounded (cleared when full). Only the parse is
// cached: expiry, revocation, tenant and epoch are checked on every call.
absl::StatusOr<std::shared_ptr<const crypto::ParsedCertificate>>
PeerCertificate(const grpc::ServerContextBase& context) {
  auto auth = context.auth_context();
  if (auth == nullptr) {
    return absl::UnauthenticatedError("call carries no TLS peer identity");
  }
  auto pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) {
    return absl::UnauthenticatedError(
        "no client certificate: connect with a Sphere-issued certificate");
  }
  const absl::string_view text(pem.front().data(), pem.front().size());
  static absl::Mutex mu(absl::kConstInit);
  using Cache =
      absl::flat_hash_map<std::string,
                          std::shared_ptr<const crypto::ParsedCertificate>>;
  static Cache* cache = new Cache();
  {
    absl::MutexLock l(&mu);
    auto it = cache->find(text);
    if (it != cache->end()) return it->second;
  }
  auto parsed = crypto::ParseCertificate(text);
  if (!parsed.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "unreadable client certificate: ", parsed.status().message()));
  }
  auto cert =
      std::make_shared<const crypto::ParsedCertificate>(*std::move(parsed));
  absl::MutexLock l(&mu);
  if (cache->size() >= kMaxCachedPeerCertificates) cache->clear();
  cache->emplace(std::string(text), cert);
  return cert;
}

}  // namespace

DeviceMethod::DeviceMethod(std::string name, DeviceAccess access,
                           absl::string_view latency_metric)
    : name(std::move(name)),
      access(access),
      latency(metrics::Histogram(latency_metric,
                                 absl::StrCat(this->name, " handler latency"))),
      ok_labels(absl::StrCat("method=\"", this->name, "\",code=\"OK\"")) {}

absl::StatusOr<DeviceCall> DeviceCallHandler::Identify(
    const grpc::ServerContextBase& context, DeviceAccess access,
    absl::string_view request_device_id) const {
  if (request_device_id.size() > kMaxDeviceIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device_id is ", request_device_id.size(), " bytes; at most ",
        kMaxDeviceIdBytes, " (64 hex characters)"));
  }
  DeviceCall call;
  call.deadline = absl::FromChrono(context.deadline());
  if (access == DeviceAccess::kAttest) {
    auto peer = rpc::PeerFromContext(context);
    if (!peer.ok()) return peer.status();
    call.caller_scope = auth::ParseScope(peer->claims().scope);
    if (call.caller_scope == auth::Scope::kGateway) {
      // The gateway speaks for many devices; the quote is the proof.
      if (!IsHexDeviceId(request_device_id)) {
        return absl::InvalidArgumentError(
            "a gateway must name the device: device_id must be 64 lowercase "
            "hex characters");
      }
      call.device_id = std::string(request_device_id);
      return call;
    }
    if (!auth::IsDeviceScope(call.caller_scope) ||
        peer->claims().device_id.empty()) {
      // Operators, shards, unknown scopes.
      return auth::MayAttestFor(peer->claims(), request_device_id);
    }
    call.device_id = peer->claims().device_id;
    if (!request_device_id.empty() && request_device_id != call.device_id) {
      if (!IsHexDeviceId(request_device_id)) {
        return CheckRequestedId(request_device_id, call.device_id);
      }
      return auth::MayAttestFor(peer->claims(), request_device_id);
    }
    return call;
  }
  absl::string_view token;
  const auto& md = context.client_metadata();
  if (auto it = md.find(auth::kSessionTokenMetadata); it != md.end()) {
    token = absl::string_view(it->second.data(), it->second.size());
  }
  return FromToken(context, access, token, request_device_id, std::move(call));
}

absl::StatusOr<DeviceCall> DeviceCallHandler::IdentifyGatewayItem(
    const grpc::ServerContextBase& context, DeviceAccess access,
    absl::string_view session_token, absl::string_view device_id) const {
  if (access == DeviceAccess::kAttest) {
    return absl::InternalError(
        "IdentifyGatewayItem is for device-credential methods");
  }
  if (!IsHexDeviceId(device_id)) {
    return absl::InvalidArgumentError(
        "a gateway must name the device: device_id must be 64 lowercase hex "
        "characters");
  }
  if (session_token.empty()) {
    return absl::UnauthenticatedError(
        "item carries no session token: a gateway proves each device with "
        "the session token from its attestation");
  }
  if (session_token.size() > kMaxSessionTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("session_token is ", session_token.size(),
                     " bytes; at most ", kMaxSessionTokenBytes));
  }
  DeviceCall call;
  call.deadline = absl::FromChrono(context.deadline());
  return FromToken(context, access, session_token, device_id, std::move(call));
}

absl::StatusOr<DeviceCall> DeviceCallHandler::FromToken(
    const grpc::ServerContextBase& context, DeviceAccess access,
    absl::string_view token, absl::string_view request_device_id,
    DeviceCall call) const {
  auto cert = PeerCertificate(context);
  if (!cert.ok()) return cert.status();
  auto ctx = authenticator_->Authenticate(cert->get(), token, &call.device);
  if (!ctx.ok()) return ctx.status();
  if (auto s = CheckRequestedId(request_device_id, ctx->device_id); !s.ok()) {
    return s;
  }
  if (access == DeviceAccess::kFullScope) {
    if (auto s = auth::RequireFullScope(*ctx); !s.ok()) return s;
  } else if (ctx->scope != auth::Scope::kFull &&
             ctx->scope != auth::Scope::kUpdateOnly) {
    return absl::PermissionDeniedError("not a device credential");
  }
  call.caller_scope = auth::ParseScope((*cert)->claims.scope);
  call.device_id = ctx->device_id;
  call.context = *std::move(ctx);
  return call;
}

absl::Status DeviceCallHandler::RequireGateway(
    const grpc::ServerContextBase& context) const {
  auto peer = rpc::PeerFromContext(context);
  if (!peer.ok()) return peer.status();
  if (auth::ParseScope(peer->claims().scope) != auth::Scope::kGateway) {
    return absl::PermissionDeniedError(
        "batch attestation calls are for gateways: a device attests itself "
        "with GetChallenge and Attest");
  }
  return absl::OkStatus();
}

std::optional<std::string> DeviceCallHandler::RedirectAddress(
    absl::string_view device_id) const {
  std::optional<v1::Shard> owner = router_->OtherOwner(device_id);
  if (!owner.has_value()) return std::nullopt;
  return owner->address();
}

grpc::ServerUnaryReactor* DeviceCallHandler::Unary(
    grpc::CallbackServerContext* context, const DeviceMethod& method,
    absl::string_view request_device_id,
    const std::function<absl::Status(const DeviceCall&)>& fn) const {
  return UnaryAsync(
      context, method, request_device_id,
      [&fn](const DeviceCall& call, Finish finish) { finish(fn(call)); });
}

namespace {

// GrpcFinisher ends a device call: latency, the call counter by code, the
// reactor.
std::function<void(const grpc::Status&)> GrpcFinisher(
    grpc::ServerUnaryReactor* reactor, const DeviceMethod* m,
    absl::Time start) {
  return [reactor, m, start](const grpc::Status& st) {
    m->latency->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (st.ok()) {
      CallCounter()->Increment(m->ok_labels);
    } else {
      CallCounter()->Increment(
          absl::StrCat("method=\"", m->name, "\",code=\"",
                       absl::StatusCodeToString(
                           static_cast<absl::StatusCode>(st.error_code())),
                       "\""));
    }
    reactor->Finish(st);
  };
}

// RefuseUnidentified finishes a call whose steps 1-3 failed.
void RefuseUnidentified(
    const grpc::CallbackServerContext& context, const DeviceMethod& method,
    const absl::Status& s,
    const std::function<void(const grpc::Status&)>& finish_grpc) {
  if (absl::IsPermissionDenied(s) || absl::IsUnauthenticated(s)) {
    log::Warning("device call denied", {{"method", method.name},
                                        {"peer", context.peer()},
                                        {"error", std::string(s.message())}});
  }
  finish_grpc(rpc::ToGrpcStatus(s));
}

}  // namespace

void DeviceCallHandler::RouteAndRun(
    grpc::CallbackServerContext* context, const DeviceMethod& method,
    const DeviceCall& call, const FinishGrpc& finish_grpc, const Admit& admit,
    const std::function<void(const DeviceCall&, Finish)>& fn) const {
  // Redirect: the trailers name the owner.
  if (grpc::Status owner = router_->CheckOwnership(context, call.device_id);
      !owner.ok()) {
    finish_grpc(owner);
    return;
  }
  const DeviceMethod* m = &method;
  auto finish = [finish_grpc, m,
                 device = call.device_id](const absl::Status& s) {
    if (absl::IsInternal(s) || absl::IsDataLoss(s)) {
      log::Error(
          "device call failed",
          {{"method", m->name}, {"device", device}, {"error", s.ToString()}});
    }
    finish_grpc(rpc::ToGrpcStatus(s));
  };
  if (admit) {
    if (absl::Status s = admit(call, /*behind=*/false); !s.ok()) {
      finish(s);
      return;
    }
  }
  fn(call, std::move(finish));
}

grpc::ServerUnaryReactor* DeviceCallHandler::UnaryAsync(
    grpc::CallbackServerContext* context, const DeviceMethod& method,
    absl::string_view request_device_id,
    const std::function<void(const DeviceCall&, Finish)>& fn) const {
  // No revision: never waits, routes at once.
  return UnaryAsyncAtRevision(context, method, request_device_id,
                              /*gate=*/nullptr, /*min_revision=*/0,
                              /*admit=*/nullptr, fn);
}

grpc::ServerUnaryReactor* DeviceCallHandler::UnaryAsyncAtRevision(
    grpc::CallbackServerContext* context, const DeviceMethod& method,
    absl::string_view request_device_id, RevisionGate* gate,
    int64_t min_revision, const Admit& admit,
    const std::function<void(const DeviceCall&, Finish)>& fn) const {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto finish_grpc = GrpcFinisher(reactor, &method, absl::Now());
  absl::StatusOr<DeviceCall> call =
      Identify(*context, method.access, request_device_id);
  if (!call.ok()) {
    RefuseUnidentified(*context, method, call.status(), finish_grpc);
    return reactor;
  }
  const bool behind =
      min_revision > 0 && (gate == nullptr || min_revision > gate->current());
  if (!behind) {
    RouteAndRun(context, method, *call, finish_grpc, admit, fn);
    return reactor;
  }
  // Refusals that must not wait (nor take a parking place) come first.
  if (admit) {
    if (absl::Status s = admit(*call, /*behind=*/true); !s.ok()) {
      finish_grpc(rpc::ToGrpcStatus(s));
      return reactor;
    }
  }
  if (gate == nullptr) {
    finish_grpc(rpc::ToGrpcStatus(absl::UnavailableError(absl::StrCat(
        "this shard cannot wait for catalog revision ", min_revision,
        "; retry"))));
    return reactor;
  }
  // Ownership is decided once the revision is here: the shard map may have
  // moved the device at it. The gate answers on its own thread (or at once).
  const std::string key = call->device_id;
  const absl::Time deadline = call->deadline;
  gate->WhenReached(
      min_revision, deadline, key,
      [this, context, m = &method, call = *std::move(call), finish_grpc,
       fn](absl::Status ready) {
        if (!ready.ok()) {
          finish_grpc(rpc::ToGrpcStatus(ready));
          return;
        }
        RouteAndRun(context, *m, call, finish_grpc, nullptr, fn);
      });
  return reactor;
}

}  // namespace sphere::shard
