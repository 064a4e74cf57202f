// spherectl tenant create|list|show|credential|select.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "absl/strings/match.h"
#include "cli/commands.h"
#include "common/cluster/cluster_config.h"
#include "common/cluster/pki_layout.h"
#include "common/crypto/crypto.h"
#include "common/util/file.h"

namespace sphere::cli {
namespace {

using S = v1::ManagementService::Stub;

const std::vector<std::string> kTenantHeaders = {"NAME", "ID"};
std::vector<std::string> TenantRow(const v1::Tenant& t) {
  return {t.name(), t.id()};
}

absl::Status Credential(Context& ctx, const std::string& name,
                        const std::string& operator_name) {
  if (ctx.cluster().tenant_credential) {
    return absl::PermissionDeniedError(
        absl::StrCat("issuing operator credentials needs the platform-operator "
                     "credential; drop --tenant ",
                     ctx.tenant()));
  }
  // Canonical name (the user may type "contoso" for "Contoso").
  v1::GetTenantRequest get;
  get.set_tenant_id(name);
  v1::Tenant t;
  if (auto s = ctx.Call(&S::GetTenant, get, &t); !s.ok()) return s;
  crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
  v1::IssueOperatorCredentialRequest req;
  req.set_tenant_id(t.id());
  req.set_operator_name(operator_name.empty() ? absl::StrCat(t.name(), "-admin")
                                              : operator_name);
  req.set_public_key(key.PublicKey());
  v1::OperatorCredential cred;
  if (auto s = ctx.Call(&S::IssueOperatorCredential, req, &cred); !s.ok()) {
    return s;
  }
  const std::string dir = cluster::PkiPath(ctx.cluster().state_dir, "tenants");
  if (auto s = util::MakeDirs(dir, 0700); !s.ok()) return s;
  const std::string cert_path = absl::StrCat(dir, "/", t.name(), ".pem");
  const std::string key_path = absl::StrCat(dir, "/", t.name(), ".key");
  if (auto s = util::WriteFile(key_path, key.ToPem(), 0600); !s.ok()) return s;
  if (auto s = util::WriteFile(cert_path, cred.certificate_pem()); !s.ok()) {
    return s;
  }
  if (auto s = cluster::RecordTenantCredential(ctx.cluster().path, t.name(),
                                               cert_path, key_path);
      !s.ok()) {
    return s;
  }
  ctx.printer().Print({"TENANT", "OPERATOR", "CERTIFICATE", "KEY"},
                      {{t.name(), req.operator_name(), cert_path, key_path}},
                      {{"tenant", t.name()},
                       {"tenant_id", t.id()},
                       {"operator", req.operator_name()},
                       {"cert", cert_path},
                       {"key", key_path}});
  return absl::OkStatus();
}

}  // namespace

void AddTenantCommands(CLI::App* app, Context* ctx) {
  CLI::App* noun =
      Noun(app, "tenant",
           "tenants, their operator credentials and the selected tenant");

  auto name = std::make_shared<std::string>();
  CLI::App* create =
      Verb(noun, ctx, "create", "create a tenant and its CA", Access::kPlatform,
           [name](Context& c) -> absl::Status {
             if (auto s = CheckName("--name", *name); !s.ok()) return s;
             v1::CreateTenantRequest req;
             req.set_name(*name);
             v1::Tenant t;
             if (auto s = c.Call(&S::CreateTenant, req, &t); !s.ok()) return s;
             PrintOne(c, t, kTenantHeaders, TenantRow(t));
             return absl::OkStatus();
           });
  create->add_option("--name", *name, "tenant name, e.g. Contoso")->required();

  auto page = std::make_shared<PageRequest>();
  CLI::App* list = Verb(
      noun, ctx, "list", "list the tenants you can see, by name",
      Access::kTenant, [page](Context& c) -> absl::Status {
        std::vector<v1::Tenant> all;
        if (auto s =
                ForEachPage(c, &S::ListTenants, v1::ListTenantsRequest(),
                            std::function<void(const v1::ListTenantsResponse&)>(
                                [&all](const v1::ListTenantsResponse& r) {
                                  all.insert(all.end(), r.tenants().begin(),
                                             r.tenants().end());
                                }));
            !s.ok()) {
          return s;
        }
        PrintList<v1::Tenant>(
            c, std::move(all), [](const v1::Tenant& t) { return t.name(); },
            *page, kTenantHeaders, TenantRow);
        return absl::OkStatus();
      });
  AddPaging(list, page.get());

  auto show_name = std::make_shared<std::string>();
  CLI::App* show = Verb(
      noun, ctx, "show",
      "show a tenant (default: the selected tenant or your own)",
      Access::kTenant, [show_name](Context& c) -> absl::Status {
        v1::GetTenantRequest req;
        req.set_tenant_id(show_name->empty() ? c.TenantField() : *show_name);
        v1::Tenant t;
        if (auto s = c.Call(&S::GetTenant, req, &t); !s.ok()) return s;
        PrintOne(c, t, kTenantHeaders, TenantRow(t));
        return absl::OkStatus();
      });
  show->add_option("--name", *show_name, "tenant id or name");

  auto cred_name = std::make_shared<std::string>();
  auto operator_name = std::make_shared<std::string>();
  CLI::App* credential = Verb(
      noun, ctx, "credential",
      "issue an operator credential scoped to a tenant (platform operator); "
      "writes DIR/pki/tenants/N.pem and N.key and records them in the "
      "cluster file, so --tenant N then acts as N's own operator",
      Access::kPlatform, [cred_name, operator_name](Context& c) {
        return Credential(c, *cred_name, *operator_name);
      });
  credential->add_option("--name", *cred_name, "tenant id or name")->required();
  credential->add_option("--operator", *operator_name,
                         "operator name in the certificate (default "
                         "NAME-admin)");

  auto select_name = std::make_shared<std::string>();
  auto clear = std::make_shared<bool>(false);
  CLI::App* select = Verb(
      noun, ctx, "select",
      "make a tenant the default for later commands (stored in "
      "$SPHERECTL_CONFIG, else ~/.config/sphere/spherectl.json); --tenant and "
      "SPHERE_TENANT override it",
      Access::kPlatform, [select_name, clear](Context& c) -> absl::Status {
        if (*clear) {
          if (auto s = SaveSelectedTenant(""); !s.ok()) return s;
          std::cout << "no tenant selected (" << ConfigPath() << ")\n";
          return absl::OkStatus();
        }
        if (auto s = Require("--name", *select_name); !s.ok()) return s;
        if (auto s = CheckName("--name", *select_name); !s.ok()) return s;
        // The tenant must exist; store its canonical name.
        v1::GetTenantRequest req;
        req.set_tenant_id(c.cluster().tenant_credential ? "" : *select_name);
        v1::Tenant t;
        if (auto s = c.Call(&S::GetTenant, req, &t); !s.ok()) return s;
        if (c.cluster().tenant_credential &&
            !absl::EqualsIgnoreCase(t.name(), *select_name) &&
            t.id() != *select_name) {
          return absl::PermissionDeniedError(absl::StrCat(
              "your credential is scoped to tenant \"", t.name(), "\""));
        }
        if (auto s = SaveSelectedTenant(t.name()); !s.ok()) return s;
        std::cout << "selected tenant " << Escape(t.name()) << " ("
                  << ConfigPath() << ")\n";
        return absl::OkStatus();
      });
  auto* name_opt =
      select->add_option("--name", *select_name, "tenant id or name");
  select->add_flag("--clear", *clear, "forget the selected tenant")
      ->excludes(name_opt);
}

}  // namespace sphere::cli
