// Test support for the management catalog: the keys Catalog::Open needs (a
// test platform root CA and a master key) and a gtest fixture with a catalog
// on an in-memory store holding two tenants, Contoso and Fabrikam. Used by
// catalog_test, catalog_claims_test, management_service_test,
// rollout_manager_test, revision_log_test and etcd_fault_test so the test
// PKI, fake device keys and the catalog dump are written once.
//
//   class MyTest : public CatalogFixture {};
//   TEST_F(MyTest, X) {
//     auto p = catalog_->CreateProduct(contoso_op_, "", "DW100", "");
//   }
//
//   TestCatalogKeys keys = TestCatalogKeys::Create(clock.Now());
//   auto catalog = OpenTestCatalog(&log, &clock, keys);  // on a RevisionLog
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_TEST_SUPPORT_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_TEST_SUPPORT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "gtest/gtest.h"
#include "securitysvc/management/catalog.h"

namespace sphere::management {

// TestCatalogKeys: a self-signed "Sphere Test Root CA" valid from an hour
// before `now` for `validity`, and a random 32-byte master key.
struct TestCatalogKeys {
  crypto::EcPrivateKey root_key;
  std::string root_pem;
  std::string master_key;

  static TestCatalogKeys Create(absl::Time now,
                                absl::Duration validity = absl::Hours(24 *
                                                                      365));
  // Fill sets the key fields of `options` (root_key, root_cert_pem,
  // master_key) and returns it.
  CatalogOptions Fill(CatalogOptions options = {}) const;
};

// OpenTestCatalog opens a catalog on `log` with `keys`; a failure is a test
// failure (nullptr returned).
std::unique_ptr<Catalog> OpenTestCatalog(RevisionLog* log, Clock* clock,
                                         const TestCatalogKeys& keys,
                                         CatalogOptions options = {});

// ImportTestDevices imports `n` devices with fresh random keys as the
// platform operator (200 per call) and returns their ids; a refused import
// is a test failure.
std::vector<std::string> ImportTestDevices(Catalog* catalog, int n);

// FakeDeviceKey: a well-formed (65-byte, 0x04-prefixed) device public key,
// distinct per `n`. Not a curve point: for catalog tests, which store and
// hash keys but never verify a signature with them.
std::string FakeDeviceKey(uint64_t n);

// ImportFakeDevices registers devices with keys FakeDeviceKey(first) ..
// FakeDeviceKey(first + n - 1) (device type "mt3620") as the platform
// operator in one import, and returns their ids in that order; a refused
// import is a test failure.
std::vector<std::string> ImportFakeDevices(Catalog* catalog, uint64_t first,
                                           size_t n);

// DumpCatalog: the whole persisted catalog in `store` (every column family,
// key=value per line); attack tests compare it before and after a refusal.
std::string DumpCatalog(store::Store* store);

// CatalogFixture: a catalog on a MemoryStore with a FakeClock and test keys
// (root valid 20 years), tenants Contoso and Fabrikam and their operators.
// A derived fixture may set catalog_options_ before calling SetUp(); they
// apply to every OpenCatalog() (used to reopen the catalog on the same
// store).
class CatalogFixture : public ::testing::Test {
 protected:
  void SetUp() override;

  // OpenCatalog opens a catalog on store_ with the fixture's keys and
  // catalog_options_ (or `options`); a failure fails the test.
  std::unique_ptr<Catalog> OpenCatalog();
  std::unique_ptr<Catalog> OpenCatalog(CatalogOptions options);
  // Dump: DumpCatalog of the fixture's store.
  std::string Dump() { return DumpCatalog(store_.get()); }

  FakeClock clock_;
  std::unique_ptr<store::MemoryStore> store_;
  crypto::EcPrivateKey root_key_;
  std::string root_pem_;
  std::string master_key_;
  CatalogOptions catalog_options_;
  std::unique_ptr<Catalog> catalog_;
  Caller platform_ = Caller::PlatformOperator();
  v1::Tenant contoso_, fabrikam_;
  Caller contoso_op_, fabrikam_op_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_TEST_SUPPORT_H_
