// DeviceRegistry: appsvc's relying-party view of the Sphere catalog, built
// from ManagementService.Watch events (see watch_follower.h): for every
// claimed device its tenant, product, ownership epoch and whether it is
// revoked; tenant and product names, so appsvc can be configured by name or
// id. Only what a relying party needs; no keys, no images.
//
// Authorize decides whether a device credential may use Contoso's cloud:
// the certificate (already chain-verified by TLS against the platform root)
// must be a full-scope device certificate (update-only is refused), its
// device must be known to the catalog, claimed (not revoked), owned by the
// configured tenant with the certificate's ownership epoch, and assigned to
// the configured product. A revocation event applies at once, so a revoked
// device is refused from the next call after the Watch event arrives.
//
// Thread-safety: Apply from the follower thread, everything else from any.
//
// Example:
//   DeviceRegistry reg({"Contoso", "DW100"});
//   reg.Apply(event);  // for each Watch event
//   absl::Status ok = reg.Authorize(device_context);
#ifndef SPHERE_APPSVC_DEVICE_REGISTRY_H_
#define SPHERE_APPSVC_DEVICE_REGISTRY_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "protos/management.pb.h"
#include "securitysvc/auth/device_context.h"

namespace contoso::appsvc {

struct RegistryOptions {
  std::string tenant;   // Contoso's tenant: id or name (case-insensitive)
  std::string product;  // the DW100 product: id or name (case-insensitive)
};

class DeviceRegistry {
 public:
  explicit DeviceRegistry(RegistryOptions options);

  // Apply folds one Watch event. Snapshot events (snapshot = true) build a
  // fresh view that replaces the current one at snapshot_end.
  void Apply(const sphere::v1::WatchEvent& event);

  // Authorize: OK, or PermissionDenied naming the reason ("update-only",
  // "revoked", "another tenant", "another product", "unknown device"),
  // Unavailable before the first complete snapshot.
  absl::Status Authorize(const sphere::auth::DeviceContext& device) const;

  int64_t revision() const;
  bool synced() const;
  // WaitForRevision blocks until revision() >= `revision` (tests, startup).
  bool WaitForRevision(int64_t revision, absl::Duration timeout) const;
  size_t device_count() const;
  // ShardAddresses: the Security Service shards (from the shard map), where
  // Sphere facts about devices are read.
  std::vector<std::string> ShardAddresses() const;
  // Shards: the same shards as (id, address) pairs, in shard-map order (a
  // client picks each shard's TLS server name by its id).
  std::vector<std::pair<std::string, std::string>> Shards() const;
  // IsConfiguredTenant: `tenant_id` is the configured tenant (id or name).
  bool IsConfiguredTenant(const std::string& tenant_id) const;
  // TenantIdOf: the configured tenant's id, empty until the catalog names it.
  std::string ConfiguredTenantId() const;

 private:
  struct DeviceEntry {
    std::string tenant_id;
    std::string product_id;
    uint32_t epoch = 0;
    bool revoked = false;
  };
  struct View {
    absl::flat_hash_map<std::string, DeviceEntry> devices;
    absl::flat_hash_map<std::string, std::string> tenant_names;   // id->name
    absl::flat_hash_map<std::string, std::string> product_names;  // id->name
    std::vector<std::string> shards;                              // addresses
    std::vector<std::string> shard_ids;  // shard_ids[i] names shards[i]
  };
  static void ApplyTo(const sphere::v1::WatchEvent& e, View* view);
  bool Matches(
      const std::string& id, const std::string& configured,
      const absl::flat_hash_map<std::string, std::string>& names) const;

  const RegistryOptions options_;
  mutable absl::Mutex mu_;
  View view_ ABSL_GUARDED_BY(mu_);
  View pending_ ABSL_GUARDED_BY(mu_);  // snapshot being received
  bool in_snapshot_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_DEVICE_REGISTRY_H_
