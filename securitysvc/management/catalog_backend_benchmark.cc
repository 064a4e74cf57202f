// catalog_backend_benchmark: the catalog on the embedded log (RocksDB,
// encrypted, synced WAL) and on etcd (a real local member, fsync on), same
// run, same machine. Prints, per backend:
//   - claims/s: sequential ClaimDevice calls (one catalog write each);
//   - watch latency: from the start of a write on replica A to the event
//     reaching a live watcher (embedded: the same catalog; etcd: a second
//     catalog, i.e. another management replica, following through etcd);
//   - import: factory devices/s in batches, and etcd's database size per
//     device (to judge whether a million devices belong in etcd);
//   - a floor measured in the same run: one raw single-key write to the
//     backend (store Put with sync / etcd Txn with one put).
//
//   bazel build -c opt //securitysvc/management:catalog_backend_benchmark
//   bazel-bin/securitysvc/management/catalog_backend_benchmark [devices]
//   [claims] [both|embedded|etcd]
//
// A progress line goes to stderr every 100,000 imported devices, so a
// million-device run shows where it is.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/etcd_cluster.h"
#include "securitysvc/management/etcd_revision_log.h"
#include "securitysvc/management/revision_log.h"

namespace sphere::management {
namespace {

CatalogOptions Options() {
  static crypto::EcPrivateKey root = crypto::EcPrivateKey::Generate();
  static std::string master = crypto::RandomBytes(32);
  crypto::CertificateSpec spec;
  spec.common_name = "bench root";
  spec.subject_public_key = root.PublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24);
  spec.usage = crypto::KeyUsage::kCa;
  static std::string pem = *crypto::IssueCertificate(spec, root, "");
  CatalogOptions o;
  o.root_key = root;
  o.root_cert_pem = pem;
  o.master_key = master;
  return o;
}

std::string Key(uint64_t n) {
  std::string key(65, '\0');
  key[0] = 0x04;
  for (int i = 0; i < 8; ++i) key[64 - i] = static_cast<char>(n >> (8 * i));
  return key;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

struct Result {
  double import_per_s = 0;
  double claims_per_s = 0;
  double watch_p50_ms = 0;
  double watch_p99_ms = 0;
  double floor_write_ms = 0;
};

// Measures one backend. `writer` and `follower` may be the same catalog.
Result Measure(Catalog* writer, Catalog* follower, RevisionLog* log,
               int devices, int claims, int batch) {
  Result r;
  const Caller op = Caller::PlatformOperator();
  auto tenant = writer->CreateTenant(
      op, absl::StrCat("T", absl::ToUnixNanos(absl::Now())));
  if (!tenant.ok()) {
    std::fprintf(stderr, "tenant: %s\n", tenant.status().ToString().c_str());
    std::exit(1);
  }
  static uint64_t next_key = 1;
  std::vector<std::string> ids;
  absl::Time t0 = absl::Now();
  for (int off = 0; off < devices; off += batch) {
    std::vector<v1::FactoryDevice> chunk;
    for (int i = off; i < std::min(devices, off + batch); ++i) {
      v1::FactoryDevice d;
      d.set_public_key(Key(next_key++));
      ids.push_back(DeviceIdForKey(d.public_key()));
      chunk.push_back(std::move(d));
    }
    auto s = writer->ImportDevices(op, chunk);
    if (!s.ok()) {
      std::fprintf(stderr, "import: %s\n", s.status().ToString().c_str());
      std::exit(1);
    }
    const int done = std::min(devices, off + batch);
    if (done / 100000 != off / 100000) {
      const double secs = absl::ToDoubleSeconds(absl::Now() - t0);
      std::fprintf(stderr, "  imported %d devices in %.0f s (%.0f/s)\n", done,
                   secs, done / secs);
    }
  }
  r.import_per_s = devices / absl::ToDoubleSeconds(absl::Now() - t0);

  // Watch latency: a live watcher on `follower`.
  absl::Mutex mu;
  bool woken = false;
  Catalog::WatchOptions wo;
  wo.wakeup = [&] {
    absl::MutexLock lock(&mu);
    woken = true;
  };
  auto watch = follower->OpenWatch(Caller::Internal(), writer->revision() + 1,
                                   std::move(wo));
  std::vector<v1::WatchEvent> sink;
  (void)(*watch)->Next(1000, &sink);  // goes live, arms the wakeup
  std::vector<double> latencies;
  t0 = absl::Now();
  for (int i = 0; i < claims && i < static_cast<int>(ids.size()); ++i) {
    const absl::Time start = absl::Now();
    auto c = writer->ClaimDevice(op, tenant->id(), ids[i]);
    if (!c.ok()) {
      std::fprintf(stderr, "claim: %s\n", c.status().ToString().c_str());
      std::exit(1);
    }
    // Wait for this claim's event on the follower.
    while (true) {
      sink.clear();
      absl::Status s = (*watch)->Next(100, &sink);
      if (!s.ok()) {
        std::fprintf(stderr, "watch: %s\n", s.ToString().c_str());
        std::exit(1);
      }
      bool seen = false;
      for (const auto& e : sink) seen |= e.device().id() == ids[i];
      if (seen) break;
      if (sink.empty()) {
        absl::MutexLock lock(&mu);
        mu.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(10));
        woken = false;
      }
    }
    latencies.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  r.claims_per_s = claims / absl::ToDoubleSeconds(absl::Now() - t0);
  r.watch_p50_ms = Percentile(latencies, 0.5);
  r.watch_p99_ms = Percentile(latencies, 0.99);

  // Floor: one raw single-key write, same backend.
  std::vector<double> raw;
  for (int i = 0; i < 200; ++i) {
    store::WriteBatch b;
    b.Put("meta", "bench_floor", absl::StrCat(i));
    const absl::Time start = absl::Now();
    if (!log->Txn({}, b).ok()) std::exit(1);
    raw.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  r.floor_write_ms = Percentile(raw, 0.5);
  return r;
}

void Print(const char* name, const Result& r) {
  std::printf(
      "%-26s import %8.0f devices/s | claims %7.0f writes/s (%.2f ms each, "
      "incl. watch) | watch p50 %.2f ms p99 %.2f ms | floor: raw write "
      "%.2f ms\n",
      name, r.import_per_s, r.claims_per_s, 1000.0 / r.claims_per_s,
      r.watch_p50_ms, r.watch_p99_ms, r.floor_write_ms);
}

uint64_t DirBytes(const std::string& dir) {
  std::string cmd = absl::StrCat("du -sb ", dir, " | cut -f1");
  FILE* p = popen(cmd.c_str(), "r");
  unsigned long long n = 0;
  if (p != nullptr) {
    if (std::fscanf(p, "%llu", &n) != 1) n = 0;
    pclose(p);
  }
  return n;
}

int Main(int argc, char** argv) {
  const int devices = argc > 1 ? std::atoi(argv[1]) : 20000;
  const int claims = argc > 2 ? std::atoi(argv[2]) : 500;
  const std::string backends = argc > 3 ? argv[3] : "both";
  if (backends != "both" && backends != "embedded" && backends != "etcd") {
    std::fprintf(stderr, "backends: both, embedded or etcd\n");
    return 2;
  }
  char tmpl[] = "/tmp/catalog_backend_benchmark.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::printf(
      "catalog on each backend: %d factory devices imported, %d claims\n",
      devices, claims);

  if (backends != "etcd") {
    store::RocksOptions rocks;
    rocks.data_key = crypto::RandomBytes(32);
    auto store = *store::OpenRocksStore(dir + "/rocks",
                                        Catalog::ColumnFamilies(), rocks);
    auto log = *EmbeddedRevisionLog::Open(store.get());
    auto catalog = *Catalog::Open(log.get(), Clock::Real(), Options());
    Result r =
        Measure(catalog.get(), catalog.get(), log.get(), devices, claims, 1000);
    Print("embedded (RocksDB, sync)", r);
    std::printf("embedded RocksDB dir: %.1f MB for %d devices\n",
                DirBytes(dir + "/rocks") / 1e6, devices);
  }
  if (backends == "embedded") {
    std::system(("rm -rf " + dir).c_str());
    return 0;
  }
  if (!EtcdCluster::BinaryAvailable()) {
    std::printf("etcd: /usr/bin/etcd absent; install etcd-server\n");
    return 0;
  }
  {
    EtcdClusterOptions co;
    co.data_dir = dir + "/etcd";
    auto etcd = EtcdCluster::Start(co);
    if (!etcd.ok()) {
      std::fprintf(stderr, "%s\n", etcd.status().ToString().c_str());
      return 1;
    }
    EtcdOptions o;
    o.endpoints = (*etcd)->client_endpoints();
    o.max_txn_ops = co.max_txn_ops;
    auto log_a = *EtcdRevisionLog::Connect(o);
    auto log_b = *EtcdRevisionLog::Connect(o);
    auto a = *Catalog::Open(log_a.get(), Clock::Real(), Options());
    auto b = *Catalog::Open(log_b.get(), Clock::Real(), Options());
    const uint64_t before = DirBytes(co.data_dir);
    Result r = Measure(a.get(), b.get(), log_a.get(), devices, claims, 500);
    Print("etcd 3.4 (1 member)", r);
    const uint64_t after = DirBytes(co.data_dir);
    std::printf(
        "etcd data dir grew %.1f MB for %d devices: %.0f bytes/device "
        "(WAL + bbolt db, before compaction/defrag); a million devices: "
        "~%.1f GB and ~%.0f s to import at this rate\n",
        (after - before) / 1e6, devices,
        static_cast<double>(after - before) / devices,
        static_cast<double>(after - before) / devices * 1e6 / 1e9,
        1e6 / r.import_per_s);
    // etcd's own database (bbolt) file, i.e. what its --quota-backend-bytes
    // (2 GB by default) counts, before compaction and defragmentation.
    struct stat st;
    if (stat((co.data_dir + "/m0/member/snap/db").c_str(), &st) == 0) {
      std::printf("etcd db file (bbolt): %.1f MB = %.0f bytes/device\n",
                  st.st_size / 1e6, static_cast<double>(st.st_size) / devices);
    }
  }
  std::system(("rm -rf " + dir).c_str());
  return 0;
}

}  // namespace
}  // namespace sphere::management

int main(int argc, char** argv) { return sphere::management::Main(argc, argv); }
