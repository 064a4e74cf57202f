#include "appsvc/sphere_source.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/cluster/cluster_config.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/error_reporting.grpc.pb.h"

namespace contoso::appsvc {
namespace {

constexpr int kMaxErrorReports = 100;
constexpr int kMaxHistoryPages = 4;

std::string Versions(
    const google::protobuf::Map<std::string, uint32_t>& versions) {
  std::vector<std::string> parts;
  for (const auto& [component, version] : versions) {
    parts.push_back(absl::StrCat(component, " v", version));
  }
  std::sort(parts.begin(), parts.end());
  return absl::StrJoin(parts, ", ");
}

}  // namespace

// HistoryEntry: one Sphere history entry as a timeline row (kind
// "attestation" or "update"; strings were bounded by the shard and are cut
// again here).
v1::TimelineEntry HistoryEntry(const sphere::v1::DeviceHistoryEntry& h) {
  v1::TimelineEntry e;
  e.set_time_unix_ms(h.time_unix_ms());
  e.set_source("sphere");
  if (h.has_update_result()) {
    const auto& u = h.update_result();
    e.set_kind("update");
    e.set_summary(sphere::rpc::TruncateForStatus(
        absl::StrCat("update ", u.result(), ": ", u.component(), " v",
                     u.version(), u.detail().empty() ? "" : " (", u.detail(),
                     u.detail().empty() ? "" : ")"),
        300));
    return e;
  }
  const auto& a = h.attestation();
  e.set_kind("attestation");
  std::string summary;
  if (a.success()) {
    summary = absl::StrCat(
        "attested ", a.outcome(),
        a.reason().empty() ? "" : absl::StrCat(" (", a.reason(), ")"), "; OS ",
        a.os_version().empty() ? "?" : a.os_version(), "; measured ",
        Versions(a.component_versions()));
  } else {
    summary =
        absl::StrCat("attestation refused ", a.outcome(), ": ", a.reason());
  }
  e.set_summary(sphere::rpc::TruncateForStatus(summary, 400));
  return e;
}

namespace {

std::string Describe(const grpc::Status& s) {
  return absl::StrCat(s.error_code(), " ",
                      sphere::rpc::TruncateForStatus(s.error_message(), 200));
}

}  // namespace

GrpcSphereSource::GrpcSphereSource(
    const DeviceRegistry* registry, sphere::rpc::TlsFiles tenant_tls,
    absl::Duration deadline, std::string server_name,
    std::map<std::string, std::string> server_names)
    : registry_(registry),
      tls_(std::move(tenant_tls)),
      server_name_(std::move(server_name)),
      server_names_(std::move(server_names)),
      deadline_(deadline) {}

absl::StatusOr<std::map<std::string, std::string>> ParseServerNames(
    absl::string_view flag) {
  std::map<std::string, std::string> out;
  if (flag.empty()) return out;
  std::vector<absl::string_view> entries = absl::StrSplit(flag, ',');
  if (entries.size() > kMaxServerNames) {
    return absl::InvalidArgumentError(
        absl::StrCat("--server_names: at most ", kMaxServerNames, " shards"));
  }
  for (absl::string_view entry : entries) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(entry, absl::MaxSplits('=', 1));
    const bool id_ok =
        !kv.first.empty() && kv.first.size() <= 64 &&
        std::all_of(kv.first.begin(), kv.first.end(), [](char c) {
          return absl::ascii_isalnum(c) || c == '-' || c == '_';
        });
    if (!id_ok || kv.second.empty() ||
        kv.second.size() > sphere::cluster::kMaxServerNameBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--server_names: \"", sphere::rpc::TruncateForStatus(entry, 80),
          "\" is not SHARD_ID=NAME (id: letters, digits, '-', '_', at most 64; "
          "name: 1..",
          sphere::cluster::kMaxServerNameBytes, " bytes)"));
    }
    if (!out.emplace(std::string(kv.first), std::string(kv.second)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--server_names names shard ", kv.first, " twice"));
    }
  }
  return out;
}

std::string GrpcSphereSource::ServerNameAt(const std::string& address) const {
  std::vector<sphere::cluster::ShardEndpoint> shards;
  for (auto& [id, shard_address] : registry_->Shards()) {
    sphere::cluster::ShardEndpoint e;
    e.id = id;
    e.address = shard_address;
    auto it = server_names_.find(id);
    e.server_name = it != server_names_.end() ? it->second : server_name_;
    shards.push_back(std::move(e));
  }
  if (shards.empty()) return server_name_;
  return sphere::cluster::ServerNameAt(shards, address);
}

std::shared_ptr<grpc::Channel> GrpcSphereSource::ChannelFor(
    const std::string& address) {
  std::string name = ServerNameAt(address);
  absl::MutexLock l(&mu_);
  auto& ch = channels_[{address, name}];
  if (ch == nullptr) ch = sphere::rpc::NewChannel(address, tls_, name);
  return ch;
}

absl::Status GrpcSphereSource::FetchHistory(
    const std::string& address, const std::string& device_id,
    std::vector<v1::TimelineEntry>* out) {
  auto stub = sphere::v1::DeviceStatusService::NewStub(ChannelFor(address));
  std::string token;
  // At most kMaxHistoryPages pages (the shard keeps at most 64 entries).
  for (int page = 0; page < kMaxHistoryPages; ++page) {
    grpc::ClientContext ctx;
    ctx.set_deadline(sphere::rpc::Deadline(deadline_));
    sphere::v1::GetDeviceHistoryRequest req;
    req.set_device_id(device_id);
    req.set_page_size(64);
    req.set_page_token(token);
    sphere::v1::GetDeviceHistoryResponse resp;
    grpc::Status st = stub->GetDeviceHistory(&ctx, req, &resp);
    if (!st.ok()) {
      return absl::UnavailableError(
          absl::StrCat("attestation history and update results from ", address,
                       ": ", Describe(st)));
    }
    for (const auto& h : resp.entries()) out->push_back(HistoryEntry(h));
    token = resp.next_page_token();
    if (token.empty()) break;
  }
  return absl::OkStatus();
}

SphereFacts GrpcSphereSource::Fetch(const std::string& device_id) {
  SphereFacts facts;
  if (tls_.cert_pem.empty()) {
    facts.errors.push_back(
        "Sphere data: appsvc has no Contoso tenant credential "
        "(--sphere_cert/--sphere_key)");
    return facts;
  }
  std::vector<std::string> shards = registry_->ShardAddresses();
  if (shards.empty()) {
    facts.errors.push_back(
        "Sphere data: the catalog names no Security Service shard yet");
    return facts;
  }
  // Device status from the owning shard (one redirect at most).
  std::string address = shards.front();
  sphere::v1::DeviceStatus status;
  bool found = false;
  for (int hop = 0; hop < 2 && !found; ++hop) {
    auto stub = sphere::v1::DeviceStatusService::NewStub(ChannelFor(address));
    grpc::ClientContext ctx;
    ctx.set_deadline(sphere::rpc::Deadline(deadline_));
    sphere::v1::GetDeviceStatusRequest req;
    req.add_device_ids(device_id);
    sphere::v1::GetDeviceStatusResponse resp;
    grpc::Status st = stub->GetDeviceStatus(&ctx, req, &resp);
    if (!st.ok()) {
      facts.errors.push_back(
          absl::StrCat("device status from ", address, ": ", Describe(st)));
      break;
    }
    if (resp.devices_size() > 0) {
      status = resp.devices(0);
      found = true;
    } else if (resp.not_here_size() > 0) {
      address = resp.not_here(0).address();
    } else {
      facts.errors.push_back(
          "device status: Sphere does not know this device for Contoso's "
          "tenant");
      break;
    }
  }
  if (found) {
    facts.os_version = status.os_version();
    std::vector<std::string> apps;
    for (const auto& [component, version] : status.component_versions()) {
      if (absl::StartsWith(component, "app:")) {
        apps.push_back(absl::StrCat(component.substr(4), " v", version));
      }
    }
    std::sort(apps.begin(), apps.end());
    facts.app_version = absl::StrJoin(apps, ", ");
    if (status.last_attested_unix_ms() > 0) {
      facts.last_attestation = absl::StrCat(
          status.last_attestation_outcome(), " at ",
          absl::FormatTime(absl::RFC3339_sec,
                           absl::FromUnixMillis(status.last_attested_unix_ms()),
                           absl::UTCTimeZone()));
    } else {
      facts.last_attestation = "never attested";
    }
    // Attestation history and update results from the owning shard.
    if (auto s = FetchHistory(address, device_id, &facts.entries); !s.ok()) {
      facts.errors.push_back(std::string(s.message()));
    }
  }
  // Error reports from the same shard.
  {
    auto stub = sphere::v1::ErrorReportingService::NewStub(ChannelFor(address));
    grpc::ClientContext ctx;
    ctx.set_deadline(sphere::rpc::Deadline(deadline_));
    sphere::v1::QueryErrorsRequest req;
    req.set_tenant_id(registry_->ConfiguredTenantId());
    req.set_device_id(device_id);
    req.set_from_unix_ms(
        absl::ToUnixMillis(absl::Now() - absl::Hours(24 * 14)));
    req.set_page_size(kMaxErrorReports);
    sphere::v1::QueryErrorsResponse resp;
    grpc::Status st = stub->QueryErrors(&ctx, req, &resp);
    if (st.ok()) {
      for (const auto& r : resp.reports()) {
        v1::TimelineEntry e;
        e.set_time_unix_ms(r.event().time_unix_ms() > 0
                               ? r.event().time_unix_ms()
                               : r.received_unix_ms());
        e.set_source("sphere");
        e.set_kind("error");
        e.set_summary(absl::StrCat(
            sphere::v1::ErrorEvent::Kind_Name(r.event().kind()), " ",
            r.event().component(), r.event().detail().empty() ? "" : ": ",
            sphere::rpc::TruncateForStatus(r.event().detail(), 200)));
        facts.entries.push_back(std::move(e));
      }
    } else {
      facts.errors.push_back(
          absl::StrCat("error reports from ", address, ": ", Describe(st)));
    }
  }
  return facts;
}

}  // namespace contoso::appsvc
