#include "securitysvc/update/group_metadata.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace sphere::update {

absl::StatusOr<std::string> KeyMetadataSigner::Sign(
    absl::string_view metadata) const {
  return key_.Sign(absl::StrCat(kUpdateMetadataContext, metadata));
}

absl::StatusOr<v1::UpdateMetadata> VerifySignedMetadata(
    absl::string_view public_key,
    const v1::SignedUpdateMetadata& signed_metadata) {
  if (auto s = crypto::EcdsaVerify(
          public_key,
          absl::StrCat(kUpdateMetadataContext, signed_metadata.metadata()),
          signed_metadata.signature());
      !s.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("update metadata signature: ", s.message()));
  }
  v1::UpdateMetadata m;
  if (!m.ParseFromString(signed_metadata.metadata())) {
    return absl::InvalidArgumentError("update metadata does not parse");
  }
  return m;
}

bool InRolloutStage(absl::string_view device_id, double fraction) {
  if (!(fraction > 0) || fraction >= 1) return true;
  const std::string h =
      crypto::Sha256(absl::StrCat("sphere-rollout-v1", device_id));
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(h[i]);
  // v / 2^64 < fraction, without floating-point rounding at the top end.
  return static_cast<long double>(v) <
         static_cast<long double>(fraction) * 18446744073709551616.0L;
}

namespace {

bool PartialRollout(const v1::Deployment& d) {
  return d.rollout_fraction() > 0 && d.rollout_fraction() < 1;
}

// RolloutPercent: UpdateMetadata.rollout_stage for a variant: the percent of
// the group the deployment targets (100 for a full rollout), 0 for devices
// outside a partial stage.
uint32_t RolloutPercent(const v1::Deployment& d, bool in_stage) {
  if (!PartialRollout(d)) return 100;
  if (!in_stage) return 0;
  return static_cast<uint32_t>(
      std::max(1.0, std::round(d.rollout_fraction() * 100)));
}

}  // namespace

uint32_t RolloutStage(const v1::Deployment& d, absl::string_view device_id) {
  return RolloutPercent(d, InRolloutStage(device_id, d.rollout_fraction()));
}

GroupMetadataCache::GroupMetadataCache(const catalog::CatalogView* catalog,
                                       PackageCache* packages,
                                       const MetadataSigner* signer,
                                       const Clock* clock, Options options)
    : catalog_(catalog),
      packages_(packages),
      signer_(signer),
      clock_(clock),
      options_(std::move(options)) {}

GroupVariant GroupMetadataCache::VariantFor(absl::string_view group_id,
                                            absl::string_view device_id) const {
  GroupVariant v;
  v.group_id = std::string(group_id);
  const double fraction = PartialFraction(group_id);
  if (fraction > 0) v.in_stage = InRolloutStage(device_id, fraction);
  return v;
}

double GroupMetadataCache::PartialFraction(absl::string_view group_id) const {
  // The group's deployment is read once per catalog revision (like the
  // signed variants' validation), not copied out of the catalog per call.
  const int64_t revision = catalog_->revision();
  {
    absl::MutexLock l(&mu_);
    auto it = fractions_.find(group_id);
    if (it != fractions_.end() && it->second.revision == revision) {
      return it->second.fraction;
    }
  }
  auto d = catalog_->CurrentDeployment(group_id);
  const double fraction =
      d.ok() && !d->halted() && PartialRollout(*d) ? d->rollout_fraction() : 0;
  absl::MutexLock l(&mu_);
  if (fractions_.size() >= kMaxRememberedGroups) fractions_.clear();
  fractions_[group_id] = RolloutFraction{revision, fraction};
  return fraction;
}

absl::StatusOr<bool> GroupMetadataCache::Content(const GroupVariant& variant,
                                                 bool allow_io,
                                                 v1::UpdateMetadata* out,
                                                 uint64_t* input_revision) {
  auto group = catalog_->GetDeviceGroup(variant.group_id);
  if (!group.ok()) return group.status();
  v1::Device stub;
  stub.set_tenant_id(group->tenant_id());
  stub.set_device_group_id(group->id());
  *input_revision = 0;
  if (auto rel = catalog_->CurrentOsRelease(stub); rel.ok()) {
    *input_revision =
        std::max<uint64_t>(*input_revision, rel->create_revision());
  }
  absl::flat_hash_set<std::string> deployment_images;
  bool include_deployment = false;
  auto dep = catalog_->CurrentDeployment(group->id());
  if (dep.ok()) {
    *input_revision =
        std::max<uint64_t>(*input_revision, dep->create_revision());
    include_deployment = !dep->halted() && variant.in_stage;
    deployment_images.insert(dep->image_ids().begin(), dep->image_ids().end());
  }
  const v1::AppUpdatePolicy policy = group->app_update_policy();
  const bool include_os = policy != v1::NO_UPDATES;
  const bool include_apps =
      policy == v1::UPDATE_ALL || policy == v1::APP_UPDATE_POLICY_UNSPECIFIED;
  include_deployment = include_deployment && include_apps;

  out->Clear();
  out->set_format_version(1);
  out->set_tenant_id(group->tenant_id());
  out->set_device_group_id(group->id());
  if (dep.ok()) {
    if (include_deployment) out->set_deployment_id(dep->id());
    out->set_rollout_stage(RolloutPercent(*dep, variant.in_stage));
  }
  // ExpectedImages is what attestation holds the group to (latest release
  // of the feed + the deployment unless halted), one image per component.
  for (const auto& [component, image] : catalog_->ExpectedImages(stub)) {
    const bool is_app = !image.tenant_id().empty();
    if (is_app) {
      if (!include_deployment || !deployment_images.contains(image.id())) {
        continue;
      }
    } else if (!include_os) {
      continue;
    }
    std::optional<PackageInfo> info = packages_->CachedInfo(image.id());
    if (!info) {
      if (!allow_io) return false;
      auto pkg = packages_->Load(image.id());
      if (!pkg.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat("no package for image ", image.id(), " (", component,
                         "): ", pkg.status().message()));
      }
      info = packages_->CachedInfo(image.id());
      if (!info) return absl::InternalError("package info vanished");
    }
    v1::UpdateTarget* t = out->add_targets();
    t->set_image_id(image.id());
    t->set_component(image.component());
    t->set_version(image.version());
    t->set_image_hash(image.image_hash());
    t->set_size(image.size());
    t->set_package_size(info->size);
    t->set_package_sha256(info->sha256);
    for (const auto& hw : options_.hardware) t->add_hardware(hw);
    t->set_kind(image.kind());
    t->set_tenant_id(image.tenant_id());
  }
  return true;
}

absl::StatusOr<std::shared_ptr<const GroupMetadata>> GroupMetadataCache::Get(
    const GroupVariant& variant) {
  return GetOrBuild(variant, /*allow_io=*/false);
}

absl::StatusOr<std::shared_ptr<const GroupMetadata>> GroupMetadataCache::Build(
    const GroupVariant& variant) {
  return GetOrBuild(variant, /*allow_io=*/true);
}

absl::StatusOr<std::shared_ptr<const GroupMetadata>>
GroupMetadataCache::GetOrBuild(const GroupVariant& variant, bool allow_io) {
  const std::string key = variant.in_stage
                              ? variant.group_id
                              : absl::StrCat(variant.group_id, "#out");
  const int64_t revision = catalog_->revision();
  const absl::Time now = clock_->Now();
  const absl::Duration half_life = options_.validity / 2;
  {
    absl::MutexLock l(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.signed_variant != nullptr &&
        it->second.validated_revision == revision &&
        now < it->second.signed_variant->issued + half_life) {
      return it->second.signed_variant;
    }
  }
  v1::UpdateMetadata m;
  uint64_t input_revision = 0;
  auto complete = Content(variant, allow_io, &m, &input_revision);
  if (!complete.ok()) return complete.status();
  if (!*complete) return std::shared_ptr<const GroupMetadata>();
  const std::string content = m.SerializeAsString();

  absl::MutexLock l(&mu_);
  Entry& e = entries_[key];
  if (e.signed_variant != nullptr && e.content == content &&
      now < e.signed_variant->issued + half_life) {
    e.validated_revision = std::max(e.validated_revision, revision);
    return e.signed_variant;
  }
  uint64_t version = std::max<uint64_t>(input_revision, 1);
  if (e.signed_variant != nullptr) {
    const uint64_t prev = e.signed_variant->metadata.metadata_version();
    if (e.content == content) {
      version = prev;  // re-signed for a new expiry; same targets
    } else if (version <= prev) {
      version = std::max<uint64_t>(static_cast<uint64_t>(revision), prev + 1);
    }
  }
  m.set_metadata_version(version);
  m.set_issued_unix_ms(absl::ToUnixMillis(now));
  m.set_expires_unix_ms(absl::ToUnixMillis(now + options_.validity));
  auto g = std::make_shared<GroupMetadata>();
  g->metadata = m;
  g->issued = now;
  v1::SignedUpdateMetadata* sm = g->response.mutable_signed_metadata();
  sm->set_metadata(m.SerializeAsString());
  auto sig = signer_->Sign(sm->metadata());
  if (!sig.ok()) {
    return absl::InternalError(
        absl::StrCat("signing update metadata: ", sig.status().message()));
  }
  sm->set_signature(*sig);
  ++signatures_;
  g->response.set_deployment_id(m.deployment_id());
  for (int i = 0; i < g->metadata.targets_size(); ++i) {
    g->target_index[g->metadata.targets(i).image_id()] = i;
  }
  g->response_bytes = g->response.SerializeAsString();
  e.content = content;
  e.validated_revision = revision;
  e.signed_variant = std::move(g);
  return e.signed_variant;
}

uint64_t GroupMetadataCache::signatures() const {
  absl::MutexLock l(&mu_);
  return signatures_;
}

}  // namespace sphere::update
