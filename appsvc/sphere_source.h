// SphereSource: where the support timeline's Sphere half comes from
// (versions, attestation, update results, error reports). The interface lets
// tests and future sources plug in; GrpcSphereSource reads the Security
// Service over gRPC with Contoso's tenant operator credential:
//   * DeviceStatusService.GetDeviceStatus on the shards the catalog's shard
//     map names (following one not_here redirect): OS version, application
//     versions, last attestation;
//   * ErrorReportingService.QueryErrors on the owning shard: error reports of
//     the last 14 days (a cluster without that service is reported in
//     `errors`, never papered over);
//   * DeviceStatusService.GetDeviceHistory on the owning shard: the last
//     attestation attempts (successes and refusals with their reason) and
//     the last update results, one timeline row each (kinds "attestation"
//     and "update"), at most 4 pages of 64.
// A source that cannot answer adds one line to `errors` (Timeline's
// sphere_error); nothing is ever made up.
//
// Thread-safety: Fetch may be called concurrently. It blocks (bounded by the
// per-call deadline): call it from worker threads only.
#ifndef SPHERE_APPSVC_SPHERE_SOURCE_H_
#define SPHERE_APPSVC_SPHERE_SOURCE_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "appsvc/device_registry.h"
#include "common/rpc/rpc.h"
#include "protos/attestation.pb.h"
#include "protos/contoso.pb.h"

namespace contoso::appsvc {

struct SphereFacts {
  std::string os_version;
  std::string app_version;
  std::string last_attestation;
  std::vector<v1::TimelineEntry> entries;  // source "sphere"
  std::vector<std::string> errors;         // one line per missing source
};

// HistoryEntry converts one GetDeviceHistory entry to a timeline row.
v1::TimelineEntry HistoryEntry(const sphere::v1::DeviceHistoryEntry& h);

// ParseServerNames parses appsvc's --server_names, per-shard TLS names as
// "shard-0=name,shard-1=name" (cluster.json's "server_names"): at most
// kMaxServerNames entries, ids of letters, digits, '-' and '_' up to 64
// bytes, names of 1..cluster::kMaxServerNameBytes; "" is no overrides.
inline constexpr size_t kMaxServerNames = 1024;
absl::StatusOr<std::map<std::string, std::string>> ParseServerNames(
    absl::string_view flag);

class SphereSource {
 public:
  virtual ~SphereSource() = default;
  virtual SphereFacts Fetch(const std::string& device_id) = 0;
};

class GrpcSphereSource final : public SphereSource {
 public:
  // `tenant_tls`: Contoso's tenant operator credential (cert, key, platform
  // root). `registry` supplies the shard addresses and the tenant id.
  // `server_name`: the TLS name on the shards' certificates (appsvc's
  // --server_name, cluster.json's "server_name"); `server_names`: per-shard
  // overrides by shard id (appsvc's --server_names, cluster.json's
  // "server_names").
  GrpcSphereSource(const DeviceRegistry* registry,
                   sphere::rpc::TlsFiles tenant_tls,
                   absl::Duration deadline = absl::Seconds(5),
                   std::string server_name = sphere::rpc::kLocalServerName,
                   std::map<std::string, std::string> server_names = {});
  SphereFacts Fetch(const std::string& device_id) override;

  // ServerNameAt: the name checked on the certificate of the shard at
  // `address` (the shard map names the shard; cluster::ServerNameAt decides,
  // as for every other client): its override, else `server_name`. For an
  // address the shard map does not list (a redirect), the name all shards
  // share, else "" (the host in the address).
  std::string ServerNameAt(const std::string& address) const;

 private:
  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& address);
  // FetchHistory appends the device's Sphere history from `address`.
  absl::Status FetchHistory(const std::string& address,
                            const std::string& device_id,
                            std::vector<v1::TimelineEntry>* out);

  const DeviceRegistry* const registry_;
  const sphere::rpc::TlsFiles tls_;
  const std::string server_name_;
  const std::map<std::string, std::string> server_names_;
  const absl::Duration deadline_;
  absl::Mutex mu_;
  // By address and server name (a shard map change may give an address
  // another shard's name).
  absl::flat_hash_map<std::pair<std::string, std::string>,
                      std::shared_ptr<grpc::Channel>>
      channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_SPHERE_SOURCE_H_
