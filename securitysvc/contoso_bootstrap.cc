#include "securitysvc/contoso_bootstrap.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "appsvc/password.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/factory/factory.h"
#include "securitysvc/management/image_pipeline.h"
#include "twin/dw100/firmware.h"
#include "twin/state_file.h"

namespace sphere::contoso_bootstrap {

// Web accounts for the demo cluster: fewer PBKDF2 rounds than appsvc's
// default (a local cluster hashes up to 1 + kMaxOwnerAccounts passwords at
// bootstrap), still salted and slow.
constexpr int kWebPasswordIterations = 100'000;
constexpr size_t kMaxOwnerAccounts = 16;
namespace {

using v1::ManagementService;

template <typename Resp, typename Req, typename Fn>
absl::StatusOr<Resp> Call(Fn fn, const Req& req, absl::string_view what) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  Resp resp;
  grpc::Status st = fn(&ctx, req, &resp);
  if (!st.ok()) {
    absl::Status s = rpc::FromGrpcStatus(st);
    return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
  }
  return resp;
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

constexpr char kHeaterPart[] = "DW100-HTR-220";

}  // namespace

Dw100Customer CustomerFor(int i) {
  static const char* kNames[] = {"Ada",  "Brian", "Chen",  "Dana",
                                 "Elif", "Femi",  "Grace", "Hiro"};
  Dw100Customer c;
  c.name = absl::StrCat(kNames[(i - 1) % 8], i > 8 ? absl::StrCat(" ", i) : "");
  c.email = absl::StrCat("owner", i, "@example.com");
  c.shop = i == 2 ? "shop-bellevue" : "shop-redmond";
  c.under_warranty = i != 3;
  return c;
}

absl::StatusOr<Result> Run(const pki::ClusterPki& pki,
                           const cluster::ClusterConfig& config,
                           uint32_t os_version, int twins) {
  if (twins < 0 || twins > kMaxTwins) {
    return absl::InvalidArgumentError(
        absl::StrCat("--twins must be between 0 and ", kMaxTwins));
  }
  const std::string dir = config.state_dir;
  Result out;
  auto op_tls = pki.TlsFor("operator");
  if (!op_tls.ok()) return op_tls.status();
  auto op = ManagementService::NewStub(rpc::NewChannel(
      config.management, *op_tls, config.ServerName("management")));

  // 1. Tenant and its operator credential.
  v1::CreateTenantRequest ct;
  ct.set_name(kTenant);
  auto tenant = Call<v1::Tenant>(
      [&](auto* c, auto& r, auto* o) { return op->CreateTenant(c, r, o); }, ct,
      "create tenant Contoso");
  if (absl::IsAlreadyExists(tenant.status())) {
    v1::GetTenantRequest gt;
    gt.set_tenant_id(kTenant);
    tenant = Call<v1::Tenant>(
        [&](auto* c, auto& r, auto* o) { return op->GetTenant(c, r, o); }, gt,
        "get tenant Contoso");
  }
  if (!tenant.ok()) return tenant.status();
  out.tenant_id = tenant->id();
  const std::string tenants_dir = absl::StrCat(pki.dir, "/tenants");
  out.tenant_cert = absl::StrCat(tenants_dir, "/", kTenant, ".pem");
  out.tenant_key = absl::StrCat(tenants_dir, "/", kTenant, ".key");
  if (!Exists(out.tenant_cert) || !Exists(out.tenant_key)) {
    crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
    v1::IssueOperatorCredentialRequest ic;
    ic.set_tenant_id(out.tenant_id);
    ic.set_operator_name("contoso");
    ic.set_public_key(key.PublicKey());
    auto cred = Call<v1::OperatorCredential>(
        [&](auto* c, auto& r, auto* o) {
          return op->IssueOperatorCredential(c, r, o);
        },
        ic, "issue Contoso's operator credential");
    if (!cred.ok()) return cred.status();
    if (auto s = util::MakeDirs(tenants_dir, 0700); !s.ok()) return s;
    if (auto s = util::WriteFile(out.tenant_key, key.ToPem(), 0600); !s.ok()) {
      return s;
    }
    if (auto s = util::WriteFile(out.tenant_cert, cred->certificate_pem());
        !s.ok()) {
      return s;
    }
  }
  rpc::TlsFiles tenant_tls;
  using PathField = std::pair<const std::string*, std::string*>;
  for (auto [path, field] : {PathField{&out.tenant_cert, &tenant_tls.cert_pem},
                             PathField{&out.tenant_key, &tenant_tls.key_pem},
                             PathField{&config.root_ca, &tenant_tls.ca_pem}}) {
    auto text = util::ReadFile(*path);
    if (!text.ok()) return text.status();
    *field = *text;
  }
  auto contoso = ManagementService::NewStub(rpc::NewChannel(
      config.management, tenant_tls, config.ServerName("management")));

  // 2. Product DW100 (its device groups come with it).
  v1::CreateProductRequest cp;
  cp.set_tenant_id(out.tenant_id);
  cp.set_name(kProduct);
  cp.set_description("DW100 dishwasher");
  auto product = Call<v1::Product>(
      [&](auto* c, auto& r, auto* o) {
        return contoso->CreateProduct(c, r, o);
      },
      cp, "create product DW100");
  if (!product.ok() && !absl::IsAlreadyExists(product.status())) {
    return product.status();
  }

  // 3. App v1: Contoso's build, re-signed by the platform, deployed.
  const std::string apps_dir = absl::StrCat(dir, "/images/apps/v1");
  std::vector<v1::ImagePackage> signed_apps;
  const std::vector<std::string> components = {dw100::kHighLevelApp,
                                               dw100::kRealtimeApp};
  bool have_apps = true;
  for (const std::string& c : components) {
    have_apps &= Exists(absl::StrCat(apps_dir, "/", c, ".pkg"));
  }
  if (have_apps) {
    for (const std::string& c : components) {
      auto bytes = util::ReadFile(absl::StrCat(apps_dir, "/", c, ".pkg"));
      if (!bytes.ok()) return bytes.status();
      v1::ImagePackage p;
      if (!p.ParseFromString(*bytes)) {
        return absl::DataLossError(
            absl::StrCat(apps_dir, "/", c, ".pkg is corrupt"));
      }
      signed_apps.push_back(std::move(p));
    }
  } else {
    const crypto::EcPrivateKey build_key = crypto::EcPrivateKey::Generate();
    auto built = dw100::Dw100AppImages(build_key, 1);
    if (!built.ok()) return built.status();
    management::ImagePipeline store(
        crypto::EcPrivateKey::Generate(), absl::StrCat(dir, "/images/catalog"),
        management::PackageKeyFromMasterKey(pki.master_key));
    std::vector<std::string> ids;
    if (auto s = util::MakeDirs(apps_dir, 0755); !s.ok()) return s;
    for (size_t i = 0; i < built->size(); ++i) {
      v1::UploadImageRequest up;
      up.set_tenant_id(out.tenant_id);
      up.set_package((*built)[i].SerializeAsString());
      auto image = Call<v1::Image>(
          [&](auto* c, auto& r, auto* o) {
            return contoso->UploadImage(c, r, o);
          },
          up, absl::StrCat("upload ", components[i], " v1"));
      if (!image.ok()) return image.status();
      ids.push_back(image->id());
      auto pkg = store.ReadPackage(image->id());
      if (!pkg.ok()) return pkg.status();
      if (auto s = util::WriteFile(
              absl::StrCat(apps_dir, "/", components[i], ".pkg"),
              pkg->SerializeAsString());
          !s.ok()) {
        return s;
      }
      signed_apps.push_back(*std::move(pkg));
    }
    for (const char* group : {"Field Test", "Production"}) {
      v1::CreateDeploymentRequest cd;
      cd.set_tenant_id(out.tenant_id);
      cd.set_device_group_id(absl::StrCat(kProduct, "/", group));
      for (const auto& id : ids) cd.add_image_ids(id);
      auto dep = Call<v1::Deployment>(
          [&](auto* c, auto& r, auto* o) {
            return contoso->CreateDeployment(c, r, o);
          },
          cd, absl::StrCat("deploy app v1 to DW100/", group));
      if (!dep.ok()) return dep.status();
    }
  }

  // Contoso's build of app v2, not uploaded: what Contoso ships next
  // (`spherectl image upload --file ...` in the demo).
  const std::string next_dir = absl::StrCat(dir, "/contoso/build/app-v2");
  if (!Exists(absl::StrCat(next_dir, "/", dw100::kHighLevelApp, ".pkg"))) {
    auto next = dw100::Dw100AppImages(crypto::EcPrivateKey::Generate(), 2);
    if (!next.ok()) return next.status();
    if (auto s = util::MakeDirs(next_dir, 0755); !s.ok()) return s;
    for (size_t i = 0; i < next->size(); ++i) {
      if (auto s = util::WriteFile(
              absl::StrCat(next_dir, "/", components[i], ".pkg"),
              (*next)[i].SerializeAsString());
          !s.ok()) {
        return s;
      }
    }
  }

  // 4. Twins: manufactured, claimed, grouped, app v1 installed.
  std::unique_ptr<factory::DeviceRegistry> registry;
  std::unique_ptr<factory::Factory> line;
  for (int i = 1; i <= twins; ++i) {
    BootstrappedTwin t;
    t.name = absl::StrCat("dw100-", i);
    t.group = absl::StrCat(kProduct, "/", i == 1 ? "Field Test" : "Production");
    const std::string path = twin::TwinStatePath(dir, t.name);
    if (Exists(path)) {
      auto state = twin::ReadTwinState(path);
      if (!state.ok()) return state.status();
      auto dev = mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                                      state->rom_image_signing_key(),
                                      state->device(), {});
      if (!dev.ok()) return dev.status();
      t.device_id = (*dev)->device_id();
      out.twins.push_back(std::move(t));
      continue;
    }
    if (line == nullptr) {
      auto r = factory::ManagementRegistry(config);
      if (!r.ok()) return r.status();
      registry = *std::move(r);
      auto f = factory::Factory::Open(dir, os_version, registry.get());
      if (!f.ok()) return f.status();
      line = *std::move(f);
    }
    auto made = line->ManufactureTwin(dir, t.name);
    if (!made.ok()) return made.status();
    t.device_id = made->device_id;
    v1::ClaimDeviceRequest cl;
    cl.set_tenant_id(out.tenant_id);
    cl.set_device_id(t.device_id);
    auto claimed =
        Call<v1::Device>([&](auto* c, auto& r,
                             auto* o) { return contoso->ClaimDevice(c, r, o); },
                         cl, absl::StrCat("claim ", t.name));
    if (!claimed.ok()) return claimed.status();
    v1::AssignDeviceRequest as;
    as.set_tenant_id(out.tenant_id);
    as.set_device_id(t.device_id);
    as.set_device_group_id(t.group);
    auto assigned = Call<v1::Device>(
        [&](auto* c, auto& r, auto* o) {
          return contoso->AssignDevice(c, r, o);
        },
        as, absl::StrCat("assign ", t.name, " to ", t.group));
    if (!assigned.ok()) return assigned.status();
    // The factory line installs app v1 (the device checks the platform's
    // signature and the manifests).
    twin::TwinStateFile state = made->state;
    auto dev =
        mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                             state.rom_image_signing_key(), state.device(), {});
    if (!dev.ok()) return dev.status();
    if (auto s = (*dev)->Boot(); !s.ok()) return s;
    for (const auto& pkg : signed_apps) {
      if (auto s = (*dev)->LoadApp(pkg); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("install app on ", t.name,
                                                   ": ", s.message()));
      }
    }
    auto sealed = (*dev)->Serialize();
    if (!sealed.ok()) return sealed.status();
    state.set_device(*sealed);
    if (auto s = twin::WriteTwinState(path, state); !s.ok()) return s;
    out.twins.push_back(std::move(t));
  }

  // 5. The Contoso cloud's customers and repair shops.
  out.seed_file = absl::StrCat(dir, "/appsvc/seed.json");
  if (!Exists(out.seed_file)) {
    nlohmann::ordered_json seed;
    seed["customers"] = nlohmann::json::array();
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < out.twins.size(); ++i) {
      const Dw100Customer c = CustomerFor(static_cast<int>(i) + 1);
      seed["customers"].push_back(
          {{"device_id", out.twins[i].device_id},
           {"name", c.name},
           {"email", c.email},
           {"shop", c.shop},
           {"warranty_until",
            absl::FormatTime(absl::RFC3339_sec,
                             c.under_warranty ? now + absl::Hours(24 * 365)
                                              : now - absl::Hours(24 * 30),
                             absl::UTCTimeZone())}});
    }
    // Web accounts (appsvc/web_auth.h): Contoso support and the owners of
    // the first kMaxOwnerAccounts dishwashers, random passwords stored only
    // as salted PBKDF2 hashes; the plaintexts go to a 0600 file for
    // `./sphere demo` to print.
    std::string credentials =
        "# appsvc web accounts (demo cluster): account password [twin "
        "device]\n";
    auto account = [&](const std::string& user, const std::string& role,
                       const std::string& twin,
                       const std::string& device) -> absl::Status {
      const std::string pw = contoso::appsvc::RandomToken(8);
      auto hash = contoso::appsvc::HashPassword(pw, kWebPasswordIterations);
      if (!hash.ok()) return hash.status();
      nlohmann::ordered_json a = {{"user", user}, {"role", role}};
      if (!device.empty()) a["device_id"] = device;
      a["password_hash"] = *hash;
      seed["accounts"].push_back(a);
      absl::StrAppend(&credentials, user, " ", pw,
                      twin.empty() ? "" : absl::StrCat(" ", twin, " ", device),
                      "\n");
      return absl::OkStatus();
    };
    seed["accounts"] = nlohmann::json::array();
    if (auto s = account("support", "support", "", ""); !s.ok()) return s;
    for (size_t i = 0; i < out.twins.size() && i < kMaxOwnerAccounts; ++i) {
      if (auto s = account(absl::StrCat("owner-", out.twins[i].name), "owner",
                           out.twins[i].name, out.twins[i].device_id);
          !s.ok()) {
        return s;
      }
    }
    seed["shops"] =
        nlohmann::json::array({{{"id", "shop-redmond"},
                                {"name", "Redmond Appliance Repair"},
                                {"inventory", {{kHeaterPart, 1}}}},
                               {{"id", "shop-bellevue"},
                                {"name", "Bellevue Home Service"},
                                {"inventory", {{kHeaterPart, 0}}}}});
    if (auto s = util::MakeDirs(absl::StrCat(dir, "/appsvc"), 0700); !s.ok()) {
      return s;
    }
    if (auto s = util::WriteFile(out.seed_file, seed.dump(2) + "\n", 0600);
        !s.ok()) {
      return s;
    }
    if (auto s = util::WriteFile(absl::StrCat(dir, "/appsvc/web-accounts.txt"),
                                 credentials, 0600);
        !s.ok()) {
      return s;
    }
  }
  return out;
}

}  // namespace sphere::contoso_bootstrap
