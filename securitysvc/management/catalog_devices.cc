// Catalog: the factory registry and devices: import, claim, list, read,
// assign to a group, revoke, transfer between tenants. Device records are
// keyed by device id (the factory registry has no tenant); a claimed device
// is also indexed under its tenant (tenant_devices) and its group
// (group_devices), so listing and "is this group empty" are prefix scans.
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

bool IsValidDevicePublicKey(absl::string_view public_key) {
  return public_key.size() == 65 && public_key[0] == 0x04;
}

std::string DeviceIdForKey(absl::string_view public_key) {
  return crypto::HexEncode(crypto::Sha256(public_key));
}

absl::StatusOr<v1::Device> Catalog::LoadDevice(absl::string_view device_id) {
  if (auto s = limits::ValidateDeviceId("device id", device_id); !s.ok()) {
    return s;
  }
  return ParseDevice(device_id, store_->Get(kDevices, device_id));
}

namespace catalog_internal {
absl::StatusOr<v1::Device> ParseDevice(absl::string_view device_id,
                                       absl::StatusOr<std::string> record) {
  if (absl::IsNotFound(record.status())) {
    return absl::NotFoundError(absl::StrFormat(
        "device \"%s\" is not in the factory registry; check the device id",
        device_id));
  }
  if (!record.ok()) return record.status();
  return Parse<v1::Device>(*record, absl::StrCat(kDevices, "/", device_id));
}
}  // namespace catalog_internal

absl::StatusOr<v1::Device> Catalog::FindOwnedDevice(
    const v1::Tenant& tenant, absl::string_view device_id) {
  absl::StatusOr<v1::Device> d = LoadDevice(device_id);
  if (d.ok() && d->tenant_id() == tenant.id()) return d;
  if (!d.ok() && !absl::IsNotFound(d.status())) return d;
  // Missing, unclaimed and another tenant's devices answer identically: an
  // operator learns nothing about devices it may not see.
  return DeviceNotFound(tenant, device_id);
}

absl::StatusOr<ImportResult> Catalog::ImportDevices(
    const Caller& caller, const std::vector<v1::FactoryDevice>& devices) {
  if (auto s = Authorize(caller, Op::kImportDevices); !s.ok()) return s;
  if (auto s =
          limits::ValidateCount("ImportDevices message devices", devices.size(),
                                limits::kMaxDevicesPerImport);
      !s.ok()) {
    return s;
  }
  std::vector<std::string> ids;
  ids.reserve(devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    const v1::FactoryDevice& d = devices[i];
    if (!IsValidDevicePublicKey(d.public_key())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "factory device #%d: public key must be a 65-byte uncompressed "
          "P-256 point (0x04||X||Y), got %d bytes%s; nothing was imported",
          i, d.public_key().size(),
          d.public_key().empty()
              ? ""
              : absl::StrFormat(" starting 0x%02x", static_cast<unsigned char>(
                                                        d.public_key()[0]))));
    }
    if (d.device_type().size() > limits::kMaxDeviceTypeLength) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "factory device #%d: device type is longer than %d characters; "
          "nothing was imported",
          i, limits::kMaxDeviceTypeLength));
    }
    ids.push_back(DeviceIdForKey(d.public_key()));
  }

  ImportResult result;
  absl::MutexLock lock(&mu_);
  Txn txn(revision_);
  absl::flat_hash_set<absl::string_view> seen;
  seen.reserve(ids.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    if (!seen.insert(ids[i]).second) {
      ++result.already_known;
      continue;
    }
    if (known_device_prefixes_.contains(DevicePrefix(ids[i]))) {
      absl::StatusOr<std::string> existing = store_->Get(kDevices, ids[i]);
      if (existing.ok()) {
        ++result.already_known;
        continue;
      }
      if (!absl::IsNotFound(existing.status())) return existing.status();
    }
    v1::Device d;
    d.set_id(ids[i]);
    d.set_public_key(devices[i].public_key());
    d.set_device_type(devices[i].device_type());
    d.set_state(v1::UNCLAIMED);
    txn.Put(kDevices, d.id(), d);
    // Another replica may have imported it a moment ago.
    if (store_->shared()) txn.RequireAbsent(kDevices, d.id());
    ++result.imported;
  }
  if (result.imported > 0) {
    txn.Emit()->set_factory_devices_imported(result.imported);
    if (auto s = Commit(txn); !s.ok()) return s;
    for (absl::string_view id : seen) {
      known_device_prefixes_.insert(DevicePrefix(id));
    }
  }
  return result;
}

absl::StatusOr<v1::Device> Catalog::ClaimDevice(const Caller& caller,
                                                absl::string_view tenant,
                                                absl::string_view device_id) {
  if (auto s = Authorize(caller, Op::kClaimDevice); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = LoadDevice(device_id);
  // A device another tenant claimed answers exactly like one the factory
  // never registered: claiming must not probe other tenants' fleets.
  const auto claim_not_found = [&] {
    return absl::NotFoundError(absl::StrFormat(
        "device \"%s\" is not in the factory registry or is not available "
        "for claiming; check the device id (a claimed device's owner can "
        "transfer it with 'spherectl device transfer request')",
        device_id));
  };
  if (absl::IsNotFound(d.status())) return claim_not_found();
  if (!d.ok()) return d.status();
  if (d->state() != v1::UNCLAIMED) {
    if (d->tenant_id() == t->id()) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "device \"%s\" is already claimed by tenant \"%s\"; a device can be "
          "claimed only once",
          device_id, t->name()));
    }
    return claim_not_found();
  }
  d->set_tenant_id(t->id());
  d->set_state(v1::CLAIMED);
  Txn txn(revision_);
  txn.Put(kDevices, d->id(), *d);
  txn.PutRaw(kTenantDevices, TenantDeviceKey(t->id(), d->id()), "");
  *txn.Emit()->mutable_device() = *d;
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::ListDevicesResponse> Catalog::ListDevices(
    const Caller& caller, const v1::ListDevicesRequest& request) {
  if (auto s = Authorize(caller, Op::kListDevices); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  // The tenant's devices, or one group's: either way one prefix scan of an
  // index, then a point read per device of the page.
  const char* cf = kTenantDevices;
  std::string prefix = TenantPrefix(t->id());
  if (!request.device_group_id().empty()) {
    absl::StatusOr<v1::DeviceGroup> g =
        FindGroup(*t, request.device_group_id());
    if (!g.ok()) return g.status();
    cf = kGroupDevices;
    prefix = GroupMembersPrefix(t->id(), g->id());
  }
  absl::StatusOr<Page> page =
      ParsePage(request.page_size(), request.page_token(), cf, prefix, prefix);
  if (!page.ok()) return page.status();
  v1::ListDevicesResponse out;
  std::string next;
  absl::Status s = ScanPage<v1::Device>(
      store_, cf, prefix, *page, cf, prefix,
      [&](absl::string_view key,
          absl::string_view) -> absl::StatusOr<std::optional<v1::Device>> {
        absl::StatusOr<v1::Device> d = LoadDevice(key.substr(prefix.size()));
        if (!d.ok()) return d.status();
        // An index entry left behind by a racing change is not listed.
        if (d->tenant_id() != t->id()) return std::optional<v1::Device>();
        return std::optional<v1::Device>(*std::move(d));
      },
      out.mutable_devices(), &next);
  if (!s.ok()) return s;
  out.set_next_page_token(next);
  return out;
}

absl::StatusOr<v1::Device> Catalog::GetDevice(const Caller& caller,
                                              absl::string_view tenant,
                                              absl::string_view device_id) {
  if (auto s = Authorize(caller, Op::kGetDevice); !s.ok()) return s;
  if (caller.is_platform() && tenant.empty()) return LoadDevice(device_id);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = LoadDevice(device_id);
  if (d.ok() && d->state() == v1::TRANSFER_PENDING &&
      d->pending_tenant_id() == t->id()) {
    return d;  // the transfer's target may look before accepting
  }
  return FindOwnedDevice(*t, device_id);
}

absl::StatusOr<v1::Device> Catalog::AssignDevice(const Caller& caller,
                                                 absl::string_view tenant,
                                                 absl::string_view device_id,
                                                 absl::string_view group) {
  if (auto s = Authorize(caller, Op::kAssignDevice); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = FindOwnedDevice(*t, device_id);
  if (!d.ok()) return d.status();
  if (d->state() != v1::CLAIMED) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device \"%s\" is %s; only claimed devices can be assigned to a "
        "device group",
        device_id, v1::DeviceState_Name(d->state())));
  }
  absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, group);
  if (!g.ok()) return g.status();
  if (!d->product_id().empty() && d->product_id() != g->product_id()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device group \"%s\" belongs to another product than device \"%s\" "
        "(product id %s); pick a group of that product",
        g->name(), device_id, d->product_id()));
  }
  if (d->device_group_id() == g->id()) return d;
  Txn txn(revision_);
  if (!d->device_group_id().empty()) {
    txn.Delete(kGroupDevices,
               GroupDeviceKey(t->id(), d->device_group_id(), d->id()));
  }
  d->set_product_id(g->product_id());
  d->set_device_group_id(g->id());
  txn.Put(kDevices, d->id(), *d);
  txn.PutRaw(kGroupDevices, GroupDeviceKey(t->id(), g->id(), d->id()), "");
  *txn.Emit()->mutable_device() = *d;
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::Device> Catalog::RevokeDevice(const Caller& caller,
                                                 absl::string_view tenant,
                                                 absl::string_view device_id,
                                                 absl::string_view reason) {
  if (auto s = Authorize(caller, Op::kRevokeDevice); !s.ok()) return s;
  if (auto s = ValidateDescription(reason); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = FindOwnedDevice(*t, device_id);
  if (!d.ok()) return d.status();
  if (d->state() == v1::REVOKED) return d;  // idempotent
  d->set_state(v1::REVOKED);
  d->clear_pending_tenant_id();
  std::string why(reason);
  if (caller.is_internal() && !absl::StartsWith(why, "automatic: ")) {
    why = absl::StrCat("automatic: ", why);
  }
  d->set_revocation_reason(why);
  Txn txn(revision_);
  txn.Put(kDevices, d->id(), *d);
  *txn.Emit()->mutable_device() = *d;
  txn.Emit()->set_revoked_device_id(d->id());
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::Device> Catalog::RequestDeviceTransfer(
    const Caller& caller, absl::string_view tenant, absl::string_view device_id,
    absl::string_view to_tenant) {
  if (auto s = Authorize(caller, Op::kRequestDeviceTransfer); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = FindOwnedDevice(*t, device_id);
  if (!d.ok()) return d.status();
  if (d->state() != v1::CLAIMED) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device \"%s\" is %s; only claimed devices can be transferred",
        device_id, v1::DeviceState_Name(d->state())));
  }
  if (to_tenant.empty()) {
    return absl::InvalidArgumentError(
        "the target tenant is required; pass --to-tenant NAME");
  }
  absl::StatusOr<v1::Tenant> to = FindTenant(to_tenant);
  if (!to.ok()) return to.status();
  if (to->id() == t->id()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("device \"%s\" already belongs to tenant \"%s\"",
                        device_id, t->name()));
  }
  d->set_state(v1::TRANSFER_PENDING);
  d->set_pending_tenant_id(to->id());
  Txn txn(revision_);
  txn.Put(kDevices, d->id(), *d);
  *txn.Emit()->mutable_device() = *d;
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::Device> Catalog::AcceptDeviceTransfer(
    const Caller& caller, absl::string_view tenant,
    absl::string_view device_id) {
  if (auto s = Authorize(caller, Op::kAcceptDeviceTransfer); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = LoadDevice(device_id);
  if (!d.ok() && !absl::IsNotFound(d.status())) return d.status();
  // A missing device answers like one with no transfer pending.
  if (!d.ok() || d->state() != v1::TRANSFER_PENDING ||
      d->pending_tenant_id() != t->id()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "no transfer of device \"%s\" to tenant \"%s\" is pending; its "
        "current owner must first run 'spherectl device transfer request'",
        device_id, t->name()));
  }
  const std::string old_tenant = d->tenant_id();
  Txn txn(revision_);
  if (!d->device_group_id().empty()) {
    txn.Delete(kGroupDevices,
               GroupDeviceKey(old_tenant, d->device_group_id(), d->id()));
  }
  d->set_tenant_id(t->id());
  d->clear_pending_tenant_id();
  d->clear_product_id();
  d->clear_device_group_id();
  d->set_state(v1::CLAIMED);
  d->set_ownership_epoch(d->ownership_epoch() + 1);
  txn.Put(kDevices, d->id(), *d);
  txn.Delete(kTenantDevices, TenantDeviceKey(old_tenant, d->id()));
  txn.PutRaw(kTenantDevices, TenantDeviceKey(t->id(), d->id()), "");
  txn.Emit()->set_revoked_device_id(d->id());
  *txn.Emit()->mutable_device() = *d;
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

}  // namespace sphere::management
