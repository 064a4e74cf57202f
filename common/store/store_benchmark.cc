// Store throughput: synced single puts, batched puts, concurrent synced
// writers (RocksDB group commit amortises the WAL fsync), and gets; each plain
// and encrypted at rest.
//
//   bazel run -c opt //common/store:store_benchmark
//
// DBs live under $STORE_BENCH_DIR, else $TEST_TMPDIR, else /tmp (pick the
// disk whose fsync you want to measure) and are deleted at exit.

#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "common/store/store.h"

namespace sphere::store {
namespace {

constexpr int kValueSize = 200;
const std::string kDataKey(32, 'k');

class Registry {
 public:
  static Registry& Get() {
    static Registry* r = new Registry();  // closed explicitly at exit
    return *r;
  }

  // Returns the store named `name`, opening a fresh DB on first use.
  Store* Open(const std::string& name, bool encrypted) {
    absl::MutexLock lock(&mu_);
    std::string id = absl::StrCat(name, encrypted ? "_enc" : "_plain");
    auto it = stores_.find(id);
    if (it != stores_.end()) return it->second.get();
    RocksOptions options;
    if (encrypted) options.data_key = kDataKey;
    auto s = OpenRocksStore(absl::StrCat(root_, "/", id), {"bench"}, options);
    if (!s.ok()) {
      std::fprintf(stderr, "open failed: %s\n", s.status().ToString().c_str());
      std::abort();
    }
    return (stores_[id] = std::move(*s)).get();
  }

  void CloseAll() {
    absl::MutexLock lock(&mu_);
    stores_.clear();
    std::filesystem::remove_all(root_);
  }

 private:
  Registry() {
    const char* base = std::getenv("STORE_BENCH_DIR");
    if (base == nullptr) base = std::getenv("TEST_TMPDIR");
    std::string tmpl =
        absl::StrCat(base ? base : "/tmp", "/store_bench.XXXXXX");
    root_ = mkdtemp(tmpl.data());
    std::atexit([] { Get().CloseAll(); });
  }

  absl::Mutex mu_;
  std::string root_;
  std::map<std::string, std::unique_ptr<Store>> stores_ ABSL_GUARDED_BY(mu_);
};

std::atomic<int64_t> next_key{0};

std::string NextKey() {
  return absl::StrFormat("device/%012d", next_key.fetch_add(1));
}

const std::string& Value() {
  static const std::string* v = new std::string(kValueSize, 'v');
  return *v;
}

void BM_SyncedPut(benchmark::State& state) {
  Store* store = Registry::Get().Open("synced_put", state.range(0));
  for (auto _ : state) {
    if (!store->Put("bench", NextKey(), Value()).ok()) std::abort();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) ? "encrypted" : "plain");
}
BENCHMARK(BM_SyncedPut)->Arg(0)->Arg(1)->UseRealTime();

void BM_BatchedPut(benchmark::State& state) {
  Store* store = Registry::Get().Open("batched_put", state.range(0));
  for (auto _ : state) {
    WriteBatch b;
    for (int i = 0; i < 100; ++i) b.Put("bench", NextKey(), Value());
    if (!store->Write(b).ok()) std::abort();
  }
  state.SetItemsProcessed(state.iterations() * 100);
  state.SetLabel(state.range(0) ? "encrypted, 100/batch" : "plain, 100/batch");
}
BENCHMARK(BM_BatchedPut)->Arg(0)->Arg(1)->UseRealTime();

// Every thread does synced single puts into one shared DB: group commit lets
// one WAL fsync acknowledge many writers.
void BM_ConcurrentSyncedPut(benchmark::State& state) {
  Store* store = Registry::Get().Open("concurrent_put", state.range(0));
  for (auto _ : state) {
    if (!store->Put("bench", NextKey(), Value()).ok()) std::abort();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) ? "encrypted" : "plain");
}
BENCHMARK(BM_ConcurrentSyncedPut)
    ->Arg(0)
    ->Arg(1)
    ->Threads(1)
    ->Threads(2)
    ->Threads(8)
    ->UseRealTime();

constexpr int kGetKeys = 20000;

// Gets of random keys from SST files (flushed), through the block cache.
void BM_Get(benchmark::State& state) {
  Store* store = Registry::Get().Open("get", state.range(0));
  static absl::Mutex load_mu;
  static std::map<bool, bool> loaded;
  {
    absl::MutexLock lock(&load_mu);
    if (!loaded[state.range(0)]) {
      for (int i = 0; i < kGetKeys; i += 1000) {
        WriteBatch b;
        for (int j = i; j < i + 1000; ++j) {
          b.Put("bench", absl::StrFormat("get/%08d", j), Value());
        }
        if (!store->Write(b).ok()) std::abort();
      }
      if (!store->Flush().ok()) std::abort();
      loaded[state.range(0)] = true;
    }
  }
  uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    auto v = store->Get("bench", absl::StrFormat("get/%08d", x % kGetKeys));
    if (!v.ok()) std::abort();
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) ? "encrypted" : "plain");
}
BENCHMARK(BM_Get)->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
}  // namespace sphere::store
