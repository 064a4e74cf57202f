// spherectl device-group create|list|show|update.
#include <CLI/CLI.hpp>
#include <memory>

#include "cli/commands.h"

namespace sphere::cli {
namespace {

using S = v1::ManagementService::Stub;

const std::vector<std::string> kGroupHeaders = {"PRODUCT", "NAME", "OS FEED",
                                                "APP UPDATES", "ID"};

std::vector<std::string> GroupRow(Names& names, const v1::DeviceGroup& g) {
  return {names.Product(g.product_id()), g.name(), FeedName(g.os_feed()),
          PolicyName(g.app_update_policy()), g.id()};
}

struct Settings {
  std::string description, os_feed, app_update_policy;
};

void AddSettings(CLI::App* verb, Settings* s) {
  verb->add_option("--os-feed", s->os_feed, "Retail or RetailEval");
  verb->add_option("--app-update-policy", s->app_update_policy,
                   "UpdateAll, No3rdPartyAppUpdates or NoUpdates");
  verb->add_option("--description", s->description, "free text");
}

// SetSettings fills what 'create' and 'update' share.
template <typename Req>
absl::Status SetSettings(const Settings& s, Req* req) {
  req->set_description(s.description);
  if (!s.os_feed.empty()) {
    auto f = ParseFeed(s.os_feed);
    if (!f.ok()) return f.status();
    req->set_os_feed(*f);
  }
  if (!s.app_update_policy.empty()) {
    auto p = ParsePolicy(s.app_update_policy);
    if (!p.ok()) return p.status();
    req->set_app_update_policy(*p);
  }
  return absl::OkStatus();
}

absl::Status PrintGroup(Context& c, const v1::DeviceGroup& g) {
  Names names(c);
  PrintOne(c, g, kGroupHeaders, GroupRow(names, g));
  return absl::OkStatus();
}

}  // namespace

void AddDeviceGroupCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun = Noun(app, "device-group",
                        "device groups of a product (G is a group id or "
                        "PRODUCT/GROUP, e.g. DW100/Production)");

  struct CreateArgs {
    std::string product, name;
    Settings settings;
    double rollout_failure_threshold = 0;
  };
  auto ca = std::make_shared<CreateArgs>();
  CLI::App* create =
      Verb(noun, ctx, "create", "add a device group to a product",
           Access::kTenant, [ca](Context& c) -> absl::Status {
             if (auto s = CheckName("--name", ca->name); !s.ok()) return s;
             v1::CreateDeviceGroupRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_product(ca->product);
             req.set_name(ca->name);
             if (auto s = SetSettings(ca->settings, &req); !s.ok()) return s;
             req.set_rollout_failure_threshold(ca->rollout_failure_threshold);
             v1::DeviceGroup g;
             if (auto s = c.Call(&S::CreateDeviceGroup, req, &g); !s.ok())
               return s;
             return PrintGroup(c, g);
           });
  create->add_option("--product", ca->product, "product id or name")
      ->required();
  create->add_option("--name", ca->name, "group name")->required();
  create->add_option("--rollout-failure-threshold",
                     ca->rollout_failure_threshold,
                     "staged rollout: halt a stage whose failure rate passes "
                     "this fraction (0..1; 0 = never halt)");
  AddSettings(create, &ca->settings);

  struct ListArgs {
    std::string product;
    PageRequest page;
  };
  auto la = std::make_shared<ListArgs>();
  CLI::App* list = Verb(
      noun, ctx, "list", "list device groups, by product and name",
      Access::kTenant, [la](Context& c) -> absl::Status {
        v1::ListDeviceGroupsRequest req;
        req.set_tenant_id(c.TenantField());
        req.set_product(la->product);
        std::vector<v1::DeviceGroup> all;
        if (auto s = ForEachPage(
                c, &S::ListDeviceGroups, req,
                std::function<void(const v1::ListDeviceGroupsResponse&)>(
                    [&all](const v1::ListDeviceGroupsResponse& r) {
                      all.insert(all.end(), r.groups().begin(),
                                 r.groups().end());
                    }));
            !s.ok()) {
          return s;
        }
        Names names(c);
        PrintList<v1::DeviceGroup>(
            c, std::move(all),
            [&names](const v1::DeviceGroup& g) {
              return names.Product(g.product_id()) + "/" + g.name();
            },
            la->page, kGroupHeaders,
            [&names](const v1::DeviceGroup& g) { return GroupRow(names, g); });
        return absl::OkStatus();
      });
  list->add_option("--product", la->product, "only this product's groups");
  AddPaging(list, &la->page);

  auto group = std::make_shared<std::string>();
  CLI::App* show =
      Verb(noun, ctx, "show", "show one device group", Access::kTenant,
           [group](Context& c) -> absl::Status {
             v1::GetDeviceGroupRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_device_group_id(*group);
             v1::DeviceGroup g;
             if (auto s = c.Call(&S::GetDeviceGroup, req, &g); !s.ok()) {
               return s;
             }
             return PrintGroup(c, g);
           });
  show->add_option("--device-group", *group, "group id or PRODUCT/GROUP")
      ->required();

  struct UpdateArgs {
    std::string group;
    Settings settings;
  };
  auto ua = std::make_shared<UpdateArgs>();
  CLI::App* update =
      Verb(noun, ctx, "update",
           "change a group's OS feed, app policy or description",
           Access::kTenant, [ua](Context& c) -> absl::Status {
             v1::UpdateDeviceGroupRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_device_group_id(ua->group);
             if (auto s = SetSettings(ua->settings, &req); !s.ok()) return s;
             v1::DeviceGroup g;
             if (auto s = c.Call(&S::UpdateDeviceGroup, req, &g); !s.ok())
               return s;
             return PrintGroup(c, g);
           });
  update->add_option("--device-group", ua->group, "group id or PRODUCT/GROUP")
      ->required();
  AddSettings(update, &ua->settings);

  auto doomed = std::make_shared<std::string>();
  CLI::App* del =
      Verb(noun, ctx, "delete",
           "delete a device group; refused (exit 7) while it has devices or "
           "deployments",
           Access::kTenant, [doomed](Context& c) -> absl::Status {
             v1::DeleteDeviceGroupRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_device_group_id(*doomed);
             v1::DeleteResponse resp;
             if (auto s = c.Call(&S::DeleteDeviceGroup, req, &resp); !s.ok()) {
               return s;
             }
             PrintDeleted(c, "device group", *doomed);
             return absl::OkStatus();
           });
  del->add_option("--device-group", *doomed, "group id or PRODUCT/GROUP")
      ->required();
}

}  // namespace sphere::cli
