// spherectl deployment create|list.
#include <CLI/CLI.hpp>
#include <memory>

#include "absl/strings/str_join.h"
#include "cli/commands.h"

namespace sphere::cli {
namespace {

using S = v1::ManagementService::Stub;

const std::vector<std::string> kDeploymentHeaders = {"PRODUCT", "DEVICE GROUP",
                                                     "IMAGES", "STATUS", "ID"};

// GroupInfo: a group's product and name, for deployment rows.
struct GroupInfo {
  std::string product, name;
};

std::vector<std::string> DeploymentRow(
    const std::map<std::string, GroupInfo>& groups, const v1::Deployment& d) {
  auto it = groups.find(d.device_group_id());
  GroupInfo g =
      it == groups.end() ? GroupInfo{"-", d.device_group_id()} : it->second;
  std::vector<std::string> images;
  for (const std::string& id : d.image_ids())
    images.push_back(id.substr(0, 12));
  return {g.product, g.name, absl::StrJoin(images, ","), RolloutSummary(d),
          d.id()};
}

absl::StatusOr<std::map<std::string, GroupInfo>> Groups(Context& c) {
  Names names(c);
  v1::ListDeviceGroupsRequest req;
  req.set_tenant_id(c.TenantField());
  std::map<std::string, GroupInfo> out;
  (void)ForEachPage(
      c, &S::ListDeviceGroups, req,
      std::function<void(const v1::ListDeviceGroupsResponse&)>(
          [&](const v1::ListDeviceGroupsResponse& r) {
            for (const v1::DeviceGroup& g : r.groups()) {
              out[g.id()] = {names.Product(g.product_id()), g.name()};
            }
          }));
  return out;
}

}  // namespace

void AddDeploymentCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun =
      Noun(app, "deployment", "application deployments to device groups");

  struct CreateArgs {
    std::string group;
    std::vector<std::string> images;
  };
  auto ca = std::make_shared<CreateArgs>();
  CLI::App* create =
      Verb(noun, ctx, "create",
           "deploy the tenant's application images to a device group",
           Access::kTenant, [ca](Context& c) -> absl::Status {
             v1::CreateDeploymentRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_device_group_id(ca->group);
             for (const std::string& id : ca->images) req.add_image_ids(id);
             v1::Deployment d;
             if (auto s = c.Call(&S::CreateDeployment, req, &d); !s.ok())
               return s;
             auto groups = Groups(c);
             if (!groups.ok()) return groups.status();
             PrintOne(c, d, kDeploymentHeaders, DeploymentRow(*groups, d));
             return absl::OkStatus();
           });
  create->add_option("--device-group", ca->group, "group id or PRODUCT/GROUP")
      ->required();
  create
      ->add_option("--image", ca->images,
                   "application image id from 'image upload' (repeatable)")
      ->required();

  struct ListArgs {
    std::string group;
    PageRequest page;
  };
  auto la = std::make_shared<ListArgs>();
  CLI::App* list =
      Verb(noun, ctx, "list", "list deployments, by product and group",
           Access::kTenant, [la](Context& c) -> absl::Status {
             v1::ListDeploymentsRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_device_group_id(la->group);
             std::vector<v1::Deployment> all;
             if (auto s = ForEachPage(
                     c, &S::ListDeployments, req,
                     std::function<void(const v1::ListDeploymentsResponse&)>(
                         [&all](const v1::ListDeploymentsResponse& r) {
                           all.insert(all.end(), r.deployments().begin(),
                                      r.deployments().end());
                         }));
                 !s.ok()) {
               return s;
             }
             auto groups = Groups(c);
             if (!groups.ok()) return groups.status();
             const auto& g = *groups;
             PrintList<v1::Deployment>(
                 c, std::move(all),
                 [&g](const v1::Deployment& d) {
                   auto row = DeploymentRow(g, d);
                   return absl::StrCat(row[0], "/", row[1], "/", d.id());
                 },
                 la->page, kDeploymentHeaders,
                 [&g](const v1::Deployment& d) { return DeploymentRow(g, d); });
             return absl::OkStatus();
           });
  list->add_option("--device-group", la->group,
                   "only this group's deployments (id or PRODUCT/GROUP)");
  AddPaging(list, &la->page);

  auto doomed = std::make_shared<std::string>();
  CLI::App* del =
      Verb(noun, ctx, "delete",
           "delete a deployment (the group's previous deployment, if any, "
           "applies again)",
           Access::kTenant, [doomed](Context& c) -> absl::Status {
             v1::DeleteDeploymentRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_deployment_id(*doomed);
             v1::DeleteResponse resp;
             if (auto s = c.Call(&S::DeleteDeployment, req, &resp); !s.ok()) {
               return s;
             }
             PrintDeleted(c, "deployment", *doomed);
             return absl::OkStatus();
           });
  del->add_option("--deployment", *doomed, "deployment id")->required();
  AddDeploymentRolloutCommands(noun, ctx);
}

}  // namespace sphere::cli
