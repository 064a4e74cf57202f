#include "securitysvc/management/catalog_test_support.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sphere::management {

TestCatalogKeys TestCatalogKeys::Create(absl::Time now,
                                        absl::Duration validity) {
  TestCatalogKeys k;
  k.root_key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = "Sphere Test Root CA";
  spec.subject_public_key = k.root_key.PublicKey();
  spec.not_before = now - absl::Hours(1);
  spec.not_after = now + validity;
  spec.usage = crypto::KeyUsage::kCa;
  absl::StatusOr<std::string> pem =
      crypto::IssueCertificate(spec, k.root_key, "");
  EXPECT_TRUE(pem.ok()) << pem.status();
  if (pem.ok()) k.root_pem = *std::move(pem);
  k.master_key = crypto::RandomBytes(32);
  return k;
}

CatalogOptions TestCatalogKeys::Fill(CatalogOptions options) const {
  options.root_key = root_key;
  options.root_cert_pem = root_pem;
  options.master_key = master_key;
  return options;
}

std::unique_ptr<Catalog> OpenTestCatalog(RevisionLog* log, Clock* clock,
                                         const TestCatalogKeys& keys,
                                         CatalogOptions options) {
  auto c = Catalog::Open(log, clock, keys.Fill(std::move(options)));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

std::vector<std::string> ImportTestDevices(Catalog* catalog, int n) {
  std::vector<std::string> ids;
  for (int off = 0; off < n; off += 200) {
    std::vector<v1::FactoryDevice> devices;
    for (int i = off; i < std::min(n, off + 200); ++i) {
      v1::FactoryDevice d;
      d.set_public_key(crypto::EcPrivateKey::Generate().PublicKey());
      ids.push_back(DeviceIdForKey(d.public_key()));
      devices.push_back(d);
    }
    auto r = catalog->ImportDevices(Caller::PlatformOperator(), devices);
    EXPECT_TRUE(r.ok()) << r.status();
  }
  return ids;
}

void CatalogFixture::SetUp() {
  auto store = store::MemoryStore::Create(Catalog::ColumnFamilies());
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = *std::move(store);
  TestCatalogKeys keys =
      TestCatalogKeys::Create(clock_.Now(), absl::Hours(24 * 365 * 20));
  root_key_ = keys.root_key;
  root_pem_ = keys.root_pem;
  master_key_ = keys.master_key;
  catalog_ = OpenCatalog();
  ASSERT_NE(catalog_, nullptr);
  auto contoso = catalog_->CreateTenant(platform_, "Contoso");
  ASSERT_TRUE(contoso.ok()) << contoso.status();
  auto fabrikam = catalog_->CreateTenant(platform_, "Fabrikam");
  ASSERT_TRUE(fabrikam.ok()) << fabrikam.status();
  contoso_ = *std::move(contoso);
  fabrikam_ = *std::move(fabrikam);
  contoso_op_ = Caller::TenantOperator(contoso_.id());
  fabrikam_op_ = Caller::TenantOperator(fabrikam_.id());
}

std::unique_ptr<Catalog> CatalogFixture::OpenCatalog() {
  return OpenCatalog(catalog_options_);
}

std::unique_ptr<Catalog> CatalogFixture::OpenCatalog(CatalogOptions options) {
  options.root_key = root_key_;
  options.root_cert_pem = root_pem_;
  options.master_key = master_key_;
  auto c = Catalog::Open(store_.get(), &clock_, std::move(options));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

std::string FakeDeviceKey(uint64_t n) {
  std::string key(65, '\0');
  key[0] = 0x04;
  key[1] = 0x5a;
  for (int i = 0; i < 8; ++i) key[64 - i] = static_cast<char>(n >> (8 * i));
  return key;
}

std::vector<std::string> ImportFakeDevices(Catalog* catalog, uint64_t first,
                                           size_t n) {
  std::vector<v1::FactoryDevice> devices;
  std::vector<std::string> ids;
  for (size_t i = 0; i < n; ++i) {
    v1::FactoryDevice d;
    d.set_public_key(FakeDeviceKey(first + i));
    d.set_device_type("mt3620");
    ids.push_back(DeviceIdForKey(d.public_key()));
    devices.push_back(std::move(d));
  }
  auto r = catalog->ImportDevices(Caller::PlatformOperator(), devices);
  EXPECT_TRUE(r.ok()) << r.status();
  return ids;
}

std::string DumpCatalog(store::Store* store) {
  std::string out;
  for (const std::string& cf : Catalog::ColumnFamilies()) {
    EXPECT_TRUE(store
                    ->Scan(cf, "",
                           [&](absl::string_view k, absl::string_view v) {
                             absl::StrAppend(&out, cf, "|", k, "=", v, "\n");
                             return true;
                           })
                    .ok());
  }
  return out;
}

}  // namespace sphere::management
