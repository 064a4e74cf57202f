// Catalog: bulk claims (ClaimDevices). A batch is one Txn: every device is
// checked first, under the catalog mutex, and only then is anything staged,
// so a refused batch writes nothing and does not advance the revision.
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

absl::StatusOr<Catalog::ClaimResult> Catalog::ClaimDevices(
    const Caller& caller, absl::string_view tenant,
    const std::vector<std::string>& device_ids, absl::string_view group) {
  if (auto s = Authorize(caller, Op::kClaimDevice); !s.ok()) return s;
  if (!group.empty()) {
    if (auto s = Authorize(caller, Op::kAssignDevice); !s.ok()) return s;
  }
  if (device_ids.empty()) {
    return absl::InvalidArgumentError(
        "a bulk claim needs at least one device id; nothing was claimed");
  }
  if (device_ids.size() > limits::kMaxDevicesPerClaim) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "a bulk claim names %d devices; the limit is %d per call (split the "
        "list); nothing was claimed",
        device_ids.size(), limits::kMaxDevicesPerClaim));
  }
  // Shape checks need no lock: malformed or repeated ids refuse the batch.
  absl::flat_hash_map<absl::string_view, size_t> first_index;
  first_index.reserve(device_ids.size());
  for (size_t i = 0; i < device_ids.size(); ++i) {
    if (auto s = limits::ValidateDeviceId(
            absl::StrFormat("device id #%d of the batch", i), device_ids[i]);
        !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(s.message(), "; nothing was claimed"));
    }
    auto [it, inserted] = first_index.emplace(device_ids[i], i);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "device id #%d repeats #%d (\"%s\"); list each device once; "
          "nothing was claimed",
          i, it->second, device_ids[i]));
    }
  }

  // The batch's device records are read before taking the catalog mutex,
  // so one batch's reads overlap another's commit. Under the mutex, the
  // devices a commit wrote since are read again (all of them on a shared
  // log, where other replicas write too), so every check below sees the
  // current record.
  const bool read_early = !store_->shared();
  const uint64_t read_seq = device_write_seq_.load(std::memory_order_acquire);
  std::vector<absl::StatusOr<std::string>> records(
      device_ids.size(), absl::UnknownError("not read"));
  if (read_early) {
    for (size_t i = 0; i < device_ids.size(); ++i) {
      records[i] = store_->Get(kDevices, device_ids[i]);
    }
  }

  absl::MutexLock lock(&mu_);
  std::optional<absl::flat_hash_set<absl::string_view>> written;
  if (read_early) written = DevicesWrittenSinceLocked(read_seq);
  for (size_t i = 0; i < device_ids.size(); ++i) {
    if (!written.has_value() || written->contains(device_ids[i])) {
      records[i] = store_->Get(kDevices, device_ids[i]);
    }
  }
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  std::optional<v1::DeviceGroup> g;
  if (!group.empty()) {
    absl::StatusOr<v1::DeviceGroup> found = FindGroup(*t, group);
    if (!found.ok()) return found.status();
    g = *std::move(found);
  }
  ClaimResult result;
  v1::DeviceBatch claimed;
  for (size_t i = 0; i < device_ids.size(); ++i) {
    const std::string& id = device_ids[i];
    absl::StatusOr<v1::Device> d = ParseDevice(id, std::move(records[i]));
    if (!d.ok() && !absl::IsNotFound(d.status())) return d.status();
    if (d.ok() && d->state() != v1::UNCLAIMED && d->tenant_id() == t->id()) {
      ++result.already_claimed;  // a retried batch: left as it is
      continue;
    }
    if (!d.ok() || d->state() != v1::UNCLAIMED) {
      // Unregistered and another tenant's devices answer alike (as
      // ClaimDevice does): a batch must not probe other tenants' fleets.
      return absl::NotFoundError(absl::StrFormat(
          "device \"%s\" is not in the factory registry or is not available "
          "for claiming; nothing in this batch was claimed (remove it from "
          "the list and retry; a claimed device's owner can transfer it with "
          "'spherectl device transfer request')",
          id));
    }
    d->set_tenant_id(t->id());
    d->set_state(v1::CLAIMED);
    if (g.has_value()) {
      d->set_product_id(g->product_id());
      d->set_device_group_id(g->id());
    }
    *claimed.add_devices() = *std::move(d);
  }
  if (claimed.devices().empty()) {
    result.revision = revision_;
    return result;
  }
  Txn txn(revision_);
  for (const v1::Device& d : claimed.devices()) {
    txn.Put(kDevices, d.id(), d);
    txn.PutRaw(kTenantDevices, TenantDeviceKey(t->id(), d.id()), "");
    if (g.has_value()) {
      txn.PutRaw(kGroupDevices, GroupDeviceKey(t->id(), g->id(), d.id()), "");
    }
  }
  result.claimed = claimed.devices_size();
  *txn.Emit()->mutable_claimed_devices() = std::move(claimed);
  if (auto s = Commit(txn); !s.ok()) return s;
  result.revision = revision_;
  return result;
}

}  // namespace sphere::management
