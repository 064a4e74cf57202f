#include "securitysvc/attestation/device_status_service.h"

#include <algorithm>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
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

metrics::CounterMetric* HistoryCalls() {
  static auto* c = metrics::Counter("sphere_device_history_calls_total",
                                    "GetDeviceHistory calls by code");
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

namespace {

constexpr char kHistoryTokenPrefix[] = "h1.";

// HistoryToken: the opaque page token for entries from `offset` on, bound to
// the device (a token for another device is refused).
std::string HistoryToken(absl::string_view device_id, int offset) {
  return absl::StrCat(kHistoryTokenPrefix, offset, ".",
                      device_id.substr(0, 16));
}

absl::StatusOr<int> ParseHistoryToken(absl::string_view device_id,
                                      absl::string_view token) {
  if (token.empty()) return 0;
  auto bad = [] {
    return absl::InvalidArgumentError(
        "page_token was not handed out by GetDeviceHistory for this device; "
        "start again with an empty page_token");
  };
  if (token.size() > 64 || !absl::ConsumePrefix(&token, kHistoryTokenPrefix)) {
    return bad();
  }
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  int offset = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &offset) ||
      offset <= 0 || offset > 2 * kMaxHistoryPageSize ||
      parts[1] != device_id.substr(0, 16)) {
    return bad();
  }
  return offset;
}

}  // namespace

absl::StatusOr<v1::GetDeviceHistoryResponse> ReadDeviceHistory(
    const StatusReader& reader, const v1::GetDeviceHistoryRequest& request,
    Attestor* attestor, const catalog::CatalogView* catalog,
    const sharding::ShardRouter* router,
    const DeviceHistoryExtension& extension) {
  const std::string& id = request.device_id();
  if (auto s = ValidateDeviceId(id); !s.ok()) return s;
  if (request.page_size() < 0 || request.page_size() > kMaxHistoryPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be 0..", kMaxHistoryPageSize, "; got ",
                     request.page_size()));
  }
  auto offset = ParseHistoryToken(id, request.page_token());
  if (!offset.ok()) return offset.status();
  if (!catalog->synced()) {
    return absl::UnavailableError(
        "catalog not yet synced: this shard is still loading the catalog "
        "from management; retry shortly");
  }
  auto device = catalog->GetDevice(id);
  if (!device.ok() || !reader.MaySee(*device)) {
    // Never registered, or not the caller's: the same answer.
    return absl::NotFoundError(absl::StrCat("device ", id, " is unknown"));
  }
  v1::GetDeviceHistoryResponse out;
  out.set_device_id(id);
  if (router != nullptr) {
    if (auto owner = router->OtherOwner(id); owner.has_value()) {
      v1::ShardRedirect* r = out.mutable_redirect();
      r->set_device_id(id);
      r->set_shard_id(owner->id());
      r->set_address(owner->address());
      return out;
    }
  }
  auto attempts = attestor->History(id);
  if (!attempts.ok()) return attempts.status();
  std::vector<v1::DeviceHistoryEntry> entries;
  // The newest kMaxHistoryEntries attempts (successes and refusals).
  const size_t skip = attempts->size() > kMaxHistoryEntries
                          ? attempts->size() - kMaxHistoryEntries
                          : 0;
  for (size_t i = skip; i < attempts->size(); ++i) {
    const v1::AttestationRecord& r = (*attempts)[i];
    v1::DeviceHistoryEntry e;
    e.set_time_unix_ms(r.time_unix_ms());
    v1::AttestationAttempt* a = e.mutable_attestation();
    a->set_success(r.success());
    a->set_outcome(r.outcome());
    a->set_reason(r.reason());
    a->set_certificate_serial(r.certificate_serial());
    *a->mutable_component_versions() = r.versions();
    if (r.success()) a->set_os_version(OsVersion(*catalog, *device, r));
    entries.push_back(std::move(e));
  }
  if (extension) {
    std::vector<v1::DeviceHistoryEntry> more;
    extension(id, &more);
    if (more.size() > kMaxHistoryPageSize) {
      more.erase(more.begin(), more.end() - kMaxHistoryPageSize);
    }
    for (auto& e : more) entries.push_back(std::move(e));
  }
  std::stable_sort(
      entries.begin(), entries.end(),
      [](const v1::DeviceHistoryEntry& a, const v1::DeviceHistoryEntry& b) {
        return a.time_unix_ms() > b.time_unix_ms();
      });
  const int page =
      request.page_size() == 0 ? kDefaultHistoryPageSize : request.page_size();
  const size_t begin = std::min<size_t>(*offset, entries.size());
  const size_t end = std::min<size_t>(begin + page, entries.size());
  for (size_t i = begin; i < end; ++i) {
    *out.add_entries() = std::move(entries[i]);
  }
  if (end < entries.size()) {
    out.set_next_page_token(HistoryToken(id, static_cast<int>(end)));
  }
  return out;
}

namespace {

// ServeRead answers one relying-party read: identify the caller from its
// certificate (on the callback thread: no store access), then run `read` for
// it on `pool`, which finishes the call; log refusals as `denied_msg`, count
// the outcome in `calls`. GetDeviceStatus and GetDeviceHistory differ only in
// `read`, which must capture nothing that dies with the handler's frame.
template <typename Response, typename Read>
grpc::ServerUnaryReactor* ServeRead(grpc::CallbackServerContext* context,
                                    const std::string& root_subject_line,
                                    WorkerPool* pool, Response* response,
                                    const char* denied_msg,
                                    metrics::CounterMetric* calls, Read read) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto finish = [context, reactor, denied_msg,
                 calls](const absl::Status& status) {
    if (absl::IsPermissionDenied(status) || absl::IsUnauthenticated(status)) {
      log::Warning(denied_msg, {{"peer", context->peer()},
                                {"error", std::string(status.message())}});
    }
    calls->Increment(
        absl::StrCat("code=\"", absl::StatusCodeToString(status.code()), "\""));
    reactor->Finish(rpc::ToGrpcStatus(status));
  };
  absl::StatusOr<rpc::PeerIdentity> peer = rpc::PeerFromContext(*context);
  if (!peer.ok()) {
    finish(peer.status());
    return reactor;
  }
  absl::StatusOr<StatusReader> reader =
      IdentifyStatusReader(peer->cert, root_subject_line);
  if (!reader.ok()) {
    finish(reader.status());
    return reactor;
  }
  // One share of the queue per reader: a tenant, or the platform operators.
  const std::string key = reader->platform
                              ? "platform"
                              : absl::StrCat("tenant:", reader->tenant_id);
  const bool queued = pool->TrySubmit(
      key,
      [reader = *std::move(reader), response, read = std::move(read), finish] {
        auto r = read(reader);
        if (r.ok()) *response = *std::move(r);
        finish(r.status());
      });
  if (!queued) {
    finish(absl::ResourceExhaustedError(
        "device status reads are busy on this shard: the queue is full or "
        "this caller already has its share of it queued; retry with "
        "backoff"));
  }
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* DeviceStatusServiceImpl::GetDeviceHistory(
    grpc::CallbackServerContext* context,
    const v1::GetDeviceHistoryRequest* request,
    v1::GetDeviceHistoryResponse* response) {
  return ServeRead(
      context, root_subject_line_, &reads_, response, "device history denied",
      HistoryCalls(), [this, request](const StatusReader& reader) {
        return ReadDeviceHistory(reader, *request, attestor_, catalog_, router_,
                                 history_extension_);
      });
}

grpc::ServerUnaryReactor* DeviceStatusServiceImpl::GetDeviceStatus(
    grpc::CallbackServerContext* context,
    const v1::GetDeviceStatusRequest* request,
    v1::GetDeviceStatusResponse* response) {
  return ServeRead(context, root_subject_line_, &reads_, response,
                   "device status denied", Calls(),
                   [this, request](const StatusReader& reader) {
                     return ReadDeviceStatus(reader, *request, attestor_,
                                             catalog_, router_, extension_);
                   });
}

}  // namespace sphere::attestation
