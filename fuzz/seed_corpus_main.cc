// seed_corpus: writes the checked-in seed corpus of every fuzz target from
// the real code (a booted mcu-model device's quote, platform-signed images,
// certificates issued by common/crypto, a management catalog with tenants,
// products, claimed devices, images and deployments), so seeds pass the
// signature and MAC checks and reach deep. Keys are the fixed ones of
// fuzz_support.h, which the targets verify with.
//
//   bazel run //fuzz:seed_corpus -- $PWD/fuzz/corpus
//
// Re-running replaces the seed-*.bin files; other files in a corpus
// directory (regression inputs found by fuzzing) are kept.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/crypto/verified_issuers.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "fuzz/fuzz_support.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "mcu-model/quote.h"
#include "protos/attestation.pb.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/image_pipeline.h"

namespace sphere::fuzz {
namespace {

using management::Caller;
using management::Catalog;

template <typename T>
T Must(absl::StatusOr<T> v, absl::string_view what) {
  if (!v.ok()) {
    std::fprintf(stderr, "seed_corpus: %.*s: %s\n",
                 static_cast<int>(what.size()), what.data(),
                 v.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(v);
}

void MustOk(const absl::Status& s, absl::string_view what) {
  Must(absl::StatusOr<int>(s.ok() ? absl::StatusOr<int>(0) : s), what);
}

class CorpusWriter {
 public:
  explicit CorpusWriter(std::string root) : root_(std::move(root)) {}
  void Write(absl::string_view target, absl::string_view bytes) {
    const std::string dir = absl::StrCat(root_, "/", target);
    MustOk(MakeDir(dir), dir);
    const std::string path =
        absl::StrCat(dir, "/seed-", counts_[std::string(target)]++, ".bin");
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) MustOk(absl::InternalError("write failed"), path);
  }
  void Report() const {
    for (const auto& [target, n] : counts_) {
      std::printf("%s: %d seeds\n", target.c_str(), n);
    }
  }

 private:
  static absl::Status MakeDir(const std::string& dir) {
    const std::string cmd = absl::StrCat("mkdir -p '", dir, "'");
    return std::system(cmd.c_str()) == 0
               ? absl::OkStatus()
               : absl::InternalError("cannot create directory");
  }
  std::string root_;
  std::map<std::string, int> counts_;
};

std::string Records(const std::vector<std::string>& records) {
  std::string out;
  for (const std::string& r : records) AppendRecord(&out, r);
  return out;
}

// Small platform-signed boot chain (real format, tiny payloads).
std::vector<v1::ImagePackage> SmallBootChain(uint32_t version) {
  std::vector<v1::ImagePackage> out;
  for (const std::string& component : mcu::BootChainComponents()) {
    v1::ImageHeader h;
    h.set_component(component);
    h.set_version(version);
    h.set_kind(mcu::KindForComponent(component));
    out.push_back(
        Must(mcu::SignImage(h, mcu::SyntheticPayload(component, version, 64),
                            FuzzKey("image-signing")),
             "sign boot image"));
  }
  return out;
}

v1::AppManifest Dw100Manifest() {
  v1::AppManifest m;
  m.set_component_id("dw100");
  m.set_name("DW100 dishwasher");
  m.add_peripherals("GPIO0");
  m.add_peripherals("UART1");
  m.add_allowed_connections("telemetry.contoso.example");
  m.add_allowed_connections("*.contoso.example");
  m.set_mutable_storage_kib(64);
  m.set_memory_kib(256);
  m.set_watchdog_timeout_ms(5000);
  return m;
}

void QuoteSeeds(CorpusWriter& w) {
  // A real device, with the full-size factory images (the device checks
  // partition sizes), deterministic for reproducible seeds.
  const crypto::EcPrivateKey signing = FuzzKey("image-signing");
  FakeClock clock(FuzzNow());
  mcu::Device::Options options;
  options.seed = "sphere-fuzz-device";
  options.clock = &clock;
  std::unique_ptr<mcu::Device> device =
      Must(mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                    signing.PublicKey(), options),
           "manufacture");
  std::vector<v1::ImagePackage> images =
      Must(mcu::BuildFactoryImages(signing, 1), "factory images");
  std::vector<v1::StoredImage> stored;
  for (const auto& p : images) stored.push_back(mcu::ToStoredImage(p));
  MustOk(device->InstallFactoryImages(stored), "install");
  MustOk(device->Boot(), "boot");
  for (absl::string_view nonce : {"0123456789abcdef0123456789abcdef",
                                  "fedcba9876543210fedcba9876543210"}) {
    v1::Quote q = Must(device->Quote(nonce), "quote");
    w.Write("quote_fuzzer", q.SerializeAsString());
    // The same body signed by the key the target verifies with.
    v1::Quote resigned;
    resigned.set_body(q.body());
    resigned.set_signature(
        Must(FuzzKey("device").Sign(absl::StrCat(mcu::kQuoteContext, q.body())),
             "sign quote"));
    w.Write("quote_fuzzer", resigned.SerializeAsString());
    v1::AttestRequest attest;
    attest.set_device_id(device->device_id());
    *attest.mutable_quote() = q;
    w.Write("attest_fuzzer", attest.SerializeAsString());
    w.Write("event_log_fuzzer", q.body());
    v1::QuoteBody body;
    body.ParseFromString(q.body());
    // A log with an app measured too (register 3).
    v1::BootEvent* app = body.add_event_log();
    app->set_register_index(mcu::kRegisterApps);
    app->set_component("app:dw100");
    app->set_version(3);
    app->set_image_hash(crypto::Sha256("app"));
    w.Write("event_log_fuzzer", body.SerializeAsString());
  }
}

void ImageSeeds(CorpusWriter& w) {
  const crypto::EcPrivateKey signing = FuzzKey("image-signing");
  for (const v1::ImagePackage& p : SmallBootChain(2)) {
    w.Write("image_fuzzer", p.SerializeAsString());
  }
  v1::ImagePackage app =
      Must(mcu::BuildAppImage(signing, Dw100Manifest(), 3, 96), "app image");
  w.Write("image_fuzzer", app.SerializeAsString());
  v1::AppManifest rt = Dw100Manifest();
  rt.set_component_id("dw100-motor");
  rt.set_realtime(true);
  // Signed by another key: what a tenant uploads before re-signing.
  w.Write("image_fuzzer",
          Must(mcu::BuildAppImage(FuzzKey("tenant"), rt, 1, 32), "rt image")
              .SerializeAsString());
}

struct Pki {
  crypto::EcPrivateKey root_key = FuzzKey("root");
  std::string root_pem = FuzzRootPem();
  crypto::EcPrivateKey tenant_key = FuzzKey("tenant-ca");
  std::string tenant_pem;
  crypto::EcPrivateKey device_key = FuzzKey("device");
  std::string device_pem;
  std::string device_chain;
};

Pki MakePki() {
  Pki p;
  p.tenant_pem = FuzzTenantCaPem(p.root_pem);
  crypto::CertificateSpec dev =
      FuzzSpec(crypto::HexEncode(crypto::Sha256(p.device_key.PublicKey())),
               "device", 3, crypto::KeyUsage::kClientAuth);
  dev.claims.device_id = dev.common_name;
  dev.claims.tenant_id = "7d8e2c1a-0000-4000-8000-000000000001";
  dev.claims.product_id = "7d8e2c1a-0000-4000-8000-000000000002";
  dev.claims.device_group_id = "7d8e2c1a-0000-4000-8000-000000000003";
  dev.claims.scope = "full";
  dev.claims.epoch = "1";
  p.device_pem = Must(crypto::IssueCertificate(dev, p.tenant_key, p.tenant_pem),
                      "device cert");
  p.device_chain = p.device_pem + p.tenant_pem;
  return p;
}

void X509Seeds(CorpusWriter& w, const Pki& p) {
  w.Write("x509_fuzzer", p.device_chain);
  w.Write("x509_fuzzer", p.device_chain + p.root_pem);
  w.Write("x509_fuzzer", p.tenant_pem);
  w.Write("x509_fuzzer", p.root_pem);
  crypto::CertificateSpec server;
  server.common_name = "localhost";
  server.subject_public_key = FuzzKey("server").PublicKey();
  server.serial = 4;
  server.not_before = FuzzNow() - absl::Hours(1);
  server.not_after = FuzzNow() + absl::Hours(24);
  server.usage = crypto::KeyUsage::kServerAndClientAuth;
  server.dns_sans = {"localhost"};
  server.ip_sans = {"127.0.0.1"};
  server.claims.scope = "gateway";
  w.Write("x509_fuzzer",
          Must(crypto::IssueCertificate(server, p.root_key, p.root_pem),
               "server cert"));
}

// direct_leaf_fuzzer: a flags byte (see the target), then the TBSCertificate
// of a leaf as Sphere issues it under the tenant CA, and of leaves DirectLeaf
// must leave to OpenSSL: expired, not yet valid, server-only, a CA, a leaf of
// another issuer.
void DirectLeafSeeds(CorpusWriter& w, const Pki& p) {
  auto tbs_of = [](const std::string& pem) {
    std::string tbs = TbsCertificateOf(
        Must(crypto::CertificatePemToDer(pem), "certificate DER"));
    if (tbs.empty()) MustOk(absl::InternalError("no TBSCertificate"), pem);
    return tbs;
  };
  auto seed = [&w](uint8_t flags, const std::string& tbs) {
    w.Write("direct_leaf_fuzzer",
            absl::StrCat(std::string(1, static_cast<char>(flags)), tbs));
  };
  const std::string device = tbs_of(p.device_pem);
  // client auth required or not; at FuzzNow, 2 days later (expired), before
  // the window, after the CA's; signed by another key; outer algorithm
  // SHA-384.
  for (uint8_t flags : {0, 1, 2, 4, 7, 9, 17}) seed(flags, device);
  auto issue = [&p](const crypto::CertificateSpec& spec) {
    return Must(crypto::IssueCertificate(spec, p.tenant_key, p.tenant_pem),
                "direct leaf seed");
  };
  crypto::CertificateSpec leaf = FuzzSpec(
      crypto::HexEncode(crypto::Sha256("direct-leaf-device")),
      "direct-leaf-device", 0x1234567890abcdef, crypto::KeyUsage::kClientAuth);
  leaf.not_before = FuzzNow() - absl::Hours(48);
  leaf.not_after = FuzzNow() - absl::Hours(1);  // expired
  leaf.claims.device_id = leaf.common_name;
  leaf.claims.tenant_id = "7d8e2c1a-0000-4000-8000-000000000001";
  leaf.claims.scope = "update-only";
  leaf.claims.epoch = "7";
  seed(1, tbs_of(issue(leaf)));
  leaf.not_before = FuzzNow() + absl::Hours(1);  // not yet valid
  leaf.not_after = FuzzNow() + absl::Hours(48);
  seed(1, tbs_of(issue(leaf)));
  // Server-only, with an organization.
  crypto::CertificateSpec server =
      FuzzSpec("device.contoso.example", "direct-leaf-server", 5,
               crypto::KeyUsage::kServerAuth);
  server.organization = "Contoso";
  server.dns_sans = {"device.contoso.example", "*.contoso.example"};
  const std::string server_tbs = tbs_of(issue(server));
  seed(0, server_tbs);
  seed(1, server_tbs);
  server.usage = crypto::KeyUsage::kServerAndClientAuth;
  server.ip_sans = {"127.0.0.1", "::1"};
  server.claims.scope = "gateway";
  seed(1, tbs_of(issue(server)));
  // Another shape: a CA under the tenant CA.
  crypto::CertificateSpec ca = FuzzSpec("Contoso sub-CA", "direct-leaf-sub-ca",
                                        6, crypto::KeyUsage::kCa);
  ca.path_len = 0;
  seed(0, tbs_of(issue(ca)));
  seed(0, tbs_of(p.tenant_pem));  // the CA itself (issuer: the root)
}

void CsrSeeds(CorpusWriter& w, const Pki& p) {
  const crypto::EcPrivateKey key = FuzzKey("csr");
  const std::string csr = Must(crypto::CreateCsr(key, "operator-alice"), "csr");
  const std::string msg = "sphere csr seed";
  const std::string sig = Must(key.Sign(msg), "sign");
  w.Write("csr_fuzzer", Records({csr, key.PublicKey(), msg, sig}));
  w.Write("csr_fuzzer",
          Records({crypto::PublicKeyToPem(p.device_key.PublicKey()),
                   p.device_key.PublicKey(), crypto::Sha256(msg),
                   Must(p.device_key.SignDigest(crypto::Sha256(msg)),
                        "sign digest")}));
}

void SessionTokenSeeds(CorpusWriter& w) {
  auth::SessionTokens tokens(crypto::Sha256("sphere-fuzz-session-key"));
  auth::DeviceContext ctx;
  ctx.device_id = crypto::HexEncode(crypto::Sha256("device"));
  ctx.tenant_id = "7d8e2c1a-0000-4000-8000-000000000001";
  ctx.product_id = "7d8e2c1a-0000-4000-8000-000000000002";
  ctx.device_group_id = "7d8e2c1a-0000-4000-8000-000000000003";
  ctx.scope = auth::Scope::kFull;
  ctx.certificate_serial = "03";
  ctx.ownership_epoch = 1;
  ctx.not_after = FuzzNow() + absl::Hours(24);
  const std::string token = tokens.Issue(ctx);
  const std::string body = token.substr(0, token.rfind('|'));
  const std::vector<std::string> fields = {
      ctx.device_id,
      ctx.tenant_id,
      ctx.product_id,
      ctx.device_group_id,
      std::string(auth::ScopeName(ctx.scope)),
      ctx.certificate_serial};
  for (const std::string& t : {token, body}) {
    std::vector<std::string> r = {t};
    r.insert(r.end(), fields.begin(), fields.end());
    w.Write("session_token_fuzzer", Records(r) + std::string("\x01\x40", 2));
  }
  ctx.scope = auth::Scope::kUpdateOnly;
  w.Write("session_token_fuzzer",
          Records({tokens.Issue(ctx), ctx.device_id, ctx.tenant_id, "", "",
                   std::string(auth::ScopeName(ctx.scope)), "7f"}));
}

// CatalogSeeds builds a small real catalog and writes (a) its Watch events
// (snapshot and log replay) for the shard-side target and (b) its store
// records for the disk-side target.
void CatalogSeeds(CorpusWriter& w, const Pki& p) {
  auto store = Must(store::MemoryStore::Create(Catalog::ColumnFamilies()),
                    "memory store");
  FakeClock clock(FuzzNow());
  management::CatalogOptions options;
  options.root_key = p.root_key;
  options.root_cert_pem = p.root_pem;
  options.master_key = FuzzMasterKey();
  auto catalog = Must(Catalog::Open(store.get(), &clock, options), "open");
  const Caller platform = Caller::PlatformOperator();
  v1::Tenant contoso =
      Must(catalog->CreateTenant(platform, "Contoso"), "tenant");
  const Caller op = Caller::TenantOperator(contoso.id());
  v1::Product dw100 =
      Must(catalog->CreateProduct(op, "", "DW100", "dishwasher"), "product");
  std::vector<v1::FactoryDevice> factory;
  for (int i = 0; i < 3; ++i) {
    v1::FactoryDevice d;
    d.set_public_key(FuzzKey(absl::StrCat("factory-", i)).PublicKey());
    d.set_device_type("mt3620");
    factory.push_back(d);
  }
  Must(catalog->ImportDevices(platform, factory), "import");
  const std::string id0 = management::DeviceIdForKey(factory[0].public_key());
  const std::string id1 = management::DeviceIdForKey(factory[1].public_key());
  Must(catalog->ClaimDevice(op, "", id0), "claim");
  Must(catalog->ClaimDevice(op, "", id1), "claim");
  v1::DeviceGroup group =
      Must(catalog->GetDeviceGroup(op, "", "DW100/Field Test"), "group");
  Must(catalog->AssignDevice(op, "", id0, group.id()), "assign");
  management::ImagePipeline pipeline(FuzzKey("image-signing"), "");
  v1::ImagePackage app = Must(
      mcu::BuildAppImage(FuzzKey("tenant"), Dw100Manifest(), 3, 32), "app");
  v1::Image app_image = Must(
      pipeline.Process(contoso.id(), app.SerializeAsString()), "process app");
  Must(catalog->RecordImage(op, app_image), "record app");
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id(group.id());
  dep.add_image_ids(app_image.id());
  Must(catalog->CreateDeployment(op, dep), "deployment");
  v1::ReleaseOsRequest release;
  release.set_feed(v1::RETAIL);
  release.set_version("1");
  for (const v1::ImagePackage& pkg : SmallBootChain(1)) {
    v1::Image os = Must(pipeline.Process("", pkg.SerializeAsString()), "os");
    Must(catalog->RecordImage(platform, os), "record os");
    release.add_image_ids(os.id());
  }
  Must(catalog->ReleaseOs(platform, release), "release");
  Must(catalog->RevokeDevice(op, "", id1, "lost"), "revoke");

  for (int64_t start : {int64_t{0}, int64_t{1}}) {
    auto stream = Must(
        catalog->OpenWatch(Caller::Internal(), start, Catalog::WatchOptions{}),
        "watch");
    std::vector<v1::WatchEvent> events;
    while (true) {
      const size_t before = events.size();
      MustOk(stream->Next(100, &events), "next");
      if (events.size() == before) break;
    }
    std::vector<std::string> all;
    for (const v1::WatchEvent& e : events) all.push_back(e.SerializeAsString());
    w.Write("watch_event_fuzzer", Records(all));
  }

  const std::vector<std::string> families = Catalog::ColumnFamilies();
  std::vector<std::string> records;
  for (size_t i = 0; i < families.size(); ++i) {
    MustOk(
        store->Scan(families[i], "",
                    [&](absl::string_view key, absl::string_view value) {
                      records.push_back(std::string(1, static_cast<char>(i)));
                      records.push_back(std::string(key));
                      records.push_back(std::string(value));
                      return true;
                    }),
        "scan");
  }
  w.Write("catalog_records_fuzzer", Records(records));
  // Only the tenant-side records (a smaller seed that still opens).
  std::vector<std::string> small(
      records.begin(), records.begin() + std::min<size_t>(records.size(), 30));
  w.Write("catalog_records_fuzzer", Records(small));
}

}  // namespace
}  // namespace sphere::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: seed_corpus CORPUS_DIR\n");
    return 2;
  }
  sphere::fuzz::CorpusWriter w(argv[1]);
  const sphere::fuzz::Pki pki = sphere::fuzz::MakePki();
  sphere::fuzz::QuoteSeeds(w);
  sphere::fuzz::ImageSeeds(w);
  sphere::fuzz::X509Seeds(w, pki);
  sphere::fuzz::DirectLeafSeeds(w, pki);
  sphere::fuzz::CsrSeeds(w, pki);
  sphere::fuzz::SessionTokenSeeds(w);
  sphere::fuzz::CatalogSeeds(w, pki);
  w.Report();
  return 0;
}
