// Catalog: products and their device groups. Products are keyed
// "<tenant>/<product>", groups "<tenant>/<product>/<group>"; names are found
// through the lower-cased name index, so no lookup scans.
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

namespace {

v1::DeviceGroup DefaultGroup(const v1::Product& product, absl::string_view name,
                             absl::string_view description, v1::OsFeed feed,
                             v1::AppUpdatePolicy policy) {
  v1::DeviceGroup g;
  g.set_id(NewId());
  g.set_tenant_id(product.tenant_id());
  g.set_product_id(product.id());
  g.set_name(std::string(name));
  g.set_description(std::string(description));
  g.set_os_feed(feed);
  g.set_app_update_policy(policy);
  return g;
}

absl::Status GroupNotFound(const v1::Tenant& tenant, absl::string_view group) {
  return absl::NotFoundError(absl::StrFormat(
      "device group \"%s\" not found in tenant \"%s\"; name it by id or as "
      "PRODUCT/GROUP (list them with 'spherectl device-group list --product "
      "NAME')",
      group, tenant.name()));
}

// PutGroup stages a new group with its name and id index entries.
void PutNewGroup(Catalog::Txn& txn, const v1::DeviceGroup& g) {
  txn.Put(kGroups, GroupKey(g.tenant_id(), g.product_id(), g.id()), g);
  const std::string name_key =
      GroupNameIndex(g.tenant_id(), g.product_id(), g.name());
  txn.PutRaw(kIndex, name_key, g.id());
  txn.RequireAbsent(kIndex, name_key);
  txn.PutRaw(kIndex, GroupIdIndex(g.tenant_id(), g.id()), g.product_id());
}

}  // namespace

absl::StatusOr<v1::Product> Catalog::FindProduct(const v1::Tenant& tenant,
                                                 absl::string_view id_or_name) {
  if (id_or_name.empty()) {
    return absl::InvalidArgumentError(
        "a product is required; pass --product NAME (list them with "
        "'spherectl product list')");
  }
  if (auto s = limits::ValidateReference("product", id_or_name); !s.ok()) {
    return s;
  }
  // By id: only under the tenant's own prefix, so another tenant's product
  // answers exactly like a missing one.
  auto by_id = GetRecord<v1::Product>(store_, kProducts,
                                      ProductKey(tenant.id(), id_or_name));
  if (!by_id.ok()) return by_id.status();
  if (by_id->has_value()) return **by_id;
  absl::StatusOr<std::optional<std::string>> id =
      GetIndex(store_, ProductNameIndex(tenant.id(), id_or_name));
  if (!id.ok()) return id.status();
  if (id->has_value()) {
    auto by_name = GetRecord<v1::Product>(store_, kProducts,
                                          ProductKey(tenant.id(), **id));
    if (!by_name.ok()) return by_name.status();
    if (by_name->has_value()) return **by_name;
  }
  return absl::NotFoundError(absl::StrFormat(
      "product \"%s\" not found in tenant \"%s\"; list products with "
      "'spherectl product list'",
      id_or_name, tenant.name()));
}

absl::StatusOr<std::optional<v1::DeviceGroup>> Catalog::FindGroupById(
    const v1::Tenant& tenant, absl::string_view group_id) {
  absl::StatusOr<std::optional<std::string>> product =
      GetIndex(store_, GroupIdIndex(tenant.id(), group_id));
  if (!product.ok()) return product.status();
  if (!product->has_value()) return std::optional<v1::DeviceGroup>();
  return GetRecord<v1::DeviceGroup>(store_, kGroups,
                                    GroupKey(tenant.id(), **product, group_id));
}

absl::StatusOr<v1::DeviceGroup> Catalog::FindGroup(const v1::Tenant& tenant,
                                                   absl::string_view group) {
  if (group.empty()) {
    return absl::InvalidArgumentError(
        "a device group is required; pass --device-group ID or "
        "PRODUCT/GROUP (list them with 'spherectl device-group list')");
  }
  if (auto s = limits::ValidateReference("device group", group); !s.ok()) {
    return s;
  }
  auto by_id = FindGroupById(tenant, group);
  if (!by_id.ok()) return by_id.status();
  if (by_id->has_value()) return **by_id;
  std::vector<std::string> parts =
      absl::StrSplit(group, absl::MaxSplits('/', 1));
  if (parts.size() != 2) return GroupNotFound(tenant, group);
  absl::StatusOr<v1::Product> product = FindProduct(tenant, parts[0]);
  if (absl::IsNotFound(product.status())) return GroupNotFound(tenant, group);
  if (!product.ok()) return product.status();
  absl::StatusOr<std::optional<std::string>> id =
      GetIndex(store_, GroupNameIndex(tenant.id(), product->id(), parts[1]));
  if (!id.ok()) return id.status();
  if (!id->has_value()) return GroupNotFound(tenant, group);
  auto g = GetRecord<v1::DeviceGroup>(
      store_, kGroups, GroupKey(tenant.id(), product->id(), **id));
  if (!g.ok()) return g.status();
  if (!g->has_value()) return GroupNotFound(tenant, group);
  return **g;
}

absl::StatusOr<v1::Product> Catalog::CreateProduct(
    const Caller& caller, absl::string_view tenant, absl::string_view name,
    absl::string_view description) {
  if (auto s = Authorize(caller, Op::kCreateProduct); !s.ok()) return s;
  if (auto s = ValidateName("product", name); !s.ok()) return s;
  if (auto s = ValidateDescription(description); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  // One index read, not a scan of every product.
  const std::string name_key = ProductNameIndex(t->id(), name);
  absl::StatusOr<std::optional<std::string>> taken = GetIndex(store_, name_key);
  if (!taken.ok()) return taken.status();
  if (taken->has_value()) {
    auto existing =
        GetRecord<v1::Product>(store_, kProducts, ProductKey(t->id(), **taken));
    if (!existing.ok()) return existing.status();
    return absl::AlreadyExistsError(absl::StrFormat(
        "product \"%s\" already exists in tenant \"%s\" (id %s)",
        existing->has_value() ? (*existing)->name() : std::string(name),
        t->name(), **taken));
  }
  v1::Product product;
  product.set_id(NewId());
  product.set_tenant_id(t->id());
  product.set_name(std::string(name));
  product.set_description(std::string(description));

  Txn txn(revision_);
  txn.Put(kProducts, ProductKey(t->id(), product.id()), product);
  txn.PutRaw(kIndex, name_key, product.id());
  txn.RequireAbsent(kIndex, name_key);
  *txn.Emit()->mutable_product() = product;
  const v1::DeviceGroup defaults[] = {
      DefaultGroup(product, "Development", "Default development group",
                   v1::RETAIL, v1::NO_3RD_PARTY_APP_UPDATES),
      DefaultGroup(product, "Field Test", "Default test group", v1::RETAIL,
                   v1::UPDATE_ALL),
      DefaultGroup(product, "Field Test OS Evaluation",
                   "Default group that receives the Retail Evaluation OS "
                   "for field testing",
                   v1::RETAIL_EVAL, v1::UPDATE_ALL),
      DefaultGroup(product, "Production", "Default production group",
                   v1::RETAIL, v1::UPDATE_ALL),
      DefaultGroup(product, "Production OS Evaluation",
                   "Default group that receives the Retail Evaluation OS "
                   "for production devices",
                   v1::RETAIL_EVAL, v1::UPDATE_ALL),
  };
  for (const v1::DeviceGroup& g : defaults) {
    PutNewGroup(txn, g);
    *txn.Emit()->mutable_device_group() = g;
  }
  if (auto s = Commit(txn); !s.ok()) return s;
  return product;
}

absl::StatusOr<v1::ListProductsResponse> Catalog::ListProducts(
    const Caller& caller, const v1::ListProductsRequest& request) {
  if (auto s = Authorize(caller, Op::kListProducts); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  const std::string prefix = TenantPrefix(t->id());
  absl::StatusOr<Page> page = ParsePage(
      request.page_size(), request.page_token(), "products", t->id(), prefix);
  if (!page.ok()) return page.status();
  v1::ListProductsResponse out;
  std::string next;
  absl::Status s = ScanPage<v1::Product>(
      store_, kProducts, prefix, *page, "products", t->id(),
      [](absl::string_view key, absl::string_view value) {
        return ParseValue<v1::Product>(kProducts, key, value);
      },
      out.mutable_products(), &next);
  if (!s.ok()) return s;
  out.set_next_page_token(next);
  return out;
}

absl::StatusOr<v1::Product> Catalog::GetProduct(const Caller& caller,
                                                absl::string_view tenant,
                                                absl::string_view product) {
  if (auto s = Authorize(caller, Op::kGetProduct); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  return FindProduct(*t, product);
}

absl::StatusOr<v1::DeviceGroup> Catalog::CreateDeviceGroup(
    const Caller& caller, const v1::CreateDeviceGroupRequest& request) {
  if (auto s = Authorize(caller, Op::kCreateDeviceGroup); !s.ok()) return s;
  if (auto s = ValidateName("device group", request.name()); !s.ok()) return s;
  if (auto s = ValidateDescription(request.description()); !s.ok()) return s;
  if (!v1::OsFeed_IsValid(request.os_feed()) ||
      !v1::AppUpdatePolicy_IsValid(request.app_update_policy())) {
    return absl::InvalidArgumentError(
        "unknown OS feed or app update policy; use Retail|RetailEval and "
        "UpdateAll|No3rdPartyAppUpdates|NoUpdates");
  }
  if (!(request.rollout_failure_threshold() >= 0 &&
        request.rollout_failure_threshold() <= 1)) {
    return absl::InvalidArgumentError(
        "a rollout failure threshold is a fraction in [0, 1] (0 = never "
        "halt)");
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Product> product = FindProduct(*t, request.product());
  if (!product.ok()) return product.status();
  absl::StatusOr<std::optional<std::string>> taken =
      GetIndex(store_, GroupNameIndex(t->id(), product->id(), request.name()));
  if (!taken.ok()) return taken.status();
  if (taken->has_value()) {
    auto existing = GetRecord<v1::DeviceGroup>(
        store_, kGroups, GroupKey(t->id(), product->id(), **taken));
    if (!existing.ok()) return existing.status();
    return absl::AlreadyExistsError(absl::StrFormat(
        "device group \"%s\" already exists in product \"%s\" (id %s)",
        existing->has_value() ? (*existing)->name() : request.name(),
        product->name(), **taken));
  }
  v1::DeviceGroup g = DefaultGroup(
      *product, request.name(), request.description(),
      request.os_feed() == v1::OS_FEED_UNSPECIFIED ? v1::RETAIL
                                                   : request.os_feed(),
      request.app_update_policy() == v1::APP_UPDATE_POLICY_UNSPECIFIED
          ? v1::UPDATE_ALL
          : request.app_update_policy());
  g.set_rollout_failure_threshold(request.rollout_failure_threshold());
  Txn txn(revision_);
  PutNewGroup(txn, g);
  *txn.Emit()->mutable_device_group() = g;
  if (auto s = Commit(txn); !s.ok()) return s;
  return g;
}

absl::StatusOr<v1::ListDeviceGroupsResponse> Catalog::ListDeviceGroups(
    const Caller& caller, const v1::ListDeviceGroupsRequest& request) {
  if (auto s = Authorize(caller, Op::kListDeviceGroups); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  // With a product filter: the product's prefix; else the tenant's.
  std::string prefix = TenantPrefix(t->id());
  if (!request.product().empty()) {
    absl::StatusOr<v1::Product> p = FindProduct(*t, request.product());
    if (!p.ok()) return p.status();
    prefix = GroupPrefix(t->id(), p->id());
  }
  absl::StatusOr<Page> page = ParsePage(
      request.page_size(), request.page_token(), "groups", prefix, prefix);
  if (!page.ok()) return page.status();
  v1::ListDeviceGroupsResponse out;
  std::string next;
  absl::Status s = ScanPage<v1::DeviceGroup>(
      store_, kGroups, prefix, *page, "groups", prefix,
      [](absl::string_view key, absl::string_view value) {
        return ParseValue<v1::DeviceGroup>(kGroups, key, value);
      },
      out.mutable_groups(), &next);
  if (!s.ok()) return s;
  out.set_next_page_token(next);
  return out;
}

absl::StatusOr<v1::DeviceGroup> Catalog::GetDeviceGroup(
    const Caller& caller, absl::string_view tenant, absl::string_view group) {
  if (auto s = Authorize(caller, Op::kGetDeviceGroup); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  return FindGroup(*t, group);
}

absl::StatusOr<v1::DeviceGroup> Catalog::UpdateDeviceGroup(
    const Caller& caller, const v1::UpdateDeviceGroupRequest& request) {
  if (auto s = Authorize(caller, Op::kUpdateDeviceGroup); !s.ok()) return s;
  if (!v1::OsFeed_IsValid(request.os_feed()) ||
      !v1::AppUpdatePolicy_IsValid(request.app_update_policy())) {
    return absl::InvalidArgumentError(
        "unknown OS feed or app update policy; use Retail|RetailEval and "
        "UpdateAll|No3rdPartyAppUpdates|NoUpdates");
  }
  if (auto s = ValidateDescription(request.description()); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, request.device_group_id());
  if (!g.ok()) return g.status();
  v1::DeviceGroup updated = *g;
  if (request.os_feed() != v1::OS_FEED_UNSPECIFIED) {
    updated.set_os_feed(request.os_feed());
  }
  if (request.app_update_policy() != v1::APP_UPDATE_POLICY_UNSPECIFIED) {
    updated.set_app_update_policy(request.app_update_policy());
  }
  if (!request.description().empty()) {
    updated.set_description(request.description());
  }
  if (updated.SerializeAsString() == g->SerializeAsString()) return updated;
  Txn txn(revision_);
  txn.Put(kGroups,
          GroupKey(updated.tenant_id(), updated.product_id(), updated.id()),
          updated);
  *txn.Emit()->mutable_device_group() = updated;
  if (auto s = Commit(txn); !s.ok()) return s;
  return updated;
}

// ---- Deletes
// ------------------------------------------------------------------- Each
// delete is one batch with its watch events, like every mutation. What the
// caller cannot see is NotFound (HideForeign); what is still in use is
// FailedPrecondition naming the use and what to do first.

absl::Status Catalog::CheckGroupsUnused(
    const v1::Tenant& tenant, const std::vector<std::string>& group_ids,
    absl::string_view what) {
  for (const std::string& group_id : group_ids) {
    std::string device;
    absl::Status s = store_->Scan(
        kGroupDevices, GroupMembersPrefix(tenant.id(), group_id),
        [&](absl::string_view key, absl::string_view) {
          device = std::string(
              key.substr(GroupMembersPrefix(tenant.id(), group_id).size()));
          return false;
        });
    if (!s.ok()) return s;
    if (!device.empty()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s still has devices (e.g. %s); move them to another group with "
          "'spherectl device update' first",
          what, device));
    }
    std::optional<v1::Deployment> dep;
    s = ScanPrefix<v1::Deployment>(store_, kDeployments,
                                   DeploymentPrefix(tenant.id(), group_id),
                                   [&](const v1::Deployment& d) {
                                     dep = d;
                                     return false;
                                   });
    if (!s.ok()) return s;
    if (dep) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s still has deployment %s; delete it with 'spherectl deployment "
          "delete --deployment %s' first",
          what, dep->id(), dep->id()));
    }
  }
  return absl::OkStatus();
}

absl::Status Catalog::DeleteProduct(const Caller& caller,
                                    absl::string_view tenant,
                                    absl::string_view product) {
  if (auto s = Authorize(caller, Op::kDeleteProduct); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Product> p = FindProduct(*t, product);
  if (!p.ok()) return HideForeign(p.status(), "product", product);
  // The product's groups: one prefix scan of this product only.
  absl::StatusOr<std::vector<v1::DeviceGroup>> groups =
      CollectPrefix<v1::DeviceGroup>(store_, kGroups,
                                     GroupPrefix(t->id(), p->id()));
  if (!groups.ok()) return groups.status();
  std::vector<std::string> ids;
  for (const v1::DeviceGroup& g : *groups) ids.push_back(g.id());
  if (auto s = CheckGroupsUnused(*t, ids,
                                 absl::StrFormat("product \"%s\"", p->name()));
      !s.ok()) {
    return s;
  }
  Txn txn(revision_);
  for (const v1::DeviceGroup& g : *groups) {
    txn.Delete(kGroups, GroupKey(t->id(), p->id(), g.id()));
    txn.Delete(kIndex, GroupNameIndex(t->id(), p->id(), g.name()));
    txn.Delete(kIndex, GroupIdIndex(t->id(), g.id()));
    txn.Emit()->set_deleted_device_group_id(g.id());
  }
  txn.Delete(kProducts, ProductKey(t->id(), p->id()));
  txn.Delete(kIndex, ProductNameIndex(t->id(), p->name()));
  txn.Emit()->set_deleted_product_id(p->id());
  return Commit(txn);
}

absl::Status Catalog::DeleteDeviceGroup(const Caller& caller,
                                        absl::string_view tenant,
                                        absl::string_view group) {
  if (auto s = Authorize(caller, Op::kDeleteDeviceGroup); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, group);
  if (!g.ok()) return HideForeign(g.status(), "device group", group);
  if (auto s = CheckGroupsUnused(
          *t, {g->id()}, absl::StrFormat("device group \"%s\"", g->name()));
      !s.ok()) {
    return s;
  }
  Txn txn(revision_);
  txn.Delete(kGroups, GroupKey(t->id(), g->product_id(), g->id()));
  txn.Delete(kIndex, GroupNameIndex(t->id(), g->product_id(), g->name()));
  txn.Delete(kIndex, GroupIdIndex(t->id(), g->id()));
  txn.Emit()->set_deleted_device_group_id(g->id());
  return Commit(txn);
}

}  // namespace sphere::management
