#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/commands.h"

namespace sphere::cli {

void Names::LoadCatalog() {
  if (products_.has_value()) return;
  products_.emplace();
  groups_.emplace();
  using S = v1::ManagementService::Stub;
  v1::ListProductsRequest preq;
  preq.set_tenant_id(ctx_.TenantField());
  (void)ForEachPage(ctx_, &S::ListProducts, preq,
                    std::function<void(const v1::ListProductsResponse&)>(
                        [this](const v1::ListProductsResponse& r) {
                          for (const v1::Product& p : r.products()) {
                            (*products_)[p.id()] = p.name();
                          }
                        }));
  v1::ListDeviceGroupsRequest greq;
  greq.set_tenant_id(ctx_.TenantField());
  (void)ForEachPage(ctx_, &S::ListDeviceGroups, greq,
                    std::function<void(const v1::ListDeviceGroupsResponse&)>(
                        [this](const v1::ListDeviceGroupsResponse& r) {
                          for (const v1::DeviceGroup& g : r.groups()) {
                            (*groups_)[g.id()] = g.name();
                          }
                        }));
}

void Names::LoadTenants() {
  if (tenants_.has_value()) return;
  tenants_.emplace();
  (void)ForEachPage(ctx_, &v1::ManagementService::Stub::ListTenants,
                    v1::ListTenantsRequest(),
                    std::function<void(const v1::ListTenantsResponse&)>(
                        [this](const v1::ListTenantsResponse& r) {
                          for (const v1::Tenant& t : r.tenants()) {
                            (*tenants_)[t.id()] = t.name();
                          }
                        }));
}

namespace {
std::string Lookup(const std::map<std::string, std::string>& m,
                   const std::string& id) {
  if (id.empty()) return "-";
  auto it = m.find(id);
  return it == m.end() ? id : it->second;
}
}  // namespace

std::string Names::Product(const std::string& id) {
  if (id.empty()) return "-";
  LoadCatalog();
  return Lookup(*products_, id);
}

std::string Names::Group(const std::string& id) {
  if (id.empty()) return "-";
  LoadCatalog();
  return Lookup(*groups_, id);
}

std::string Names::Tenant(const std::string& id) {
  if (id.empty()) return "-";
  LoadTenants();
  return Lookup(*tenants_, id);
}

void AddPaging(CLI::App* verb, PageRequest* page) {
  verb->add_option("--page-size", page->size,
                   "print at most N items (default: all)")
      ->check(CLI::Range(1, 100000));
  verb->add_option("--page-token", page->token,
                   "continue after this item (printed on stderr at the end "
                   "of the previous page)");
}

void PrintDeleted(Context& ctx, const std::string& kind,
                  const std::string& name) {
  if (ctx.printer().json_output()) {
    ctx.printer().Print({}, {}, json{{"deleted", kind}, {"name", name}});
  } else {
    std::cout << "deleted " << kind << " " << Escape(name) << "\n";
  }
}

absl::Status Require(const std::string& flag, const std::string& value) {
  if (value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " must not be empty"));
  }
  return absl::OkStatus();
}

}  // namespace sphere::cli
