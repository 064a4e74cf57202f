// Catalog: the management plane's core (no gRPC). It owns tenants (each with
// its own P-256 CA, the private key stored only wrapped under the cluster
// master key), products and their device groups, the factory registry of
// device public keys, device claims/assignment/revocation/transfer, image,
// deployment and OS-release records, and the shard map.
//
// Storage is a RevisionLog (revision_log.h): the embedded store (default) or
// etcd. Every mutation is one RevisionLog::Txn that carries both the new
// records and the change-log entries (one revision per event), so a crash
// never leaves a change without its log entry; the Txn compares the mod
// revision of the catalog's revision key with the one this catalog last saw,
// so when several management replicas share one log (etcd) exactly one of two
// racing mutations (two claims of one device, two transfer approvals) wins
// and the other answers Aborted with nothing changed. A catalog on a shared
// log follows it with RevisionLog::Watch, so its watchers also see what the
// other replicas commit. Every input is checked against limits.h
// before the batch is written, and Commit refuses any record above
// limits::kMaxRecordBytes or event above limits::kMaxWatchEventBytes: a
// refused write changes nothing and does not advance the revision. Watchers
// follow the log from a revision; a revision older than the compacted history
// gets a full snapshot first. A watch is a pull-based WatchStream: snapshots
// and replays are read page by page outside the catalog mutex, so a
// million-device snapshot never holds it; only live events are queued (bounded)
// by the committing thread.
//
// Layout (catalog_internal.h): records are keyed by tenant (then product or
// group), so every List is a prefix scan of one tenant and reads one page
// (page_size / page_token, catalog_internal.h); names are unique ignoring
// case through a lower-cased name index. The class is implemented one file
// per resource: catalog.cc (open, transactions, following a shared log,
// compaction), catalog_tenants.cc, catalog_products.cc (products and device
// groups), catalog_devices.cc (factory registry, claims, assignment,
// revocation, transfers), catalog_images.cc, catalog_deployments.cc
// (deployments and staged rollout), catalog_os_releases.cc,
// catalog_shards.cc and catalog_watch.cc; the access checks of all of them
// are in catalog_access.cc.
//
// Access control: every method takes the Caller. A tenant operator sees and
// changes only its own tenant's objects: another tenant's product, group,
// image or device answers NotFound exactly like a missing one (and an
// unclaimed device like a missing one); naming a tenant other than its own
// answers PermissionDenied without looking it up. Only platform operators
// and shards read the shard map. Platform operators see
// everything except wrapped CA keys, which only internal callers (shards)
// receive. Internal callers get least privilege: OpenWatch, RegisterShard,
// GetShardMap, GetTenant, GetDevice and RevokeDevice (recorded with an
// "automatic: " reason) only; every other method answers PermissionDenied
// naming the operation.
//
// Thread-safety: all methods may be called concurrently. Mutations are
// serialised by one mutex; live watch events are queued under it (see
// OpenWatch).
//
// Example:
//   auto catalog = *Catalog::Open(store, clock, {root_key, root_pem, master});
//   Caller op = Caller::PlatformOperator();
//   auto tenant = *catalog->CreateTenant(op, "Contoso");
//   auto product = *catalog->CreateProduct(op, tenant.id(), "DW100", "");
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "protos/management.pb.h"
#include "securitysvc/catalog/tenant_ca_key.h"
#include "securitysvc/management/limits.h"
#include "securitysvc/management/revision_log.h"

namespace sphere::management {

// Caller is who is asking, derived from the mTLS peer certificate.
struct Caller {
  enum class Kind { kTenantOperator, kPlatformOperator, kInternal };
  Kind kind = Kind::kTenantOperator;
  std::string tenant_id;  // kTenantOperator only

  static Caller TenantOperator(std::string tenant_id) {
    return {Kind::kTenantOperator, std::move(tenant_id)};
  }
  static Caller PlatformOperator() { return {Kind::kPlatformOperator, ""}; }
  static Caller Internal() { return {Kind::kInternal, ""}; }
  bool is_tenant() const { return kind == Kind::kTenantOperator; }
  bool is_internal() const { return kind == Kind::kInternal; }
  // Platform operators and internal callers (shards) see every tenant.
  bool is_platform() const { return kind != Kind::kTenantOperator; }
};

struct CatalogOptions {
  crypto::EcPrivateKey root_key;  // platform root CA key: signs tenant CAs
  std::string root_cert_pem;      // platform root CA certificate
  std::string master_key;         // 32 bytes: wraps tenant CA keys
  uint32_t virtual_nodes = 64;    // consistent-hash points per shard
  absl::Duration tenant_ca_validity = absl::Hours(24 * 365 * 10);
  absl::Duration operator_credential_validity = absl::Hours(24 * 365);
  // Per-tenant image quota (distinct images; sum of payload sizes).
  size_t max_images_per_tenant = limits::kDefaultMaxImagesPerTenant;
  uint64_t max_image_bytes_per_tenant = limits::kDefaultMaxImageBytesPerTenant;
  // rollout_fraction of a new deployment: 1 (everyone at once) unless
  // management runs staged rollouts (then the first stage, e.g. 0.01).
  double new_deployment_rollout_fraction = 1.0;
};

struct ImportResult {
  uint64_t imported = 0;
  uint64_t already_known = 0;
};

// The tenant-CA key wrap has one owner, securitysvc/catalog/tenant_ca_key.h
// (shards unwrap with the same functions).
using catalog::UnwrapTenantCaKey;
using catalog::WrapTenantCaKey;

// IsValidDevicePublicKey: 65 bytes, uncompressed SEC1 (0x04 prefix).
bool IsValidDevicePublicKey(absl::string_view public_key);
// DeviceIdForKey: lowercase hex SHA-256 of the public key.
std::string DeviceIdForKey(absl::string_view public_key);

class Catalog {
 public:
  // The column families the catalog's store must have.
  static std::vector<std::string> ColumnFamilies();

  // Open loads the revision counters from `store` (which must outlive the
  // catalog and have ColumnFamilies()). `clock` must outlive it too. The
  // catalog stores through an EmbeddedRevisionLog over `store`.
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(store::Store* store,
                                                       Clock* clock,
                                                       CatalogOptions options);
  // Open on any RevisionLog (which must outlive the catalog). On a shared log
  // (etcd) the catalog follows the other writers' commits.
  static absl::StatusOr<std::unique_ptr<Catalog>> Open(RevisionLog* log,
                                                       Clock* clock,
                                                       CatalogOptions options);
  ~Catalog();

  // ---- Tenants ---------------------------------------------------------
  absl::StatusOr<v1::Tenant> CreateTenant(const Caller& caller,
                                          absl::string_view name);
  // Every List reads one page (request.page_size: 0 = 100, at most 1000;
  // request.page_token: the previous response's next_page_token, refused
  // with InvalidArgument when malformed or from another listing) in key
  // order; next_page_token is empty on the last page. A record that exists
  // for the whole paging is returned exactly once, whatever is inserted
  // meanwhile. ListTenants: a tenant operator sees only its own tenant.
  absl::StatusOr<v1::ListTenantsResponse> ListTenants(
      const Caller& caller, const v1::ListTenantsRequest& request = {});
  // `tenant` is an id or a name; empty means the caller's own tenant.
  absl::StatusOr<v1::Tenant> GetTenant(const Caller& caller,
                                       absl::string_view tenant);
  // IssueOperatorCredential: platform operators only. Issues a client
  // certificate (signed by the platform root) for `public_key` carrying the
  // claim urn:sphere:tenant:<id>.
  absl::StatusOr<std::string> IssueOperatorCredential(
      const Caller& caller, absl::string_view tenant,
      absl::string_view operator_name, absl::string_view public_key);
  absl::StatusOr<v1::CaCertificate> GetCaCertificate(const Caller& caller,
                                                     absl::string_view tenant);

  // ---- Products and device groups ---------------------------------------
  // CreateProduct also creates the five default device groups.
  absl::StatusOr<v1::Product> CreateProduct(const Caller& caller,
                                            absl::string_view tenant,
                                            absl::string_view name,
                                            absl::string_view description);
  absl::StatusOr<v1::ListProductsResponse> ListProducts(
      const Caller& caller, const v1::ListProductsRequest& request);
  // `product` is an id or a name.
  absl::StatusOr<v1::Product> GetProduct(const Caller& caller,
                                         absl::string_view tenant,
                                         absl::string_view product);

  absl::StatusOr<v1::DeviceGroup> CreateDeviceGroup(
      const Caller& caller, const v1::CreateDeviceGroupRequest& request);
  absl::StatusOr<v1::ListDeviceGroupsResponse> ListDeviceGroups(
      const Caller& caller, const v1::ListDeviceGroupsRequest& request);
  // `group` is an id, or "<product>/<group name>".
  absl::StatusOr<v1::DeviceGroup> GetDeviceGroup(const Caller& caller,
                                                 absl::string_view tenant,
                                                 absl::string_view group);
  absl::StatusOr<v1::DeviceGroup> UpdateDeviceGroup(
      const Caller& caller, const v1::UpdateDeviceGroupRequest& request);

  // ---- Factory registry and devices -------------------------------------
  // ImportDevices records factory public keys (platform operators only). It
  // is idempotent: a key already recorded counts as already_known. The whole
  // call is one atomic batch; any invalid key rejects the call unchanged.
  absl::StatusOr<ImportResult> ImportDevices(
      const Caller& caller, const std::vector<v1::FactoryDevice>& devices);

  absl::StatusOr<v1::Device> ClaimDevice(const Caller& caller,
                                         absl::string_view tenant,
                                         absl::string_view device_id);
  // ClaimDevices claims a batch of devices in one transaction (one synced
  // write, one revision, one claimed_devices event). Each id is checked like
  // ClaimDevice; the batch is atomic: an id that is malformed or repeated
  // (InvalidArgument), unregistered or another tenant's (NotFound, alike)
  // refuses the whole batch with nothing changed, as does an empty batch or
  // one above limits::kMaxDevicesPerClaim (InvalidArgument). Devices the
  // tenant already owns count as already_claimed and stay as they are. A
  // non-empty `group` (id or PRODUCT/GROUP) is resolved first (NotFound) and
  // every newly claimed device joins it in the same transaction.
  struct ClaimResult {
    uint64_t claimed = 0;
    uint64_t already_claimed = 0;
    int64_t revision = 0;  // the catalog revision that includes the batch
  };
  absl::StatusOr<ClaimResult> ClaimDevices(
      const Caller& caller, absl::string_view tenant,
      const std::vector<std::string>& device_ids, absl::string_view group);
  // ListDevices pages through the tenant's devices in id order.
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(
      const Caller& caller, const v1::ListDevicesRequest& request);
  absl::StatusOr<v1::Device> GetDevice(const Caller& caller,
                                       absl::string_view tenant,
                                       absl::string_view device_id);
  absl::StatusOr<v1::Device> AssignDevice(const Caller& caller,
                                          absl::string_view tenant,
                                          absl::string_view device_id,
                                          absl::string_view group);
  absl::StatusOr<v1::Device> RevokeDevice(const Caller& caller,
                                          absl::string_view tenant,
                                          absl::string_view device_id,
                                          absl::string_view reason);
  absl::StatusOr<v1::Device> RequestDeviceTransfer(const Caller& caller,
                                                   absl::string_view tenant,
                                                   absl::string_view device_id,
                                                   absl::string_view to_tenant);
  // AcceptDeviceTransfer moves the device to the accepting tenant, increments
  // its ownership_epoch, clears product and group, and emits a
  // revoked_device_id event so shards drop credentials of the old owner.
  absl::StatusOr<v1::Device> AcceptDeviceTransfer(const Caller& caller,
                                                  absl::string_view tenant,
                                                  absl::string_view device_id);

  // ---- Images, deployments, OS releases (records only) ------------------
  // Images belong to their uploader: a tenant's images are stored under its
  // id (ImageKey), so another tenant's byte-identical upload is a separate
  // record, deployments name only the tenant's own images, and OS releases
  // only platform images.
  //
  // CheckImageQuota answers, before a package of `package_bytes` is
  // processed or stored, whether it may be: InvalidArgument when it exceeds
  // limits::kMaxImagePackageBytes, ResourceExhausted when the tenant's image
  // quota (count or bytes, CatalogOptions) is used up. RecordImage checks
  // the quota again when it commits.
  absl::Status CheckImageQuota(const Caller& caller, absl::string_view tenant,
                               uint64_t package_bytes);
  // RecordImage stores an image already verified and re-signed by the image
  // pipeline. An empty tenant_id is a platform OS image (platform only).
  absl::StatusOr<v1::Image> RecordImage(const Caller& caller,
                                        const v1::Image& image);
  // ListImages: a platform operator naming no tenant pages through every
  // tenant's images and the platform's.
  absl::StatusOr<v1::ListImagesResponse> ListImages(
      const Caller& caller, const v1::ListImagesRequest& request);
  absl::StatusOr<v1::Deployment> CreateDeployment(
      const Caller& caller, const v1::CreateDeploymentRequest& request);
  absl::StatusOr<v1::ListDeploymentsResponse> ListDeployments(
      const Caller& caller, const v1::ListDeploymentsRequest& request);
  absl::StatusOr<v1::OsRelease> ReleaseOs(const Caller& caller,
                                          const v1::ReleaseOsRequest& request);

  // ---- Staged rollout (management's RolloutController) ------------------
  // SetDeploymentRollout writes update's rollout_fraction, halted,
  // halt_reason and rollout_status into the stored deployment update.id()
  // and emits it (one revision), so shards serve the new stage. Platform
  // operators only (management's controller). NotFound for an unknown
  // deployment; InvalidArgument (nothing changed) for a fraction outside
  // [0, 1], a halt_reason over limits::kMaxRolloutReasonBytes or a
  // rollout_status over limits::kMaxRolloutStatusBytes.
  absl::StatusOr<v1::Deployment> SetDeploymentRollout(
      const Caller& caller, const v1::Deployment& update);
  // GetDeployment: one deployment of the caller's tenant (NotFound for
  // another tenant's, exactly like a missing one).
  absl::StatusOr<v1::Deployment> GetDeployment(const Caller& caller,
                                               absl::string_view tenant,
                                               absl::string_view id);
  // AllDeployments: every tenant's deployments (platform operators only).
  absl::StatusOr<std::vector<v1::Deployment>> AllDeployments(
      const Caller& caller);

  // ---- Shard map ----------------------------------------------------------
  absl::StatusOr<v1::ShardMap> RegisterShard(const Caller& caller,
                                             const v1::Shard& shard);
  absl::StatusOr<v1::ShardMap> GetShardMap(const Caller& caller);
  // RemoveShard takes a shard out of the map (its lease expired: see
  // shard_leases.h); NotFound if it is not in the map. Platform operators
  // and internal callers. Its devices follow the new ring.
  absl::StatusOr<v1::ShardMap> RemoveShard(const Caller& caller,
                                           absl::string_view shard_id);

  // ---- Change log ---------------------------------------------------------
  class WatchStream;
  struct WatchOptions {
    // Live events buffered for a watcher that is not pulling them; one more
    // ends its stream with ResourceExhausted (it resumes from its last
    // revision + 1). Snapshot and replay are pulled page by page and never
    // count against it.
    size_t live_queue_limit = 65536;
    // wakeup is called when a stream whose Next returned an empty page has
    // something new (events or an error). It runs under the catalog mutex:
    // it must not block and may call nothing on the Catalog except this
    // stream's Next (which, once a stream is live, takes only the stream's
    // own lock).
    std::function<void()> wakeup;
  };

  // OpenWatch starts a watch of every event with revision >= start_revision.
  // If start_revision <= 0 or older than the compacted revision, the stream
  // first yields the full catalog as of its current revision R (events with
  // snapshot=true and revision R, closed by one with snapshot_end=true and no
  // change), then every event after R. Platform operators and internal
  // callers (shards) only; only internal callers receive wrapped tenant CA
  // keys. Opening does no more than O(1) work under the catalog mutex: the
  // snapshot is read from a store snapshot and the replay from the log, page
  // by page, by WatchStream::Next without the catalog mutex. The returned
  // stream must not outlive the Catalog.
  absl::StatusOr<std::unique_ptr<WatchStream>> OpenWatch(const Caller& caller,
                                                         int64_t start_revision,
                                                         WatchOptions options);

  // Compact drops log entries with revision < `revision` (which must be in
  // [1, current revision + 1]). Watches from older revisions then get a
  // snapshot.
  absl::Status Compact(int64_t revision);

  int64_t revision() const;
  int64_t compacted_revision() const;

  // ---- Deletes --------------------------------------------------------------
  // Each removes one object and emits a deleted_* watch event. NotFound for
  // what the caller cannot see (another tenant's objects included);
  // FailedPrecondition while in use: a product or device group that still
  // has devices or deployments (deleting a product deletes its empty
  // groups), an image that a deployment or an OS release names. Deleting a
  // deployment re-emits the group's newest remaining deployment, if any.
  // DeleteImage with an empty tenant (platform operators) deletes a platform
  // OS image.
  absl::Status DeleteProduct(const Caller& caller, absl::string_view tenant,
                             absl::string_view product);
  absl::Status DeleteDeviceGroup(const Caller& caller, absl::string_view tenant,
                                 absl::string_view group);
  absl::Status DeleteDeployment(const Caller& caller, absl::string_view tenant,
                                absl::string_view deployment_id);
  absl::Status DeleteImage(const Caller& caller, absl::string_view tenant,
                           absl::string_view image_id);

 public:
  // Txn: one mutation's records and events (catalog_internal.h; only the
  // catalog's own files can use it).
  class Txn;

 private:
  Catalog(RevisionLog* log, Clock* clock, CatalogOptions options);
  // CatchUpLocked (shared logs) reads the log's revision key and the change
  // log after revision_, notifies live watchers and advances revision_.
  absl::Status CatchUpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OnLogChanges applies one Txn of a shared log seen by the follower watch.
  void OnLogChanges(int64_t log_revision,
                    const std::vector<RevisionLog::Change>& changes);
  // FailLiveWatchersLocked ends every live watch with `status`.
  void FailLiveWatchersLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status Commit(Txn& txn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RecordDeviceWritesLocked notes the device ids a successful commit wrote
  // (recent_device_writes_) and advances device_write_seq_.
  void RecordDeviceWritesLocked(const store::WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // DevicesWrittenSinceLocked: the ids written by commits after sequence
  // number `seq` (device_write_seq_ as read before an unlocked read), or
  // nullopt when some of those commits are no longer remembered. The views
  // point into recent_device_writes_: valid while mu_ is held.
  std::optional<absl::flat_hash_set<absl::string_view>> DevicesWrittenSinceLocked(
      uint64_t seq) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckImageQuotaLocked(const v1::Tenant& tenant,
                                     const v1::Image& image)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Notify queues `event` on every live watch stream, dropping those that
  // overflow.
  void Notify(const v1::WatchEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Lookups. Each returns an error message fit for the caller.
  absl::StatusOr<v1::Tenant> FindTenant(absl::string_view id_or_name);
  absl::StatusOr<v1::Tenant> ResolveTenant(const Caller& caller,
                                           absl::string_view tenant);
  absl::StatusOr<v1::Product> FindProduct(const v1::Tenant& tenant,
                                          absl::string_view id_or_name);
  absl::StatusOr<v1::DeviceGroup> FindGroup(const v1::Tenant& tenant,
                                            absl::string_view group);
  // FindGroupById: the tenant's group `group_id` (nullopt if none).
  absl::StatusOr<std::optional<v1::DeviceGroup>> FindGroupById(
      const v1::Tenant& tenant, absl::string_view group_id);
  absl::StatusOr<v1::Device> LoadDevice(absl::string_view device_id);
  absl::StatusOr<v1::Device> FindOwnedDevice(const v1::Tenant& tenant,
                                             absl::string_view device_id);
  // FindDeployment: deployment `id` (nullopt if none) and its key.
  absl::StatusOr<std::optional<std::pair<std::string, v1::Deployment>>>
  FindDeployment(absl::string_view id);
  // CheckGroupsUnused is FailedPrecondition (naming `what`) while a device
  // is in, or a deployment targets, one of `group_ids` (one prefix scan of
  // at most one key per group and index).
  absl::Status CheckGroupsUnused(const v1::Tenant& tenant,
                                 const std::vector<std::string>& group_ids,
                                 absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The storage seam (named store_ as before the seam existed).
  RevisionLog* const store_;
  std::unique_ptr<RevisionLog> owned_log_;  // set by Open(store::Store*)
  Clock* const clock_;
  const CatalogOptions options_;

  mutable absl::Mutex mu_;
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t compacted_ ABSL_GUARDED_BY(mu_) = 0;
  // The log's mod revision of the revision key as of revision_: every Txn
  // compares on it.
  int64_t revision_mod_ ABSL_GUARDED_BY(mu_) = 0;
  // Follows a shared log (other replicas' commits); null on the embedded log.
  std::unique_ptr<RevisionLog::Watcher> follower_;
  // Live watch streams (caught up with the log); each removes itself.
  std::set<WatchStream*> live_watchers_ ABSL_GUARDED_BY(mu_);
  // First 8 bytes of every registered device id: lets ImportDevices skip the
  // store lookup for keys that are certainly new (a hit still checks the
  // store). ~20 MB per million devices; filled by Open.
  absl::flat_hash_set<uint64_t> known_device_prefixes_ ABSL_GUARDED_BY(mu_);
  // Bulk claims read their devices before taking mu_ (catalog_claims.cc)
  // and read again, under mu_, only those a commit wrote meanwhile.
  // device_write_seq_ counts commits that wrote device records (written
  // under mu_ after the store write, read without it); recent_device_writes_
  // holds the ids each of the latest of them wrote, oldest first, at most
  // kRecentDeviceWriteIds ids in all (~100 bytes each).
  static constexpr size_t kRecentDeviceWriteIds = 16384;
  struct DeviceWrites {
    uint64_t seq = 0;
    std::vector<std::string> ids;
  };
  std::atomic<uint64_t> device_write_seq_{0};
  std::deque<DeviceWrites> recent_device_writes_ ABSL_GUARDED_BY(mu_);
  size_t recent_device_write_ids_ ABSL_GUARDED_BY(mu_) = 0;
};

// Catalog::WatchStream is one watcher's cursor over the catalog: snapshot
// (read from a store snapshot), then replay (read from the change log), then
// live events (queued by the catalog as they commit, bounded). The consumer
// pulls with Next; nothing is pushed to it except the wakeup signal, so a
// slow consumer of a snapshot or replay simply reads more slowly.
//
// Thread-safety: Next must not be called concurrently with itself; the
// catalog queues live events from its own threads. Destroying the stream
// stops live delivery (no wakeup runs after the destructor returns).
class Catalog::WatchStream {
 public:
  ~WatchStream();
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;

  // Next appends up to `max_events` (> 0) events to `out`, in revision
  // order. An OK result with nothing appended means the stream is live and
  // has nothing queued: options.wakeup fires when that changes. Errors end
  // the stream: ResourceExhausted when the live queue overflowed, Aborted
  // when compaction removed log entries the stream still had to replay, or
  // the store's read error; each message says how to resume.
  absl::Status Next(size_t max_events, std::vector<v1::WatchEvent>* out);

  // NextRevision is the revision of the first event after those returned so
  // far (the snapshot revision + 1 once the snapshot ended; 0 before).
  int64_t NextRevision() const;

 private:
  friend class Catalog;
  enum class Phase { kSnapshot, kReplay, kLive, kFailed };

  WatchStream(Catalog* catalog, Caller caller, WatchOptions options);
  // Visible strips what the caller may not see (wrapped CA keys).
  v1::WatchEvent Visible(v1::WatchEvent event) const;
  absl::Status Fail(absl::Status status);
  absl::Status SnapshotPage(size_t max_events,
                            std::vector<v1::WatchEvent>* out);
  absl::Status ReplayPage(size_t max_events, std::vector<v1::WatchEvent>* out);
  // TryGoLive registers the stream for live events if it has read the whole
  // log; returns false when more log entries appeared meanwhile.
  absl::StatusOr<bool> TryGoLive();
  // Push queues a live event (catalog mutex held); false drops the stream.
  // Events older than the stream's position (a snapshot from a shared log
  // may be newer than this catalog's revision) are skipped.
  bool Push(const v1::WatchEvent& event);
  // Kill ends a live stream with `status` (catalog mutex held).
  void Kill(const absl::Status& status);

  Catalog* const catalog_;
  const Caller caller_;
  const WatchOptions options_;

  // Snapshot and replay state: touched only by Next.
  std::unique_ptr<RevisionLog::Snapshot> snapshot_;
  int64_t snapshot_revision_ = 0;
  size_t section_ = 0;      // index into the snapshot's sections
  std::string resume_key_;  // first key of section_ still to read

  mutable absl::Mutex mu_;  // after Catalog::mu_ in lock order
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kReplay;
  int64_t next_revision_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t push_floor_ ABSL_GUARDED_BY(mu_) = 0;  // next live revision wanted
  std::deque<v1::WatchEvent> live_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  bool wake_armed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_H_
