#include "securitysvc/shard_server/test_platform.h"

#include "absl/strings/str_cat.h"
#include "common/store/memory_store.h"
#include "mcu-model/image.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/auth/scope.h"

namespace sphere::shard {

TestPlatform::~TestPlatform() {
  if (server_) server_->Shutdown(absl::Seconds(5));
}

absl::Status TestPlatform::Start(Options options) {
  const absl::Time now = absl::Now();
  root_key_ = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = "Test Root";
  spec.subject_public_key = root_key_.PublicKey();
  spec.not_before = now - absl::Hours(1);
  spec.not_after = now + absl::Hours(24 * 30);
  spec.usage = crypto::KeyUsage::kCa;
  auto root_pem = crypto::IssueCertificate(spec, root_key_, "");
  if (!root_pem.ok()) return root_pem.status();
  root_pem_ = *root_pem;
  crypto::EcPrivateKey tenant_ca_key = crypto::EcPrivateKey::Generate();
  spec.common_name = "Contoso CA";
  spec.subject_public_key = tenant_ca_key.PublicKey();
  auto tenant_ca_pem = crypto::IssueCertificate(spec, root_key_, root_pem_);
  if (!tenant_ca_pem.ok()) return tenant_ca_pem.status();

  const std::string master = crypto::RandomBytes(32);
  catalog_ = std::make_unique<catalog::InMemoryCatalog>(master);
  v1::Tenant t;
  t.set_id(kTenant);
  t.set_name("Contoso");
  t.set_ca_certificate_pem(*tenant_ca_pem);
  auto wrapped = catalog::WrapTenantCaKey(master, kTenant, tenant_ca_key);
  if (!wrapped.ok()) return wrapped.status();
  t.set_wrapped_ca_key(*wrapped);
  if (auto s = catalog_->PutTenant(t); !s.ok()) return s;
  v1::DeviceGroup g;
  g.set_id(kGroup);
  g.set_tenant_id(kTenant);
  g.set_os_feed(v1::RETAIL);
  catalog_->PutGroup(g);
  crypto::EcPrivateKey signing = crypto::EcPrivateKey::Generate();
  signing_ = signing;
  signing_public_key_ = signing.PublicKey();
  auto images = mcu::BuildFactoryImages(signing, 1);
  if (!images.ok()) return images.status();
  images_ = *std::move(images);
  v1::OsRelease rel;
  rel.set_feed(v1::RETAIL);
  rel.set_version("24.10");
  for (const auto& pkg : images_) {
    auto v = mcu::VerifyImage(pkg, signing_public_key_);
    if (!v.ok()) return v.status();
    v1::Image img;
    img.set_id(crypto::HexEncode(crypto::Sha256(pkg.header())));
    img.set_component(v->header.component());
    img.set_version(v->header.version());
    img.set_kind(v->header.kind());
    img.set_image_hash(v->image_hash);
    catalog_->PutImage(img);
    rel.add_image_ids(img.id());
  }
  catalog_->PutOsRelease(rel);
  // Revision 1: the catalog as a follower would have it.
  v1::WatchEvent ev;
  ev.set_revision(1);
  *ev.mutable_device_group() = g;
  if (auto s = catalog_->Apply(ev); !s.ok()) return s;

  server_tls_ = Issue("localhost", crypto::KeyUsage::kServerAuth, {});
  crypto::DeviceClaims gw;
  gw.scope = std::string(auth::ScopeName(auth::Scope::kGateway));
  gateway_tls_ = Issue("gateway", crypto::KeyUsage::kClientAuth, gw);

  ShardServerOptions o;
  o.shard_id = "shard-test";
  o.server_tls = server_tls_;
  o.session_token_key = crypto::RandomBytes(32);
  o.catalog = catalog_.get();
  o.clock = &clock_;
  o.revision_gate = options.revision_gate;
  o.open_store = options.open_store;
  if (!o.open_store) {
    o.open_store = [](const std::vector<std::string>& cfs)
        -> absl::StatusOr<std::unique_ptr<store::Store>> {
      auto s = store::MemoryStore::Create(cfs);
      if (!s.ok()) return s.status();
      return std::unique_ptr<store::Store>(std::move(*s));
    };
  }
  auto plugin =
      std::make_unique<attestation::AttestationPlugin>(options.attestation);
  attestation_ = plugin.get();
  std::vector<std::unique_ptr<ShardPlugin>> plugins;
  plugins.push_back(std::move(plugin));
  if (options.extra_plugins) {
    for (auto& p : options.extra_plugins(*this))
      plugins.push_back(std::move(p));
  }
  server_ = std::make_unique<ShardServer>(std::move(o), std::move(plugins));
  return server_->Start();
}

absl::StatusOr<std::unique_ptr<mcu::Device>> TestPlatform::NewDevice(
    const std::string& seed) {
  mcu::Device::Options opts;
  opts.seed = seed;
  auto d = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                    signing_public_key_, std::move(opts));
  if (!d.ok()) return d.status();
  if (auto s = (*d)->InstallFactoryImages(images_); !s.ok()) return s;
  if (auto s = (*d)->Boot(); !s.ok()) return s;
  v1::Device rec;
  rec.set_id((*d)->device_id());
  rec.set_public_key((*d)->public_key());
  rec.set_tenant_id(kTenant);
  rec.set_device_group_id(kGroup);
  rec.set_state(v1::CLAIMED);
  catalog_->PutDevice(rec);
  return d;
}

rpc::TlsFiles TestPlatform::Issue(const std::string& cn, crypto::KeyUsage usage,
                                  const crypto::DeviceClaims& claims) {
  crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = cn;
  spec.subject_public_key = key.PublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24);
  spec.usage = usage;
  if (usage == crypto::KeyUsage::kServerAuth) {
    spec.dns_sans = {"localhost"};
    spec.ip_sans = {"127.0.0.1"};
  }
  spec.claims = claims;
  auto pem = crypto::IssueCertificate(spec, root_key_, root_pem_);
  if (!pem.ok()) abort();  // only with a broken root: a bug in this helper
  return {*pem, key.ToPem(), root_pem_};
}

rpc::TlsFiles TestPlatform::ManufacturingTls(const mcu::Device& d) {
  crypto::DeviceClaims c;
  c.device_id = d.device_id();
  c.scope = std::string(auth::ScopeName(auth::Scope::kManufacturing));
  return Issue(d.device_id(), crypto::KeyUsage::kClientAuth, c);
}

rpc::TlsFiles TestPlatform::DeviceTls(const mcu::Device& d,
                                      const std::string& scope) {
  crypto::DeviceClaims c;
  c.device_id = d.device_id();
  c.tenant_id = kTenant;
  c.device_group_id = kGroup;
  c.scope = scope;
  c.epoch = "0";
  return Issue(d.device_id(), crypto::KeyUsage::kClientAuth, c);
}

std::string TestPlatform::SessionToken(const mcu::Device& d,
                                       auth::Scope scope) {
  auth::DeviceContext ctx;
  ctx.device_id = d.device_id();
  ctx.tenant_id = kTenant;
  ctx.scope = scope;
  ctx.certificate_serial = "01";
  ctx.not_after = clock_.Now() + absl::Hours(1);
  return server_->context().session_tokens->Issue(ctx);
}

std::unique_ptr<v1::AttestationService::Stub> TestPlatform::Stub(
    const rpc::TlsFiles& tls) {
  return v1::AttestationService::NewStub(
      rpc::NewChannel(server_->address(), tls));
}

std::unique_ptr<v1::DeviceStatusService::Stub> TestPlatform::StatusStub(
    const rpc::TlsFiles& tls) {
  return v1::DeviceStatusService::NewStub(
      rpc::NewChannel(server_->address(), tls));
}

}  // namespace sphere::shard
