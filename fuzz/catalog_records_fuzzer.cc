// catalog_records_fuzzer: management's catalog records as read back from
// disk. The store is encrypted but not authenticated (docs/threat-model.md,
// "Integrity at rest"), so whoever can write the disk, or a bug in an older
// version, can leave any bytes in any record.
//
// Input: records (fuzz_support.h) in triples [column family index, key,
// value]; the index picks one of Catalog::ColumnFamilies(). They are written
// into a MemoryStore, then the catalog is opened on it and read the way
// management and shards read it: ListTenants, GetTenant, GetShardMap, a
// Watch from 0 (snapshot) and from 1 (log replay) drained page by page, and
// every event applied to a shard's InMemoryCatalog; finally one write
// (CreateTenant) on top. Corrupt records must come back as errors (DataLoss),
// never as crashes, hangs or undefined behaviour.
#include <cstdint>

#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "fuzz/fuzz_support.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/management/catalog.h"

using sphere::fuzz::Check;
using sphere::management::Caller;
using sphere::management::Catalog;

namespace {

void DrainWatch(Catalog* catalog, int64_t start,
                sphere::catalog::InMemoryCatalog* view) {
  absl::StatusOr<std::unique_ptr<Catalog::WatchStream>> stream =
      catalog->OpenWatch(Caller::Internal(), start, Catalog::WatchOptions{});
  if (!stream.ok()) return;
  std::vector<sphere::v1::WatchEvent> events;
  // Every page makes progress; the store holds at most a few hundred records.
  for (int page = 0; page < 10000; ++page) {
    events.clear();
    if (!(*stream)->Next(64, &events).ok() || events.empty()) return;
    for (const sphere::v1::WatchEvent& e : events) (void)view->Apply(e);
  }
  Check(false, "watch did not end after 10000 pages");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::string>* families =
      new std::vector<std::string>(Catalog::ColumnFamilies());
  static const std::string* root_pem =
      new std::string(sphere::fuzz::FuzzRootPem());

  absl::StatusOr<std::unique_ptr<sphere::store::MemoryStore>> store =
      sphere::store::MemoryStore::Create(*families);
  Check(store.ok(), "cannot create the memory store");
  sphere::store::WriteBatch batch;
  sphere::fuzz::RecordReader in(sphere::fuzz::Bytes(data, size));
  absl::string_view cf, key, value;
  for (int n = 0; n < 512 && in.Next(&cf); ++n) {
    if (!in.Next(&key)) break;
    in.Next(&value);
    const uint8_t index = cf.empty() ? 0 : static_cast<uint8_t>(cf[0]);
    batch.Put((*families)[index % families->size()], key, value);
  }
  Check((*store)->Write(batch).ok(), "memory store refused a batch");

  sphere::FakeClock clock(sphere::fuzz::FuzzNow());
  sphere::management::CatalogOptions options;
  options.root_key = sphere::fuzz::FuzzKey("root");
  options.root_cert_pem = *root_pem;
  options.master_key = sphere::fuzz::FuzzMasterKey();
  absl::StatusOr<std::unique_ptr<Catalog>> catalog =
      Catalog::Open(store->get(), &clock, options);
  if (!catalog.ok()) return 0;

  absl::StatusOr<sphere::v1::ListTenantsResponse> tenants =
      (*catalog)->ListTenants(Caller::PlatformOperator());
  if (tenants.ok()) {
    for (const sphere::v1::Tenant& t : tenants->tenants()) {
      (void)(*catalog)->GetTenant(Caller::PlatformOperator(), t.id());
      (void)(*catalog)->ListProducts(Caller::TenantOperator(t.id()), {});
    }
  }
  (void)(*catalog)->GetShardMap(Caller::Internal());

  sphere::catalog::InMemoryCatalog view(sphere::fuzz::FuzzMasterKey());
  DrainWatch(catalog->get(), 0, &view);
  DrainWatch(catalog->get(), 1, &view);

  const int64_t before = (*catalog)->revision();
  absl::StatusOr<sphere::v1::Tenant> created =
      (*catalog)->CreateTenant(Caller::PlatformOperator(), "FuzzTenant");
  if (created.ok()) {
    Check((*catalog)->revision() > before,
          "a committed write did not advance the revision");
  }
  return 0;
}
