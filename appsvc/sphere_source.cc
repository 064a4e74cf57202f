#include "appsvc/sphere_source.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/error_reporting.grpc.pb.h"

namespace contoso::appsvc {
namespace {

constexpr int kMaxErrorReports = 100;

std::string Describe(const grpc::Status& s) {
  return absl::StrCat(s.error_code(), " ",
                      sphere::rpc::TruncateForStatus(s.error_message(), 200));
}

}  // namespace

GrpcSphereSource::GrpcSphereSource(const DeviceRegistry* registry,
                                   sphere::rpc::TlsFiles tenant_tls,
                                   absl::Duration deadline,
                                   std::string server_name)
    : registry_(registry),
      tls_(std::move(tenant_tls)),
      server_name_(std::move(server_name)),
      deadline_(deadline) {}

std::shared_ptr<grpc::Channel> GrpcSphereSource::ChannelFor(
    const std::string& address) {
  absl::MutexLock l(&mu_);
  auto& ch = channels_[address];
  if (ch == nullptr) ch = sphere::rpc::NewChannel(address, tls_, server_name_);
  return ch;
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
      v1::TimelineEntry e;
      e.set_time_unix_ms(status.last_attested_unix_ms());
      e.set_source("sphere");
      e.set_kind("attestation");
      e.set_summary(absl::StrCat(
          "attested ", status.last_attestation_outcome(),
          status.reason().empty() ? "" : absl::StrCat(" (", status.reason(), ")"),
          "; OS ", facts.os_version.empty() ? "?" : facts.os_version,
          facts.app_version.empty() ? "" : absl::StrCat("; apps ", facts.app_version)));
      facts.entries.push_back(std::move(e));
    } else {
      facts.last_attestation = "never attested";
    }
  }
  // Error reports from the same shard.
  {
    auto stub =
        sphere::v1::ErrorReportingService::NewStub(ChannelFor(address));
    grpc::ClientContext ctx;
    ctx.set_deadline(sphere::rpc::Deadline(deadline_));
    sphere::v1::QueryErrorsRequest req;
    req.set_tenant_id(registry_->ConfiguredTenantId());
    req.set_device_id(device_id);
    req.set_from_unix_ms(absl::ToUnixMillis(absl::Now() - absl::Hours(24 * 14)));
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
            r.event().component(),
            r.event().detail().empty() ? "" : ": ",
            sphere::rpc::TruncateForStatus(r.event().detail(), 200)));
        facts.entries.push_back(std::move(e));
      }
    } else {
      facts.errors.push_back(
          absl::StrCat("error reports from ", address, ": ", Describe(st)));
    }
  }
  facts.errors.push_back(
      "update results: this Sphere version offers relying parties no query "
      "for them");
  return facts;
}

}  // namespace contoso::appsvc
