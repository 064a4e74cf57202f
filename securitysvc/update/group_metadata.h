// Signed update metadata per device group, as UpdateService serves it.
//
// GroupMetadataCache builds the UpdateMetadata of a group from the catalog
// (the group's OS feed release, its deployment, its app update policy and
// the deployment's rollout stage), signs it once and keeps it until one of
// those inputs changes or it reaches half of its validity (then it is
// re-signed with a new expiry). Requests are answered from memory: the
// catalog revision is compared first, and only when it moved is the content
// recomputed and compared; a signature is made only when the content
// differs or the half-life passed.
//
// Signing format (protos/update.proto SignedUpdateMetadata): DER ECDSA P-256
// by the platform image-signing key over
// SHA-256("sphere-update-metadata-v1" || serialized UpdateMetadata).
//
// Where the key lives: the shard process already loads the platform
// image-signing key with the cluster PKI (pki::Load), and the metadata is a
// pure function of catalog data every shard follows; signing here keeps
// GetUpdates free of any call to management. The signer is an interface
// (MetadataSigner) so a management-side signer replicated through Watch can
// replace it without touching the service.
//
// metadata_version: the highest create_revision of the inputs (OS release,
// deployment), identical on every shard; when the content changes without a
// newer input revision (group policy edited, deployment halted, rollout
// fraction moved) it becomes the catalog revision at which the change was
// seen, which is larger than every earlier version.
//
// Rollout variants: a deployment with 0 < rollout_fraction < 1 gets two
// variants: devices in the stage (InRolloutStage) get the deployment's apps,
// the others get the metadata without them (they keep what they run).
//
// App update policy: UPDATE_ALL (or unset) lists OS + apps;
// NO_3RD_PARTY_APP_UPDATES lists OS images only; NO_UPDATES lists nothing.
//
// Thread-safety: thread-safe. Get never blocks; Build may block on package
// I/O (call it off gRPC callback threads).
#ifndef SPHERE_SECURITYSVC_UPDATE_GROUP_METADATA_H_
#define SPHERE_SECURITYSVC_UPDATE_GROUP_METADATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "common/util/clock.h"
#include "protos/update.pb.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/update/package_cache.h"

namespace sphere::update {

inline constexpr char kUpdateMetadataContext[] = "sphere-update-metadata-v1";

// MetadataSigner signs serialized UpdateMetadata.
class MetadataSigner {
 public:
  virtual ~MetadataSigner() = default;
  // Sign returns the DER signature over
  // SHA-256(kUpdateMetadataContext || metadata).
  virtual absl::StatusOr<std::string> Sign(
      absl::string_view metadata) const = 0;
};

// KeyMetadataSigner signs with the platform image-signing key.
class KeyMetadataSigner : public MetadataSigner {
 public:
  explicit KeyMetadataSigner(crypto::EcPrivateKey key) : key_(std::move(key)) {}
  absl::StatusOr<std::string> Sign(absl::string_view metadata) const override;

 private:
  const crypto::EcPrivateKey key_;
};

// VerifySignedMetadata checks `signed_metadata` under `public_key` (65-byte
// SEC1) and parses it (what a device does first; tests use it).
absl::StatusOr<v1::UpdateMetadata> VerifySignedMetadata(
    absl::string_view public_key,
    const v1::SignedUpdateMetadata& signed_metadata);

// InRolloutStage: whether `device_id` falls in the first `fraction` of the
// group: SHA-256("sphere-rollout-v1" || device_id) read as a number in
// [0, 1). Stable: a device in a stage stays in every larger stage.
// fraction <= 0 or >= 1 means the whole group.
bool InRolloutStage(absl::string_view device_id, double fraction);

// RolloutStage: UpdateMetadata.rollout_stage of the variant `device_id`
// gets for deployment `d`: the percent of the group the deployment targets
// (100 for a full rollout), 0 for a device outside a partial stage.
uint32_t RolloutStage(const v1::Deployment& d, absl::string_view device_id);

// GroupMetadata: one signed variant, immutable once built.
struct GroupMetadata {
  v1::UpdateMetadata metadata;
  // The prebuilt GetUpdates answer: the signed metadata and the deployment
  // id. The targets travel only inside the signed metadata (devices act
  // only on what verified); GetUpdatesResponse.targets is left empty, so a
  // client parses them once, not twice.
  v1::GetUpdatesResponse response;
  std::string response_bytes;  // `response` serialized, once
  absl::flat_hash_map<std::string, int> target_index;  // image_id -> target
  absl::Time issued;
  const v1::UpdateTarget* Find(absl::string_view image_id) const {
    auto it = target_index.find(image_id);
    return it == target_index.end() ? nullptr : &metadata.targets(it->second);
  }
};

// GroupVariant: which metadata a device gets.
struct GroupVariant {
  std::string group_id;
  bool in_stage = true;  // false: outside a partial rollout stage
};

class GroupMetadataCache {
 public:
  struct Options {
    absl::Duration validity = absl::Hours(24 * 7);
    // Device types the platform's images run on (UpdateTarget.hardware).
    std::vector<std::string> hardware = {"mt3620"};
  };

  // Everything passed must outlive the cache.
  GroupMetadataCache(const catalog::CatalogView* catalog,
                     PackageCache* packages, const MetadataSigner* signer,
                     const Clock* clock, Options options);

  // VariantFor: the variant a device of `group_id` gets (rollout stage from
  // the group's current deployment).
  GroupVariant VariantFor(absl::string_view group_id,
                          absl::string_view device_id) const;

  // Get: the current signed variant when it can be had without I/O (cached
  // and still valid, or rebuilt from cached package infos). Returns null when
  // a package must be read first: then call Build off the callback thread.
  // Errors: NotFound (unknown group), Internal (signing failed).
  absl::StatusOr<std::shared_ptr<const GroupMetadata>> Get(
      const GroupVariant& variant);
  // Build: like Get, reading packages as needed (may block).
  absl::StatusOr<std::shared_ptr<const GroupMetadata>> Build(
      const GroupVariant& variant);

  uint64_t signatures() const;  // signatures made so far (tests, metrics)

 private:
  struct Entry {
    int64_t validated_revision = -1;  // catalog revision last checked
    std::string content;  // serialized metadata without version/time fields
    std::shared_ptr<const GroupMetadata> signed_variant;
  };
  absl::StatusOr<std::shared_ptr<const GroupMetadata>> GetOrBuild(
      const GroupVariant& variant, bool allow_io);
  // PartialFraction: the group's current deployment's rollout_fraction
  // when it is a partial, running rollout, else 0; remembered per group
  // until the catalog revision moves (at most kMaxRememberedGroups groups,
  // emptied when full).
  double PartialFraction(absl::string_view group_id) const;
  static constexpr size_t kMaxRememberedGroups = 4096;
  struct RolloutFraction {
    int64_t revision = -1;  // catalog revision it was read at
    double fraction = 0;
  };
  // Content builds the unsigned metadata (version and times unset).
  // Returns null metadata (ok status) when a package info is missing and
  // !allow_io.
  absl::StatusOr<bool> Content(const GroupVariant& variant, bool allow_io,
                               v1::UpdateMetadata* out,
                               uint64_t* input_revision);

  const catalog::CatalogView* const catalog_;
  PackageCache* const packages_;
  const MetadataSigner* const signer_;
  const Clock* const clock_;
  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  mutable absl::flat_hash_map<std::string, RolloutFraction> fractions_
      ABSL_GUARDED_BY(mu_);
  uint64_t signatures_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_GROUP_METADATA_H_
