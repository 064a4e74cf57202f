#include "appsvc/device_registry.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace contoso::appsvc {

DeviceRegistry::DeviceRegistry(RegistryOptions options)
    : options_(std::move(options)) {}

void DeviceRegistry::ApplyTo(const sphere::v1::WatchEvent& e, View* view) {
  using E = sphere::v1::WatchEvent;
  const auto put_device = [view](const sphere::v1::Device& d) {
    DeviceEntry& entry = view->devices[d.id()];
    entry.tenant_id = d.tenant_id();
    entry.product_id = d.product_id();
    entry.epoch = d.ownership_epoch();
    entry.revoked = d.state() == sphere::v1::REVOKED;
  };
  switch (e.change_case()) {
    case E::kTenant:
      view->tenant_names[e.tenant().id()] = e.tenant().name();
      break;
    case E::kProduct:
      view->product_names[e.product().id()] = e.product().name();
      break;
    case E::kDevice:
      put_device(e.device());
      break;
    case E::kClaimedDevices:  // a bulk claim: one revision, many devices
      for (const sphere::v1::Device& d : e.claimed_devices().devices()) {
        put_device(d);
      }
      break;
    case E::kRevokedDeviceId: {
      auto it = view->devices.find(e.revoked_device_id());
      if (it != view->devices.end()) it->second.revoked = true;
      break;
    }
    case E::kShardMap:
      view->shards.clear();
      view->shard_ids.clear();
      for (const auto& shard : e.shard_map().shards()) {
        view->shards.push_back(shard.address());
        view->shard_ids.push_back(shard.id());
      }
      break;
    case E::kDeletedProductId:
      view->product_names.erase(e.deleted_product_id());
      break;
    default:
      break;
  }
}

void DeviceRegistry::Apply(const sphere::v1::WatchEvent& e) {
  absl::MutexLock l(&mu_);
  if (e.snapshot() || e.snapshot_end()) {
    if (!in_snapshot_) {
      pending_ = View();
      in_snapshot_ = true;
    }
    if (e.snapshot_end()) {
      view_ = std::move(pending_);
      pending_ = View();
      in_snapshot_ = false;
      synced_ = true;
      revision_ = e.revision();
      return;
    }
    ApplyTo(e, &pending_);
    return;
  }
  ApplyTo(e, &view_);
  if (e.revision() > revision_) revision_ = e.revision();
}

bool DeviceRegistry::Matches(
    const std::string& id, const std::string& configured,
    const absl::flat_hash_map<std::string, std::string>& names) const {
  if (id == configured) return true;
  auto it = names.find(id);
  return it != names.end() && absl::EqualsIgnoreCase(it->second, configured);
}

absl::Status DeviceRegistry::Authorize(
    const sphere::auth::DeviceContext& device) const {
  if (auto s = sphere::auth::RequireFullScope(device); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  if (!synced_) {
    return absl::UnavailableError(
        "appsvc has not yet synced the Sphere catalog; retry shortly");
  }
  auto it = view_.devices.find(device.device_id);
  if (it == view_.devices.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "device ", device.device_id, " is unknown to the Sphere catalog"));
  }
  const DeviceEntry& d = it->second;
  if (d.revoked) {
    return absl::PermissionDeniedError(
        absl::StrCat("device ", device.device_id, " is revoked"));
  }
  if (d.tenant_id != device.tenant_id || d.epoch != device.ownership_epoch) {
    return absl::PermissionDeniedError(absl::StrCat(
        "device ", device.device_id,
        " changed owner since its certificate was issued; re-attest"));
  }
  if (!Matches(d.tenant_id, options_.tenant, view_.tenant_names)) {
    return absl::PermissionDeniedError(
        absl::StrCat("device ", device.device_id,
                     " belongs to another tenant, not ", options_.tenant));
  }
  if (!Matches(d.product_id, options_.product, view_.product_names) ||
      (!device.product_id.empty() && device.product_id != d.product_id)) {
    return absl::PermissionDeniedError(absl::StrCat("device ", device.device_id,
                                                    " is another product, not ",
                                                    options_.product));
  }
  return absl::OkStatus();
}

int64_t DeviceRegistry::revision() const {
  absl::MutexLock l(&mu_);
  return revision_;
}
bool DeviceRegistry::synced() const {
  absl::MutexLock l(&mu_);
  return synced_;
}
size_t DeviceRegistry::device_count() const {
  absl::MutexLock l(&mu_);
  return view_.devices.size();
}

std::vector<std::string> DeviceRegistry::ShardAddresses() const {
  absl::MutexLock l(&mu_);
  return view_.shards;
}

std::vector<std::pair<std::string, std::string>> DeviceRegistry::Shards()
    const {
  absl::MutexLock l(&mu_);
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < view_.shards.size(); ++i) {
    out.emplace_back(view_.shard_ids[i], view_.shards[i]);
  }
  return out;
}

bool DeviceRegistry::IsConfiguredTenant(const std::string& tenant_id) const {
  absl::MutexLock l(&mu_);
  return !tenant_id.empty() &&
         Matches(tenant_id, options_.tenant, view_.tenant_names);
}

std::string DeviceRegistry::ConfiguredTenantId() const {
  absl::MutexLock l(&mu_);
  for (const auto& [id, name] : view_.tenant_names) {
    if (id == options_.tenant ||
        absl::EqualsIgnoreCase(name, options_.tenant)) {
      return id;
    }
  }
  return "";
}

bool DeviceRegistry::WaitForRevision(int64_t revision,
                                     absl::Duration timeout) const {
  absl::MutexLock l(&mu_);
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return synced_ && revision_ >= revision;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

}  // namespace contoso::appsvc
