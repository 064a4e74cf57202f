// shard_memory_benchmark: a shard's memory per owned device (issue 9).
//
//   bazel run //securitysvc/shard_server:shard_memory_benchmark -- --devices
//   10000
//
// Starts an in-process shard (TestPlatform: ShardServer + attestation
// plug-in on port 0, mutual TLS) over an encrypted RocksDB (--store rocks,
// as in production) or a MemoryStore, claims and attests --devices devices
// through the gateway path (GetChallenge + Attest over gRPC: nonce store,
// rate limiter, records, catalog entries all included), and prints the
// resident-set growth per device, measured after malloc_trim from a baseline
// taken after a warm-up. It also prints the share of one catalog entry
// (v1::Device in InMemoryCatalog) measured alone.
//
// Each device model is destroyed after it attested: only the shard's memory
// is measured, not the twins'. The shard's clock advances 100 ms per device
// (10 attestations/s), so per-device state that expires with time (nonces,
// challenge-rate buckets) is measured as a long-running shard holds it.
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/store/store.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/shard_server/test_platform.h"

ABSL_FLAG(int, devices, 5000, "Devices to claim and attest");
ABSL_FLAG(int, warmup, 100, "Devices attested before the baseline");
ABSL_FLAG(std::string, store, "rocks", "rocks (encrypted RocksDB) or memory");
ABSL_FLAG(std::string, dir, "", "RocksDB directory (default: a new /tmp dir)");

namespace sphere::shard {
namespace {

int64_t RssBytes() {
  malloc_trim(0);
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

void Die(const absl::Status& s, const char* what) {
  fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
  exit(1);
}

void AttestOne(TestPlatform& p, v1::AttestationService::Stub* stub, int i) {
  auto dev = p.NewDevice(absl::StrCat("memory-benchmark-device-", i));
  if (!dev.ok()) Die(dev.status(), "NewDevice");
  v1::GetChallengeResponse challenge;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::GetChallengeRequest req;
    req.set_device_id((*dev)->device_id());
    grpc::Status st = stub->GetChallenge(&ctx, req, &challenge);
    if (!st.ok()) Die(rpc::FromGrpcStatus(st), "GetChallenge");
  }
  auto quote = (*dev)->Quote(challenge.nonce());
  if (!quote.ok()) Die(quote.status(), "Quote");
  v1::AttestRequest req;
  req.set_device_id((*dev)->device_id());
  *req.mutable_quote() = *std::move(quote);
  v1::AttestResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  grpc::Status st = stub->Attest(&ctx, req, &resp);
  if (!st.ok()) Die(rpc::FromGrpcStatus(st), "Attest");
}

// CatalogEntryBytes: RSS growth per claimed-device entry in an
// InMemoryCatalog alone.
double CatalogEntryBytes(int n) {
  catalog::InMemoryCatalog catalog(crypto::RandomBytes(32));
  const int64_t before = RssBytes();
  for (int i = 0; i < n; ++i) {
    v1::Device d;
    d.set_id(crypto::HexEncode(crypto::RandomBytes(32)));
    d.set_public_key(crypto::RandomBytes(65));
    d.set_tenant_id(TestPlatform::kTenant);
    d.set_device_group_id(TestPlatform::kGroup);
    d.set_state(v1::CLAIMED);
    catalog.PutDevice(d);
  }
  return static_cast<double>(RssBytes() - before) / n;
}

int Main() {
  const int n = absl::GetFlag(FLAGS_devices);
  const std::string kind = absl::GetFlag(FLAGS_store);
  TestPlatform::Options o;
  if (kind == "rocks") {
    std::string dir = absl::GetFlag(FLAGS_dir);
    if (dir.empty()) {
      char tmpl[] = "/tmp/shard_memory_benchmark.XXXXXX";
      if (mkdtemp(tmpl) == nullptr) Die(absl::InternalError("mkdtemp"), "dir");
      dir = tmpl;
    }
    o.open_store = [dir](const std::vector<std::string>& cfs) {
      // As shard_main opens it.
      return store::OpenRocksStore(dir + "/db", cfs,
                                   ShardStoreOptions(crypto::RandomBytes(32)));
    };
    printf("store: encrypted RocksDB in %s\n", dir.c_str());
  } else if (kind == "memory") {
    printf("store: MemoryStore (records held in RAM)\n");
  } else {
    Die(absl::InvalidArgumentError("--store must be rocks or memory"), "flags");
  }
  TestPlatform p;
  if (auto s = p.Start(o); !s.ok()) Die(s, "Start");
  auto stub = p.Stub(p.gateway_tls());
  const int warmup = absl::GetFlag(FLAGS_warmup);
  for (int i = 0; i < warmup; ++i) AttestOne(p, stub.get(), -1 - i);
  const int64_t base = RssBytes();
  const absl::Time start = absl::Now();
  for (int i = 0; i < n; ++i) {
    AttestOne(p, stub.get(), i);
    p.clock().Advance(absl::Milliseconds(100));
  }
  const absl::Duration took = absl::Now() - start;
  const int64_t after = RssBytes();
  const uint64_t attested = p.attestation().DeviceCount();
  printf("devices attested: %d (+%d warm-up), shard counts %llu, %.1f s\n", n,
         warmup, static_cast<unsigned long long>(attested),
         absl::ToDoubleSeconds(took));
  printf("rss baseline %.1f MiB, after %.1f MiB\n", base / 1048576.0,
         after / 1048576.0);
  printf("shard memory per owned device: %.0f bytes\n",
         static_cast<double>(after - base) / n);
  printf(
      "of which one catalog entry (v1::Device in InMemoryCatalog): %.0f "
      "bytes\n",
      CatalogEntryBytes(n));
  return 0;
}

}  // namespace
}  // namespace sphere::shard

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return sphere::shard::Main();
}
