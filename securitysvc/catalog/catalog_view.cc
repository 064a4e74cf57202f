#include "securitysvc/catalog/catalog_view.h"

#include "absl/strings/str_cat.h"

namespace sphere::catalog {

absl::StatusOr<std::string> InMemoryCatalog::WrapKey(
    absl::string_view master_key, absl::string_view label,
    absl::string_view key) {
  std::string nonce = crypto::RandomBytes(12);
  auto sealed = crypto::AesGcmSeal(master_key, nonce, key, label);
  if (!sealed.ok()) return sealed.status();
  return nonce + *sealed;
}

absl::StatusOr<std::string> InMemoryCatalog::UnwrapKey(
    absl::string_view master_key, absl::string_view label,
    absl::string_view wrapped) {
  if (wrapped.size() < 12 + 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("wrapped key for ", label, " is truncated"));
  }
  auto key = crypto::AesGcmOpen(master_key, wrapped.substr(0, 12),
                                wrapped.substr(12), label);
  if (!key.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot unwrap key for ", label,
        ": wrong cluster master key or tampered catalog (",
        key.status().message(), ")"));
  }
  return key;
}

absl::Status InMemoryCatalog::Apply(const v1::WatchEvent& event) {
  switch (event.change_case()) {
    case v1::WatchEvent::kTenant: {
      absl::Status s = PutTenant(event.tenant());
      if (!s.ok()) return s;
      break;
    }
    case v1::WatchEvent::kProduct:
      break;  // shards need only groups
    case v1::WatchEvent::kDeviceGroup:
      PutGroup(event.device_group());
      break;
    case v1::WatchEvent::kDevice:
      PutDevice(event.device());
      break;
    case v1::WatchEvent::kImage:
      PutImage(event.image());
      break;
    case v1::WatchEvent::kDeployment:
      PutDeployment(event.deployment());
      break;
    case v1::WatchEvent::kOsRelease:
      PutOsRelease(event.os_release());
      break;
    case v1::WatchEvent::kDeletedDeviceGroupId: {
      absl::MutexLock l(&mu_);
      groups_.erase(event.deleted_device_group_id());
      deployments_.erase(event.deleted_device_group_id());
      break;
    }
    case v1::WatchEvent::kDeletedDeploymentId: {
      // Management re-sends the group's previous deployment, if any, next.
      absl::MutexLock l(&mu_);
      for (auto it = deployments_.begin(); it != deployments_.end(); ++it) {
        if (it->second.id() == event.deleted_deployment_id()) {
          deployments_.erase(it);
          break;
        }
      }
      break;
    }
    case v1::WatchEvent::kDeletedImageId: {
      absl::MutexLock l(&mu_);
      auto it = images_by_id_.find(event.deleted_image_id());
      if (it != images_by_id_.end()) {
        images_by_hash_.erase(it->second.image_hash());
        images_by_id_.erase(it);
      }
      break;
    }
    case v1::WatchEvent::kRevokedDeviceId: {
      absl::MutexLock l(&mu_);
      auto it = devices_.find(event.revoked_device_id());
      if (it != devices_.end()) it->second.set_state(v1::REVOKED);
      break;
    }
    default:
      break;
  }
  absl::MutexLock l(&mu_);
  if (event.revision() > revision_) revision_ = event.revision();
  return absl::OkStatus();
}

absl::Status InMemoryCatalog::PutTenant(const v1::Tenant& tenant) {
  TenantCa ca;
  ca.tenant_id = tenant.id();
  ca.name = tenant.name();
  ca.ca_cert_pem = tenant.ca_certificate_pem();
  if (!tenant.wrapped_ca_key().empty()) {
    auto scalar = UnwrapKey(master_key_, catalog::TenantCaWrapLabel(tenant.id()),
                            tenant.wrapped_ca_key());
    if (!scalar.ok()) return scalar.status();
    auto key = crypto::EcPrivateKey::FromScalar(*scalar);
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
  auto shared = std::make_shared<const TenantCa>(std::move(ca));
  absl::MutexLock l(&mu_);
  tenants_[tenant.id()] = std::move(shared);
  return absl::OkStatus();
}

void InMemoryCatalog::PutDevice(const v1::Device& device) {
  absl::MutexLock l(&mu_);
  devices_[device.id()] = device;
}

void InMemoryCatalog::PutGroup(const v1::DeviceGroup& group) {
  absl::MutexLock l(&mu_);
  groups_[group.id()] = group;
}

void InMemoryCatalog::PutImage(const v1::Image& image) {
  absl::MutexLock l(&mu_);
  images_by_hash_[image.image_hash()] = image;
  images_by_id_[image.id()] = image;
}

void InMemoryCatalog::PutDeployment(const v1::Deployment& deployment) {
  absl::MutexLock l(&mu_);
  auto& slot = deployments_[deployment.device_group_id()];
  if (slot.id().empty() ||
      deployment.create_revision() >= slot.create_revision()) {
    slot = deployment;
  }
}

void InMemoryCatalog::PutOsRelease(const v1::OsRelease& release) {
  absl::MutexLock l(&mu_);
  // A snapshot delivers a feed's releases in key order ("RETAIL/10" before
  // "RETAIL/9"), not release order: keep the one published last.
  auto [it, inserted] = os_releases_.emplace(release.feed(), release);
  if (!inserted && release.create_revision() >= it->second.create_revision()) {
    it->second = release;
  }
}

size_t InMemoryCatalog::device_count() const {
  absl::MutexLock l(&mu_);
  return devices_.size();
}

absl::StatusOr<v1::Device> InMemoryCatalog::GetDevice(
    absl::string_view id) const {
  absl::MutexLock l(&mu_);
  auto it = devices_.find(id);
  if (it == devices_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "device ", id,
        " is not registered: only devices recorded by the factory registry "
        "can attest"));
  }
  return it->second;
}

absl::StatusOr<std::shared_ptr<const TenantCa>> CatalogView::GetSharedTenantCa(
    absl::string_view tenant_id) const {
  auto ca = GetTenantCa(tenant_id);
  if (!ca.ok()) return ca.status();
  if (!ca->issuer && ca->issuer_status.ok()) {
    auto issuer = crypto::CertificateIssuer::Create(ca->ca_key, ca->ca_cert_pem);
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
  auto it = tenants_.find(tenant_id);
  if (it == tenants_.end() || !it->second->ca_key.valid()) {
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
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    return absl::NotFoundError(absl::StrCat("device group ", group_id,
                                            " not found"));
  }
  return it->second;
}

absl::StatusOr<v1::Image> InMemoryCatalog::FindImageByHash(
    absl::string_view hash) const {
  absl::MutexLock l(&mu_);
  auto it = images_by_hash_.find(hash);
  if (it == images_by_hash_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "image ", crypto::HexEncode(hash), " was never signed by the platform"));
  }
  return it->second;
}

std::map<std::string, v1::Image> InMemoryCatalog::ExpectedImages(
    const v1::Device& device) const {
  std::map<std::string, v1::Image> out;
  absl::MutexLock l(&mu_);
  v1::OsFeed feed = v1::RETAIL;
  auto g = groups_.find(device.device_group_id());
  if (g != groups_.end() && g->second.os_feed() != v1::OS_FEED_UNSPECIFIED) {
    feed = g->second.os_feed();
  }
  auto rel = os_releases_.find(feed);
  if (rel == os_releases_.end() && feed == v1::RETAIL_EVAL) {
    rel = os_releases_.find(v1::RETAIL);
  }
  auto add = [&](const std::string& image_id) {
    auto it = images_by_id_.find(image_id);
    if (it != images_by_id_.end()) out[it->second.component()] = it->second;
  };
  if (rel != os_releases_.end()) {
    for (const auto& id : rel->second.image_ids()) add(id);
  }
  auto d = deployments_.find(device.device_group_id());
  if (d != deployments_.end() && !d->second.halted()) {
    for (const auto& id : d->second.image_ids()) add(id);
  }
  return out;
}

int64_t InMemoryCatalog::revision() const {
  absl::MutexLock l(&mu_);
  return revision_;
}

}  // namespace sphere::catalog
