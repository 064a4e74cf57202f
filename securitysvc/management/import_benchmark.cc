// ImportDevices throughput against an encrypted RocksStore (synced WAL), in
// keys per second, for several batch sizes (one batch = one streamed
// ImportDevicesRequest = one atomic WriteBatch). A fresh key range per
// iteration, so every key is new; BM_ReimportKnownKeys measures the
// idempotent path (all keys already known).
//
//   bazel run -c opt //securitysvc/management:import_benchmark
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/crypto/crypto.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "securitysvc/management/catalog.h"

namespace sphere::management {
namespace {

std::string KeyFor(uint64_t n) {
  std::string key(65, '\0');
  key[0] = 0x04;
  for (int i = 0; i < 8; ++i) key[64 - i] = static_cast<char>(n >> (8 * i));
  return key;
}

struct Fixture {
  std::string dir;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<Catalog> catalog;

  Fixture() {
    char tmpl[] = "/tmp/import_benchmark.XXXXXX";
    dir = mkdtemp(tmpl);
    store::RocksOptions rocks;
    rocks.data_key = crypto::RandomBytes(32);
    store =
        *store::OpenRocksStore(dir + "/db", Catalog::ColumnFamilies(), rocks);
    crypto::EcPrivateKey root = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec spec;
    spec.common_name = "bench root";
    spec.subject_public_key = root.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    spec.usage = crypto::KeyUsage::kCa;
    CatalogOptions options;
    options.root_key = root;
    options.root_cert_pem = *crypto::IssueCertificate(spec, root, "");
    options.master_key = crypto::RandomBytes(32);
    catalog = *Catalog::Open(store.get(), Clock::Real(), options);
  }
  ~Fixture() {
    catalog.reset();
    store.reset();
    std::system(("rm -rf " + dir).c_str());
  }
};

std::vector<v1::FactoryDevice> Batch(uint64_t first, int n) {
  std::vector<v1::FactoryDevice> batch(n);
  for (int i = 0; i < n; ++i) {
    batch[i].set_public_key(KeyFor(first + i));
    batch[i].set_device_type("mt3620");
  }
  return batch;
}

void BM_ImportNewKeys(benchmark::State& state) {
  Fixture f;
  const int batch_size = state.range(0);
  constexpr int kKeysPerIteration = 100000;
  uint64_t next = 0;
  for (auto _ : state) {
    for (int done = 0; done < kKeysPerIteration; done += batch_size) {
      state.PauseTiming();
      auto batch = Batch(next, batch_size);
      next += batch_size;
      state.ResumeTiming();
      auto r = f.catalog->ImportDevices(Caller::PlatformOperator(), batch);
      if (!r.ok() || r->imported != static_cast<uint64_t>(batch_size)) {
        state.SkipWithError("import failed");
        return;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * kKeysPerIteration);
  state.counters["keys/s"] = benchmark::Counter(
      state.iterations() * kKeysPerIteration, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ImportNewKeys)
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond);

void BM_ReimportKnownKeys(benchmark::State& state) {
  Fixture f;
  const int batch_size = 10000;
  auto batch = Batch(0, batch_size);
  (void)f.catalog->ImportDevices(Caller::PlatformOperator(), batch);
  for (auto _ : state) {
    auto r = f.catalog->ImportDevices(Caller::PlatformOperator(), batch);
    if (!r.ok() || r->already_known != static_cast<uint64_t>(batch_size)) {
      state.SkipWithError("re-import failed");
      return;
    }
  }
  state.counters["keys/s"] = benchmark::Counter(state.iterations() * batch_size,
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ReimportKnownKeys)->Unit(benchmark::kMillisecond);

// A million keys in batches of 10k: the factory-registry sizing target.
void BM_ImportMillion(benchmark::State& state) {
  Fixture f;  // Iterations(1): one fresh database
  for (auto _ : state) {
    for (uint64_t first = 0; first < 1000000; first += 10000) {
      state.PauseTiming();
      auto batch = Batch(first, 10000);
      state.ResumeTiming();
      auto r = f.catalog->ImportDevices(Caller::PlatformOperator(), batch);
      if (!r.ok()) {
        state.SkipWithError("import failed");
        return;
      }
    }
  }
  state.counters["keys/s"] = benchmark::Counter(state.iterations() * 1000000.0,
                                                benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ImportMillion)->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace
}  // namespace sphere::management

BENCHMARK_MAIN();
