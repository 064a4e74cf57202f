// Store cost per device as the store fills (issue 14: a shard's CPU per
// attestation was higher at a million twins than at 100,000). Plays a
// shard's attest writes against one encrypted RocksStore with the shard's
// memory budget: per device one Get of its record (absent on a first
// attestation), then its record (~250 bytes) and one history row (~200
// bytes) in synced batches of --batch devices (the group commit), at
// random 64-hex-character ids. Prints the process CPU (every thread:
// compaction and flush included) per device for each tenth of the run,
// then the store's compaction totals and RocksDB counters.
//
//   bazel run -c opt //common/store:store_scale_benchmark --
//       --devices 500000 [--batch 64] [--dir /tmp/x]
//
// The store is opened as a shard opens it (ShardStoreOptions: 16 MiB of
// memtables, an 8 MiB block cache, encrypted). To compare two versions of
// the store, build this binary at each and run them one after the other
// (docs/benchmarks.md, scale8). The DB is deleted at exit.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/store/store.h"
#include "common/util/metrics.h"

namespace sphere::store {
namespace {

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::string RandomId(std::mt19937_64& rng) {
  static const char kHex[] = "0123456789abcdef";
  std::string id(64, '0');
  for (int i = 0; i < 64; i += 16) {
    uint64_t r = rng();
    for (int j = 0; j < 16; ++j) id[i + j] = kHex[(r >> (4 * j)) & 15];
  }
  return id;
}

int Run(int argc, char** argv) {
  long devices = 500000;
  int batch = 64;
  std::string dir = "/tmp/store_scale_benchmark";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    bool ok = true;
    if (flag == "--devices") {
      ok = absl::SimpleAtoi(value, &devices);
    } else if (flag == "--batch") {
      ok = absl::SimpleAtoi(value, &batch);
    } else if (flag == "--dir") {
      dir = value;
    } else {
      ok = false;
    }
    if (!ok || devices < 10 || batch < 1) {
      std::fprintf(stderr, "bad flag %s %s\n", flag.c_str(), value.c_str());
      return 2;
    }
  }
  std::filesystem::remove_all(dir);
  RocksOptions o;
  o.data_key = std::string(32, 'k');
  o.memtable_budget_bytes = size_t{16} << 20;
  o.block_cache_bytes = size_t{8} << 20;
  auto opened = OpenRocksStore(dir, {"devices", "history"}, o);
  if (!opened.ok()) {
    std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<Store> store = *std::move(opened);
  std::mt19937_64 rng(42);
  const std::string record(250, 'r'), row(200, 'h');
  const long slice = devices / 10;
  double cpu0 = CpuSeconds();
  absl::Time t0 = absl::Now();
  std::printf("devices %ld batch %d\n", devices, batch);
  std::printf("%-22s %10s %10s\n", "devices", "cpu_us/dev", "wall_s");
  long done = 0;
  while (done < devices) {
    WriteBatch b;
    for (int i = 0; i < batch && done < devices; ++i, ++done) {
      std::string id = RandomId(rng);
      (void)store->Get("devices", id);  // absent: a first attestation
      // Values differ per device (ids inside) so blocks do not compress
      // to nothing.
      b.Put("devices", id, absl::StrCat(id, record));
      b.Put("history", absl::StrCat(id, "|a|00"), absl::StrCat(id, row));
    }
    if (absl::Status s = store->Write(b); !s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    if (done % slice < batch || done == devices) {
      double cpu = CpuSeconds();
      std::printf("%9ld..%-10ld %10.1f %10.1f\n", done - slice, done,
                  (cpu - cpu0) * 1e6 / slice, absl::ToDoubleSeconds(absl::Now() - t0));
      std::fflush(stdout);
      cpu0 = cpu;
      t0 = absl::Now();
    }
  }
  for (absl::string_view line : absl::StrSplit(metrics::RenderAll(), '\n')) {
    if (absl::StartsWith(line, "sphere_store_")) {
      std::printf("%.*s\n", static_cast<int>(line.size()), line.data());
    }
  }
  store.reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace sphere::store

int main(int argc, char** argv) { return sphere::store::Run(argc, argv); }
