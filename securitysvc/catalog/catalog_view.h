// CatalogView: what a shard needs to know about the platform catalog, which
// management owns. Shards never write it; they follow management's Watch
// stream into an InMemoryCatalog (see catalog_follower.h). Core logic
// (attestation, update, error reporting) depends only on this interface.
//
// Thread-safety: implementations are safe for concurrent use.
#ifndef SPHERE_SECURITYSVC_CATALOG_CATALOG_VIEW_H_
#define SPHERE_SECURITYSVC_CATALOG_CATALOG_VIEW_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "common/util/clock.h"
#include "protos/management.pb.h"
#include "securitysvc/catalog/device_table.h"
#include "securitysvc/catalog/tenant_ca_key.h"

namespace sphere::catalog {

// ImageOwnerKey names an image by owner and id ("<tenant id>/<image id>",
// "platform/<image id>" for OS images): a tenant's images are bound to it, so
// another tenant's byte-identical upload is a different image.
inline std::string ImageOwnerKey(absl::string_view tenant_id,
                                 absl::string_view image_id) {
  return absl::StrCat(tenant_id.empty() ? "platform" : tenant_id, "/",
                      image_id);
}

// TenantCa is a tenant's issuing CA as a shard uses it.
struct TenantCa {
  std::string tenant_id;
  std::string name;
  std::string ca_cert_pem;
  crypto::EcPrivateKey ca_key;
  // Built once from ca_key + ca_cert_pem when the tenant is applied; null
  // when they do not form a usable issuer (issuer_status says why).
  std::shared_ptr<const crypto::CertificateIssuer> issuer;
  absl::Status issuer_status;
};

class CatalogView {
 public:
  virtual ~CatalogView() = default;

  // GetDevice: NotFound when the factory never registered the device.
  virtual absl::StatusOr<v1::Device> GetDevice(absl::string_view id) const = 0;
  // GetTenantCa: NotFound for an unknown tenant.
  virtual absl::StatusOr<TenantCa> GetTenantCa(
      absl::string_view tenant_id) const = 0;
  // GetSharedTenantCa: the same, without copying the CA (hot path: one call
  // per attestation). The default builds it from GetTenantCa, issuer included.
  virtual absl::StatusOr<std::shared_ptr<const TenantCa>> GetSharedTenantCa(
      absl::string_view tenant_id) const;
  virtual absl::StatusOr<v1::DeviceGroup> GetDeviceGroup(
      absl::string_view group_id) const = 0;
  // FindImageByHash: a platform-signed image whose measured hash is `hash`
  // (32 raw bytes), of any owner; NotFound when the platform never signed
  // such an image.
  virtual absl::StatusOr<v1::Image> FindImageByHash(
      absl::string_view hash) const = 0;
  // FindImageForTenant: the image with measured hash `hash` that a device of
  // `tenant_id` may run: a platform OS image or that tenant's own app.
  // PermissionDenied when the platform signed it only for other tenants
  // (never naming them); NotFound when it never signed it. The default uses
  // FindImageByHash (enough for views holding one image per hash).
  virtual absl::StatusOr<v1::Image> FindImageForTenant(
      absl::string_view hash, absl::string_view tenant_id) const;
  // ExpectedImages: the images the device's group should run now (latest OS
  // release of its feed + its group's latest deployment), by component.
  virtual std::map<std::string, v1::Image> ExpectedImages(
      const v1::Device& device) const = 0;
  // CurrentOsRelease: the latest OS release of the device's group's feed
  // (the release ExpectedImages takes its OS images from); NotFound when
  // none. The default knows none.
  virtual absl::StatusOr<v1::OsRelease> CurrentOsRelease(
      const v1::Device& device) const {
    return absl::NotFoundError("no OS release");
  }
  // CurrentDeployment: the latest deployment of group `group_id` (halted
  // or not); NotFound when none. The default knows none.
  virtual absl::StatusOr<v1::Deployment> CurrentDeployment(
      absl::string_view group_id) const {
    return absl::NotFoundError("no deployment");
  }
  // DevicesInGroup: the ids of the devices in group `group_id` (staged
  // rollouts count a stage's devices; O(devices), call it off hot paths).
  // The default knows none.
  virtual std::vector<std::string> DevicesInGroup(
      absl::string_view group_id) const {
    return {};
  }
  // Revision of the catalog this view reflects.
  virtual int64_t revision() const = 0;
  // synced: the view holds a complete catalog (false while a follower has
  // not yet applied its first full snapshot). Shards refuse attestation
  // (UNAVAILABLE) until then.
  virtual bool synced() const { return true; }
  // CheckFresh: OK while the view may be trusted to issue certificates;
  // UNAVAILABLE naming the staleness once the view lost its catalog source
  // for longer than its bound (see InMemoryCatalog::SetStalenessLimit).
  // The default is always fresh.
  virtual absl::Status CheckFresh() const { return absl::OkStatus(); }
};

// InMemoryCatalog holds a full copy of the catalog, updated by Apply(). The
// tenant CA keys arrive wrapped under the cluster master key and are
// unwrapped here.
//
// Snapshots are applied atomically: events with snapshot=true are staged in
// a separate copy that replaces the served state only when the snapshot_end
// event arrives, and only then does revision() advance (to the snapshot's
// revision). Readers never see a half-applied snapshot (devices known but
// their images not yet), and during a re-snapshot they keep the previous
// complete state. The cost is a second copy of the catalog while a snapshot
// streams. Live events apply directly and advance revision().
//
// A view starts synced (tests and bootstrap fill it with the Put* setters);
// RequireSnapshot() marks it unsynced until a snapshot completes, which is
// what CatalogFollower does.
class InMemoryCatalog : public CatalogView {
 public:
  explicit InMemoryCatalog(std::string master_key);

  // Apply folds one Watch event into the view (see the class comment for
  // snapshot events). On error nothing changed and revision() did not move.
  absl::Status Apply(const v1::WatchEvent& event);
  // AbortSnapshot drops a partially received snapshot (the stream broke).
  void AbortSnapshot();
  // RequireSnapshot marks the view unsynced until a snapshot completes.
  void RequireSnapshot();
  // SetStalenessLimit bounds the catalog lag a shard serves with (issue
  // 15): once set, CheckFresh() answers UNAVAILABLE when nothing, neither
  // an event nor a progress notification, was heard (MarkHeard) for more
  // than `max_staleness` on `clock`. Counting starts now. Zero: no bound.
  // `clock` is not owned and must outlive the view.
  void SetStalenessLimit(const Clock* clock, absl::Duration max_staleness);
  // MarkHeard records that the catalog source was just heard from (the
  // follower calls it for every event and progress notification).
  void MarkHeard();
  // staleness: time since the source was last heard (zero without a bound).
  absl::Duration staleness() const;
  absl::Status CheckFresh() const override;
  // Direct setters (tests, bootstrap).
  absl::Status PutTenant(const v1::Tenant& tenant);
  void PutDevice(const v1::Device& device);
  void PutGroup(const v1::DeviceGroup& group);
  void PutImage(const v1::Image& image);
  void PutDeployment(const v1::Deployment& deployment);
  void PutOsRelease(const v1::OsRelease& release);
  size_t device_count() const;

  absl::StatusOr<v1::Device> GetDevice(absl::string_view id) const override;
  absl::StatusOr<TenantCa> GetTenantCa(
      absl::string_view tenant_id) const override;
  absl::StatusOr<std::shared_ptr<const TenantCa>> GetSharedTenantCa(
      absl::string_view tenant_id) const override;
  absl::StatusOr<v1::DeviceGroup> GetDeviceGroup(
      absl::string_view group_id) const override;
  absl::StatusOr<v1::Image> FindImageByHash(
      absl::string_view hash) const override;
  absl::StatusOr<v1::Image> FindImageForTenant(
      absl::string_view hash, absl::string_view tenant_id) const override;
  std::map<std::string, v1::Image> ExpectedImages(
      const v1::Device& device) const override;
  absl::StatusOr<v1::OsRelease> CurrentOsRelease(
      const v1::Device& device) const override;
  absl::StatusOr<v1::Deployment> CurrentDeployment(
      absl::string_view group_id) const override;
  std::vector<std::string> DevicesInGroup(
      absl::string_view group_id) const override;
  int64_t revision() const override;
  bool synced() const override;

 private:
  // State is one complete copy of what the view serves.
  struct State {
    DeviceTable devices;  // compact: most of a shard's memory per device
    // Immutable once stored: a new tenant event replaces the pointer.
    absl::flat_hash_map<std::string, std::shared_ptr<const TenantCa>> tenants;
    absl::flat_hash_map<std::string, v1::DeviceGroup> groups;
    // measured hash -> every image with that hash (one per owner)
    absl::flat_hash_map<std::string, std::vector<v1::Image>> images_by_hash;
    // ImageOwnerKey(tenant, id) -> image
    absl::flat_hash_map<std::string, v1::Image> images_by_id;
    // group id -> latest deployment
    absl::flat_hash_map<std::string, v1::Deployment> deployments;
    // feed -> latest release (highest create_revision)
    std::map<int, v1::OsRelease> os_releases;
  };

  absl::StatusOr<std::shared_ptr<const TenantCa>> BuildTenantCa(
      const v1::Tenant& tenant) const;
  // ImagesWithHashLocked: the (non-empty) images with `hash`, or NotFound.
  absl::StatusOr<const std::vector<v1::Image>*> ImagesWithHashLocked(
      absl::string_view hash) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ReleaseForLocked: the latest release of `device`'s feed, or null.
  static const v1::OsRelease* ReleaseForLocked(const State& st,
                                               const v1::Device& device);
  static void ApplyTo(State& state, const v1::WatchEvent& event,
                      std::shared_ptr<const TenantCa> tenant);
  static void PutImageIn(State& state, const v1::Image& image);
  static void PutDeploymentIn(State& state, const v1::Deployment& deployment);
  static void PutOsReleaseIn(State& state, const v1::OsRelease& release);

  const std::string master_key_;
  mutable absl::Mutex mu_;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  bool synced_ ABSL_GUARDED_BY(mu_) = true;
  // Staleness bound (SetStalenessLimit); its own lock, so the follower's
  // MarkHeard never waits behind readers of the state.
  mutable absl::Mutex heard_mu_;
  const Clock* clock_ ABSL_GUARDED_BY(heard_mu_) = nullptr;
  absl::Duration max_staleness_ ABSL_GUARDED_BY(heard_mu_);
  absl::Time last_heard_ ABSL_GUARDED_BY(heard_mu_);
  std::unique_ptr<State> live_ ABSL_GUARDED_BY(mu_);
  // A snapshot being received; replaces live_ at snapshot_end.
  std::unique_ptr<State> staging_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::catalog

#endif  // SPHERE_SECURITYSVC_CATALOG_CATALOG_VIEW_H_
