// spherectl product create|list|show.
#include <CLI/CLI.hpp>
#include <memory>

#include "cli/commands.h"

namespace sphere::cli {
namespace {

using S = v1::ManagementService::Stub;

const std::vector<std::string> kProductHeaders = {"NAME", "ID", "DESCRIPTION"};
std::vector<std::string> ProductRow(const v1::Product& p) {
  return {p.name(), p.id(), p.description()};
}

}  // namespace

void AddProductCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun = Noun(app, "product", "products of a tenant");

  struct CreateArgs {
    std::string name, description;
  };
  auto ca = std::make_shared<CreateArgs>();
  CLI::App* create =
      Verb(noun, ctx, "create",
           "create a product (with the five default device groups)",
           Access::kTenant, [ca](Context& c) -> absl::Status {
             if (auto s = CheckName("--name", ca->name); !s.ok()) return s;
             v1::CreateProductRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_name(ca->name);
             req.set_description(ca->description);
             v1::Product p;
             if (auto s = c.Call(&S::CreateProduct, req, &p); !s.ok()) return s;
             PrintOne(c, p, kProductHeaders, ProductRow(p));
             return absl::OkStatus();
           });
  create->add_option("--name", ca->name, "product name, e.g. DW100")
      ->required();
  create->add_option("--description", ca->description, "free text");

  auto page = std::make_shared<PageRequest>();
  CLI::App* list = Verb(
      noun, ctx, "list", "list the tenant's products, by name", Access::kTenant,
      [page](Context& c) -> absl::Status {
        v1::ListProductsRequest req;
        req.set_tenant_id(c.TenantField());
        std::vector<v1::Product> all;
        if (auto s = ForEachPage(
                c, &S::ListProducts, req,
                std::function<void(const v1::ListProductsResponse&)>(
                    [&all](const v1::ListProductsResponse& r) {
                      all.insert(all.end(), r.products().begin(),
                                 r.products().end());
                    }));
            !s.ok()) {
          return s;
        }
        PrintList<v1::Product>(
            c, std::move(all), [](const v1::Product& p) { return p.name(); },
            *page, kProductHeaders, ProductRow);
        return absl::OkStatus();
      });
  AddPaging(list, page.get());

  auto product = std::make_shared<std::string>();
  CLI::App* show =
      Verb(noun, ctx, "show", "show one product", Access::kTenant,
           [product](Context& c) -> absl::Status {
             v1::GetProductRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_product(*product);
             v1::Product p;
             if (auto s = c.Call(&S::GetProduct, req, &p); !s.ok()) {
               return s;
             }
             PrintOne(c, p, kProductHeaders, ProductRow(p));
             return absl::OkStatus();
           });
  show->add_option("--product", *product, "product id or name")->required();

  auto doomed = std::make_shared<std::string>();
  CLI::App* del =
      Verb(noun, ctx, "delete",
           "delete a product and its device groups; refused (exit 7) while any "
           "group has devices or deployments",
           Access::kTenant, [doomed](Context& c) -> absl::Status {
             v1::DeleteProductRequest req;
             req.set_tenant_id(c.TenantField());
             req.set_product(*doomed);
             v1::DeleteResponse resp;
             if (auto s = c.Call(&S::DeleteProduct, req, &resp); !s.ok())
               return s;
             PrintDeleted(c, "product", *doomed);
             return absl::OkStatus();
           });
  del->add_option("--product", *doomed, "product id or name")->required();
}

}  // namespace sphere::cli
