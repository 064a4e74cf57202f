#include "securitysvc/catalog/catalog_view.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sphere::catalog {
namespace {

absl::Status OtherTenantsImage(absl::string_view hash) {
  return absl::PermissionDeniedError(absl::StrCat(
      "image ", crypto::HexEncode(hash).substr(0, 16),
      "... is an application the platform signed for another tenant; a "
      "device runs only its own tenant's applications and platform OS "
      "images"));
}

}  // namespace

absl::StatusOr<v1::Image> CatalogView::FindImageForTenant(
    absl::string_view hash, absl::string_view tenant_id) const {
  absl::StatusOr<v1::Image> image = FindImageByHash(hash);
  if (!image.ok()) return image;
  if (image->tenant_id().empty() || image->tenant_id() == tenant_id) {
    return image;
  }
  return OtherTenantsImage(hash);
}

InMemoryCatalog::InMemoryCatalog(std::string master_key)
    : master_key_(std::move(master_key)), live_(std::make_unique<State>()) {}

absl::StatusOr<std::shared_ptr<const TenantCa>> InMemoryCatalog::BuildTenantCa(
    const v1::Tenant& tenant) const {
  TenantCa ca;
  ca.tenant_id = tenant.id();
  ca.name = tenant.name();
  ca.ca_cert_pem = tenant.ca_certificate_pem();
  if (!tenant.wrapped_ca_key().empty()) {
    auto key =
        UnwrapTenantCaKey(master_key_, tenant.id(), tenant.wrapped_ca_key());
    if (!key.ok()) return key.status();
    ca.ca_key = std::move(*key);
    // Parse the CA certificate and build the signing key once here, not per
    // issued certificate. A mismatch is not an error for the catalog: it
    // surfaces (as before) when a certificate is to be issued.
    auto issuer = crypto::CertificateIssuer::Create(ca.ca_key, ca.ca_cert_pem);
    if (issuer.ok()) {
      ca.issuer = *std::move(issuer);
    } else {
      ca.issuer_status = issuer.status();
    }
  }
  return std::make_shared<const TenantCa>(std::move(ca));
}

void InMemoryCatalog::ApplyTo(State& state, const v1::WatchEvent& event,
                              std::shared_ptr<const TenantCa> tenant) {
  switch (event.change_case()) {
    case v1::WatchEvent::kTenant:
      state.tenants[event.tenant().id()] = std::move(tenant);
      break;
    case v1::WatchEvent::kProduct:
      break;  // shards need only groups
    case v1::WatchEvent::kDeviceGroup:
      state.groups[event.device_group().id()] = event.device_group();
      break;
    case v1::WatchEvent::kDevice:
      state.devices.Put(event.device());
      break;
    case v1::WatchEvent::kClaimedDevices:  // a bulk claim: one revision
      for (const v1::Device& d : event.claimed_devices().devices()) {
        state.devices.Put(d);
      }
      break;
    case v1::WatchEvent::kImage:
      PutImageIn(state, event.image());
      break;
    case v1::WatchEvent::kDeployment:
      PutDeploymentIn(state, event.deployment());
      break;
    case v1::WatchEvent::kOsRelease:
      PutOsReleaseIn(state, event.os_release());
      break;
    case v1::WatchEvent::kRevokedDeviceId: {
      state.devices.SetState(event.revoked_device_id(), v1::REVOKED);
      break;
    }
    case v1::WatchEvent::kDeletedDeviceGroupId:
      state.groups.erase(event.deleted_device_group_id());
      state.deployments.erase(event.deleted_device_group_id());
      break;
    case v1::WatchEvent::kDeletedDeploymentId:
      // Management re-sends the group's previous deployment, if any, next.
      for (auto it = state.deployments.begin(); it != state.deployments.end();
           ++it) {
        if (it->second.id() == event.deleted_deployment_id()) {
          state.deployments.erase(it);
          break;
        }
      }
      break;
    case v1::WatchEvent::kDeletedImageId: {
      // The event names the owner key (ImageOwnerKey).
      auto it = state.images_by_id.find(event.deleted_image_id());
      if (it == state.images_by_id.end()) break;
      const v1::Image gone = it->second;
      state.images_by_id.erase(it);
      auto by_hash = state.images_by_hash.find(gone.image_hash());
      if (by_hash != state.images_by_hash.end()) {
        std::vector<v1::Image>& same = by_hash->second;
        same.erase(std::remove_if(same.begin(), same.end(),
                                  [&](const v1::Image& i) {
                                    return i.id() == gone.id() &&
                                           i.tenant_id() == gone.tenant_id();
                                  }),
                   same.end());
        if (same.empty()) state.images_by_hash.erase(by_hash);
      }
      break;
    }
    default:
      break;
  }
}

absl::Status InMemoryCatalog::Apply(const v1::WatchEvent& event) {
  // The only step that can fail (unwrapping a tenant CA key) runs first,
  // outside the lock: on failure nothing changed.
  std::shared_ptr<const TenantCa> tenant;
  if (event.has_tenant()) {
    auto ca = BuildTenantCa(event.tenant());
    if (!ca.ok()) return ca.status();
    tenant = *std::move(ca);
  }
  std::unique_ptr<State> replaced;  // destroyed outside the lock
  absl::MutexLock l(&mu_);
  if (event.snapshot()) {
    if (staging_ == nullptr) staging_ = std::make_unique<State>();
    ApplyTo(*staging_, event, std::move(tenant));
    if (event.snapshot_end() && event.revision() < revision_) {
      // An older snapshot would move the view back in time: refuse it.
      replaced = std::move(staging_);
      return absl::FailedPreconditionError(
          absl::StrCat("catalog snapshot ends at revision ", event.revision(),
                       ", older than this view's revision ", revision_));
    }
    if (event.snapshot_end()) {
      replaced = std::move(live_);
      live_ = std::move(staging_);
      revision_ = event.revision();
      synced_ = true;
    }
    return absl::OkStatus();
  }
  ApplyTo(*live_, event, std::move(tenant));
  if (event.revision() > revision_) revision_ = event.revision();
  return absl::OkStatus();
}

void InMemoryCatalog::AbortSnapshot() {
  std::unique_ptr<State> dropped;
  absl::MutexLock l(&mu_);
  dropped = std::move(staging_);
}

void InMemoryCatalog::RequireSnapshot() {
  absl::MutexLock l(&mu_);
  synced_ = false;
}

void InMemoryCatalog::SetStalenessLimit(const Clock* clock,
                                        absl::Duration max_staleness) {
  absl::MutexLock l(&heard_mu_);
  clock_ = max_staleness > absl::ZeroDuration() ? clock : nullptr;
  max_staleness_ = max_staleness;
  if (clock_ != nullptr) last_heard_ = clock_->Now();
}

void InMemoryCatalog::MarkHeard() {
  absl::MutexLock l(&heard_mu_);
  if (clock_ != nullptr) last_heard_ = clock_->Now();
}

absl::Duration InMemoryCatalog::staleness() const {
  absl::MutexLock l(&heard_mu_);
  if (clock_ == nullptr) return absl::ZeroDuration();
  return std::max(absl::ZeroDuration(), clock_->Now() - last_heard_);
}

absl::Status InMemoryCatalog::CheckFresh() const {
  absl::MutexLock l(&heard_mu_);
  if (clock_ == nullptr) return absl::OkStatus();
  const absl::Duration lag = clock_->Now() - last_heard_;
  if (lag <= max_staleness_) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "catalog stale: this shard has heard nothing from management (no "
      "catalog event or progress notification) for ",
      absl::FormatDuration(absl::Trunc(lag, absl::Milliseconds(1))),
      ", above its --max_catalog_staleness of ",
      absl::FormatDuration(max_staleness_),
      "; it issues no certificates on stale catalog data until the catalog "
      "watch is back; retry later or at another shard"));
}

bool InMemoryCatalog::synced() const {
  absl::MutexLock l(&mu_);
  return synced_;
}

absl::Status InMemoryCatalog::PutTenant(const v1::Tenant& tenant) {
  auto ca = BuildTenantCa(tenant);
  if (!ca.ok()) return ca.status();
  absl::MutexLock l(&mu_);
  live_->tenants[tenant.id()] = *std::move(ca);
  return absl::OkStatus();
}

void InMemoryCatalog::PutDevice(const v1::Device& device) {
  absl::MutexLock l(&mu_);
  live_->devices.Put(device);
}

void InMemoryCatalog::PutGroup(const v1::DeviceGroup& group) {
  absl::MutexLock l(&mu_);
  live_->groups[group.id()] = group;
}

void InMemoryCatalog::PutImage(const v1::Image& image) {
  absl::MutexLock l(&mu_);
  PutImageIn(*live_, image);
}

void InMemoryCatalog::PutImageIn(State& state, const v1::Image& image) {
  state.images_by_id[ImageOwnerKey(image.tenant_id(), image.id())] = image;
  std::vector<v1::Image>& same_hash = state.images_by_hash[image.image_hash()];
  for (v1::Image& i : same_hash) {
    if (i.tenant_id() == image.tenant_id()) {
      i = image;
      return;
    }
  }
  same_hash.push_back(image);
}

void InMemoryCatalog::PutDeployment(const v1::Deployment& deployment) {
  absl::MutexLock l(&mu_);
  PutDeploymentIn(*live_, deployment);
}

void InMemoryCatalog::PutDeploymentIn(State& state,
                                      const v1::Deployment& deployment) {
  auto& slot = state.deployments[deployment.device_group_id()];
  if (slot.id().empty() ||
      deployment.create_revision() >= slot.create_revision()) {
    slot = deployment;
  }
}

void InMemoryCatalog::PutOsRelease(const v1::OsRelease& release) {
  absl::MutexLock l(&mu_);
  PutOsReleaseIn(*live_, release);
}

void InMemoryCatalog::PutOsReleaseIn(State& state,
                                     const v1::OsRelease& release) {
  // A snapshot delivers a feed's releases in key order ("RETAIL/10" before
  // "RETAIL/9"), not release order: keep the one published last.
  auto [it, inserted] = state.os_releases.emplace(release.feed(), release);
  if (!inserted && release.create_revision() >= it->second.create_revision()) {
    it->second = release;
  }
}

std::vector<std::string> InMemoryCatalog::DevicesInGroup(
    absl::string_view group_id) const {
  absl::MutexLock l(&mu_);
  return live_->devices.IdsInGroup(group_id);
}

size_t InMemoryCatalog::device_count() const {
  absl::MutexLock l(&mu_);
  return live_->devices.size();
}

absl::StatusOr<v1::Device> InMemoryCatalog::GetDevice(
    absl::string_view id) const {
  absl::MutexLock l(&mu_);
  std::optional<v1::Device> device = live_->devices.Get(id);
  if (!device.has_value()) {
    // Shards receive only claimed devices: an unknown id is unclaimed (or
    // was never registered by the factory, which cannot be claimed either).
    return absl::NotFoundError(absl::StrCat(
        "device ", id,
        " is not claimed; claim it with spherectl device claim --device ", id,
        " (a device the factory never registered cannot be claimed)"));
  }
  return *std::move(device);
}

absl::StatusOr<std::shared_ptr<const TenantCa>> CatalogView::GetSharedTenantCa(
    absl::string_view tenant_id) const {
  auto ca = GetTenantCa(tenant_id);
  if (!ca.ok()) return ca.status();
  if (!ca->issuer && ca->issuer_status.ok()) {
    auto issuer =
        crypto::CertificateIssuer::Create(ca->ca_key, ca->ca_cert_pem);
    if (issuer.ok()) {
      ca->issuer = *std::move(issuer);
    } else {
      ca->issuer_status = issuer.status();
    }
  }
  return std::make_shared<const TenantCa>(*std::move(ca));
}

absl::StatusOr<std::shared_ptr<const TenantCa>>
InMemoryCatalog::GetSharedTenantCa(absl::string_view tenant_id) const {
  absl::MutexLock l(&mu_);
  auto it = live_->tenants.find(tenant_id);
  if (it == live_->tenants.end() || it->second == nullptr ||
      !it->second->ca_key.valid()) {
    return absl::NotFoundError(
        absl::StrCat("tenant ", tenant_id, " has no issuing CA on this shard"));
  }
  return it->second;
}

absl::StatusOr<TenantCa> InMemoryCatalog::GetTenantCa(
    absl::string_view tenant_id) const {
  auto ca = GetSharedTenantCa(tenant_id);
  if (!ca.ok()) return ca.status();
  return **ca;
}

absl::StatusOr<v1::DeviceGroup> InMemoryCatalog::GetDeviceGroup(
    absl::string_view group_id) const {
  absl::MutexLock l(&mu_);
  auto it = live_->groups.find(group_id);
  if (it == live_->groups.end()) {
    return absl::NotFoundError(
        absl::StrCat("device group ", group_id, " not found"));
  }
  return it->second;
}

absl::StatusOr<const std::vector<v1::Image>*>
InMemoryCatalog::ImagesWithHashLocked(absl::string_view hash) const {
  auto it = live_->images_by_hash.find(hash);
  if (it == live_->images_by_hash.end() || it->second.empty()) {
    return absl::NotFoundError(
        absl::StrCat("image ", crypto::HexEncode(hash),
                     " was never signed by the platform"));
  }
  return &it->second;
}

absl::StatusOr<v1::Image> InMemoryCatalog::FindImageByHash(
    absl::string_view hash) const {
  absl::MutexLock l(&mu_);
  auto images = ImagesWithHashLocked(hash);
  if (!images.ok()) return images.status();
  for (const v1::Image& i : **images) {
    if (i.tenant_id().empty()) return i;  // a platform image first
  }
  return (*images)->front();
}

absl::StatusOr<v1::Image> InMemoryCatalog::FindImageForTenant(
    absl::string_view hash, absl::string_view tenant_id) const {
  absl::MutexLock l(&mu_);
  auto images = ImagesWithHashLocked(hash);
  if (!images.ok()) return images.status();
  const v1::Image* platform = nullptr;
  for (const v1::Image& i : **images) {
    if (!tenant_id.empty() && i.tenant_id() == tenant_id) return i;
    if (i.tenant_id().empty()) platform = &i;
  }
  if (platform != nullptr) return *platform;
  return OtherTenantsImage(hash);
}

const v1::OsRelease* InMemoryCatalog::ReleaseForLocked(
    const State& st, const v1::Device& device) {
  v1::OsFeed feed = v1::RETAIL;
  auto g = st.groups.find(device.device_group_id());
  if (g != st.groups.end() && g->second.os_feed() != v1::OS_FEED_UNSPECIFIED) {
    feed = g->second.os_feed();
  }
  auto rel = st.os_releases.find(feed);
  if (rel == st.os_releases.end() && feed == v1::RETAIL_EVAL) {
    rel = st.os_releases.find(v1::RETAIL);
  }
  return rel == st.os_releases.end() ? nullptr : &rel->second;
}

std::map<std::string, v1::Image> InMemoryCatalog::ExpectedImages(
    const v1::Device& device) const {
  std::map<std::string, v1::Image> out;
  absl::MutexLock l(&mu_);
  const State& st = *live_;
  const v1::OsRelease* rel = ReleaseForLocked(st, device);
  // OS releases name platform images; a deployment names its tenant's.
  auto add = [&](absl::string_view owner, const std::string& image_id) {
    auto it = st.images_by_id.find(ImageOwnerKey(owner, image_id));
    if (it != st.images_by_id.end()) out[it->second.component()] = it->second;
  };
  if (rel != nullptr) {
    for (const auto& id : rel->image_ids()) add("", id);
  }
  auto d = st.deployments.find(device.device_group_id());
  if (d != st.deployments.end() && !d->second.halted()) {
    for (const auto& id : d->second.image_ids()) add(d->second.tenant_id(), id);
  }
  return out;
}

absl::StatusOr<v1::OsRelease> InMemoryCatalog::CurrentOsRelease(
    const v1::Device& device) const {
  absl::MutexLock l(&mu_);
  const v1::OsRelease* rel = ReleaseForLocked(*live_, device);
  if (rel == nullptr) return absl::NotFoundError("no OS release on the feed");
  return *rel;
}

absl::StatusOr<v1::Deployment> InMemoryCatalog::CurrentDeployment(
    absl::string_view group_id) const {
  absl::MutexLock l(&mu_);
  auto it = live_->deployments.find(group_id);
  if (it == live_->deployments.end()) {
    return absl::NotFoundError("no deployment for the group");
  }
  return it->second;
}

int64_t InMemoryCatalog::revision() const {
  absl::MutexLock l(&mu_);
  return revision_;
}

}  // namespace sphere::catalog
