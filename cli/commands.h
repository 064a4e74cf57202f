// The spherectl nouns, one file each (tenant.cc, product.cc, ...), and the
// helpers their verbs share: id -> name lookups for tables, --page-size /
// --page-token, sorted and paged list printing.
#ifndef SPHERE_CLI_COMMANDS_H_
#define SPHERE_CLI_COMMANDS_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/context.h"
#include "cli/output.h"

namespace CLI {
class App;
}

namespace sphere::cli {

void AddTenantCommands(CLI::App* app, Context* ctx);
void AddProductCommands(CLI::App* app, Context* ctx);
void AddDeviceGroupCommands(CLI::App* app, Context* ctx);
void AddDeviceCommands(CLI::App* app, Context* ctx);
void AddCaCertificateCommands(CLI::App* app, Context* ctx);
void AddImageCommands(CLI::App* app, Context* ctx);
void AddOsCommands(CLI::App* app, Context* ctx);
void AddDeploymentCommands(CLI::App* app, Context* ctx);
// deployment status|pause|resume|abort (deployment_rollout.cc).
void AddDeploymentRolloutCommands(CLI::App* noun, Context* ctx);
// RolloutSummary: a deployment's rollout state and stage for `deployment
// list` ("running: stage 10% (2 of 4)", "halted at 1% (1 of 4): why",
// "active" for a deployment to the whole group).
std::string RolloutSummary(const v1::Deployment& d);
void AddClusterCommands(CLI::App* app, Context* ctx);
// After AddTenantCommands: adds `tenant download-error-report` and `error`.
void AddErrorCommands(CLI::App* app, Context* ctx);

// Names maps ids the server returns to the names users know, loading the
// tenant's products, groups and the visible tenants on first use. An id it
// cannot resolve (e.g. another tenant's) prints as the id; "" as "-".
class Names {
 public:
  explicit Names(Context& ctx) : ctx_(ctx) {}
  std::string Product(const std::string& id);
  std::string Group(const std::string& id);  // the group's name
  std::string Tenant(const std::string& id);

 private:
  void LoadCatalog();
  void LoadTenants();
  Context& ctx_;
  std::optional<std::map<std::string, std::string>> products_, groups_,
      tenants_;
};

// AddPaging adds --page-size and --page-token to a list verb.
void AddPaging(CLI::App* verb, PageRequest* page);

// PrintList sorts `items` by `key`, prints the requested page as a table of
// `headers` / `row` (or a JSON array of the messages), and says how to get
// the next page.
template <typename T>
void PrintList(Context& ctx, std::vector<T> items,
               const std::function<std::string(const T&)>& key,
               const PageRequest& page, const std::vector<std::string>& headers,
               const std::function<std::vector<std::string>(const T&)>& row) {
  std::stable_sort(items.begin(), items.end(),
                   [&](const T& a, const T& b) { return key(a) < key(b); });
  std::string next;
  std::vector<T> shown = PageOf<T>(items, key, page, &next);
  std::vector<std::vector<std::string>> rows;
  json arr = json::array();
  for (const T& i : shown) {
    if (ctx.printer().json_output()) {
      arr.push_back(ToJson(i));
    } else {
      rows.push_back(row(i));
    }
  }
  ctx.printer().Print(headers, rows, arr);
  PrintNextPage(next, page.size);
}

// PrintOne prints one object as a one-row table or a JSON object.
template <typename T>
void PrintOne(Context& ctx, const T& item,
              const std::vector<std::string>& headers,
              const std::vector<std::string>& row) {
  ctx.printer().Print(headers, {row}, ToJson(item));
}

// PrintDeleted reports a successful delete: "deleted KIND NAME" (table) or
// {"deleted": KIND, "name": NAME} (json).
void PrintDeleted(Context& ctx, const std::string& kind,
                  const std::string& name);

// Require fails with a usage error naming `flag` when `value` is empty
// (CLI11 checks presence; this catches --name "").
absl::Status Require(const std::string& flag, const std::string& value);

// ForEachPage pages through a server List (page_size 1000, the server's
// largest, then each next_page_token) and hands every page to `page`, so a
// list verb gets every record however many the server holds.
template <typename Stub, typename Req, typename Resp>
absl::Status ForEachPage(Context& c,
                         grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                      const Req&, Resp*),
                         Req req,
                         const std::function<void(const Resp&)>& page) {
  req.set_page_size(1000);
  req.clear_page_token();
  while (true) {
    Resp resp;
    if (auto s = c.Call(method, req, &resp); !s.ok()) return s;
    page(resp);
    if (resp.next_page_token().empty()) return absl::OkStatus();
    if (resp.next_page_token() == req.page_token()) {
      return absl::InternalError(
          "the server answered the same page token twice; stopped listing");
    }
    req.set_page_token(resp.next_page_token());
  }
}

}  // namespace sphere::cli

#endif  // SPHERE_CLI_COMMANDS_H_
