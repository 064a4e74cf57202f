#include "securitysvc/attestation/device_status_service.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "common/util/metrics.h"
#include "mcu-model/image.h"
#include "securitysvc/auth/scope.h"

namespace sphere::attestation {
namespace {

metrics::CounterMetric* Calls() {
  static auto* c = metrics::Counter("sphere_device_status_calls_total",
                                    "GetDeviceStatus calls by code");
  return c;
}

// OsVersion: the current release's version when every OS component of it
// was measured at exactly its version, else "".
std::string OsVersion(const catalog::CatalogView& catalog,
                      const v1::Device& device,
                      const v1::AttestationRecord& record) {
  auto release = catalog.CurrentOsRelease(device);
  if (!release.ok()) return "";
  int os_components = 0;
  for (const auto& [component, image] : catalog.ExpectedImages(device)) {
    if (mcu::KindForComponent(component) == v1::IMAGE_KIND_UNSPECIFIED) {
      continue;  // an application
    }
    ++os_components;
    auto it = record.versions().find(component);
    if (it == record.versions().end() || it->second != image.version()) {
      return "";
    }
  }
  return os_components > 0 ? release->version() : "";
}

}  // namespace

absl::StatusOr<StatusReader> IdentifyStatusReader(
    const crypto::ParsedCertificate& cert,
    absl::string_view root_subject_line) {
  const crypto::DeviceClaims& claims = cert.claims;
  if (!claims.device_id.empty()) {
    return absl::PermissionDeniedError(
        "device credentials cannot read device status; use an operator "
        "credential");
  }
  if (root_subject_line.empty() || cert.issuer_line != root_subject_line) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "certificate \"%s\" was not issued by the platform root CA; use an "
        "operator credential",
        cert.subject_line));
  }
  const auth::Scope scope = auth::ParseScope(claims.scope);
  if (scope == auth::Scope::kPlatformOperator) {
    StatusReader r;
    r.platform = true;
    return r;
  }
  if (scope == auth::Scope::kNone && !claims.tenant_id.empty()) {
    StatusReader r;
    r.tenant_id = claims.tenant_id;
    return r;
  }
  return absl::PermissionDeniedError(absl::StrFormat(
      "certificate \"%s\" carries no operator claim (urn:sphere:tenant:<id> "
      "or urn:sphere:scope:platform-operator)",
      cert.subject_line));
}

absl::StatusOr<v1::GetDeviceStatusResponse> ReadDeviceStatus(
    const StatusReader& reader, const v1::GetDeviceStatusRequest& request,
    Attestor* attestor, const catalog::CatalogView* catalog,
    const sharding::ShardRouter* router,
    const DeviceStatusExtension& extension) {
  if (request.device_ids_size() == 0) {
    return absl::InvalidArgumentError("name at least one device id");
  }
  if (request.device_ids_size() > kMaxDeviceStatusIds) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxDeviceStatusIds,
                     " device ids per call; got ", request.device_ids_size()));
  }
  for (const auto& id : request.device_ids()) {
    if (auto s = ValidateDeviceId(id); !s.ok()) return s;
  }
  if (!catalog->synced()) {
    return absl::UnavailableError(
        "catalog not yet synced: this shard is still loading the catalog "
        "from management; retry shortly");
  }
  v1::GetDeviceStatusResponse out;
  absl::flat_hash_set<std::string> seen;
  for (const auto& id : request.device_ids()) {
    if (!seen.insert(id).second) continue;
    auto device = catalog->GetDevice(id);
    if (!device.ok() || !reader.MaySee(*device)) {
      out.add_unknown(id);  // never registered, or not the caller's
      continue;
    }
    if (router != nullptr) {
      if (auto owner = router->OtherOwner(id); owner.has_value()) {
        v1::ShardRedirect* r = out.add_not_here();
        r->set_device_id(id);
        r->set_shard_id(owner->id());
        r->set_address(owner->address());
        continue;
      }
    }
    v1::DeviceStatus* st = out.add_devices();
    st->set_device_id(id);
    if (extension) extension(id, st);
    auto record = attestor->LastRecord(id);
    if (absl::IsNotFound(record.status())) continue;  // never attested
    if (!record.ok()) return record.status();
    st->set_last_attested_unix_ms(record->time_unix_ms());
    st->set_last_attestation_outcome(record->outcome());
    st->set_reason(record->reason());
    st->set_os_version(OsVersion(*catalog, *device, *record));
    *st->mutable_component_versions() = record->versions();
    st->set_certificate_not_after_unix_ms(
        record->certificate_not_after_unix_ms());
  }
  return out;
}

grpc::ServerUnaryReactor* DeviceStatusServiceImpl::GetDeviceStatus(
    grpc::CallbackServerContext* context,
    const v1::GetDeviceStatusRequest* request,
    v1::GetDeviceStatusResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status;
  absl::StatusOr<rpc::PeerIdentity> peer = rpc::PeerFromContext(*context);
  if (!peer.ok()) {
    status = peer.status();
  } else if (auto reader =
                 IdentifyStatusReader(peer->cert, root_subject_line_);
             !reader.ok()) {
    status = reader.status();
  } else {
    auto r = ReadDeviceStatus(*reader, *request, attestor_, catalog_, router_,
                              extension_);
    if (r.ok()) {
      *response = *std::move(r);
    } else {
      status = r.status();
    }
  }
  if (absl::IsPermissionDenied(status) || absl::IsUnauthenticated(status)) {
    log::Warning("device status denied",
                 {{"peer", context->peer()},
                  {"error", std::string(status.message())}});
  }
  Calls()->Increment(absl::StrCat(
      "code=\"", absl::StatusCodeToString(status.code()), "\""));
  reactor->Finish(rpc::ToGrpcStatus(status));
  return reactor;
}

}  // namespace sphere::attestation
