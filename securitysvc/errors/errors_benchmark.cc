// Error ingest throughput: events/s acknowledged (= durable: synced WAL
// through group commit) by ErrorStore::Ingest, uploads of 1000 events from
// distinct devices with W uploads in flight, next to the floor measured in
// the same run: raw RocksDB synced WriteBatches of the same bytes (the keys
// and values of ErrorStore's layout: one value per batch, its device index
// entry, one issue entry per signature), written by W
// threads at once (RocksDB's own writer queue merges them). Both on the
// encrypted store a shard uses.
//
//   bazel run -c opt //securitysvc/errors:errors_benchmark --
//       [--uploads=400] [--in_flight=32] [--events=1000] [--floor=1]
//       [--ingest=1] [--warm=1] [--writers=1] [--prefill=0]
//       [--shard_memory=0] [--filter=1]
//
// --warm=1 (default): every device uploaded once before the timed part (a
// shard that has seen its devices since it started: the duplicate check is
// the in-memory high-water mark, no read). --warm=0: every timed upload is
// its device's first since the start (one reverse seek for the device's last index key on the
// ingest worker per upload).
// --prefill=N: before the timed part, N other devices' batches (--events
// events each, the layout Ingest writes) are stored in the ingest half's
// DB, so the timed devices' reads meet a store of that size (issue 14: the
// shards' CPU per event grows with the fleet). --shard_memory=1: the
// shard's RocksDB memory (16 MiB of memtables, an 8 MiB block cache:
// securitysvc/shard_flags.h) instead of RocksDB's defaults. --filter=0:
// without the filter of devices with stored batches
// (ErrorStoreOptions::filter_stored_devices), so every cold device is read.
// --floor=0 / --ingest=0 skip one half (e.g. to profile the other with
// valgrind --tool=callgrind). Under callgrind, instrumentation covers only
// the timed ingest (run with --instr-atstart=no): instructions per event =
// total Ir / (uploads x events).
//
// Batch size (--events): the device side sends at most its error ring per
// upload (mcu::DeviceType::error_ring_capacity = 16 events; the twin
// library's ErrorUploadPolicy::max_batch = 100 never binds), so --events=16
// is what one device sends after a crash loop; 1000 (the default) is the
// service's batch limit, what a gateway or loadgen's error_report phase may
// send. docs/benchmarks.md records both.
//
// The DB lives under $STORE_BENCH_DIR, else $TEST_TMPDIR, else /tmp, and is
// deleted at exit. Prints numbers; never fails on timing.

#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/store/group_commit.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "securitysvc/errors/error_store.h"
#include "securitysvc/errors/error_testing.h"
#include "valgrind/callgrind.h"

namespace sphere::errors {
namespace {

int Flag(int argc, char** argv, const char* name, int def) {
  const std::string prefix = absl::StrCat("--", name, "=");
  for (int i = 1; i < argc; ++i) {
    int v = 0;
    if (absl::StartsWith(argv[i], prefix) &&
        absl::SimpleAtoi(argv[i] + prefix.size(), &v)) {
      return v;
    }
  }
  return def;
}

v1::UploadErrorsRequest MakeUpload(int events, uint64_t first_seq) {
  v1::UploadErrorsRequest r = CrashUpload(first_seq, events, 1767225600000);
  for (int i = 0; i < events; ++i) {
    v1::ErrorEvent* e = r.mutable_events(i);
    e->set_component_version("1.0.3");
    e->set_exit_code(i % 8);
    e->set_signal(11);
    e->set_detail("SIGSEGV in wash-cycle controller");
  }
  return r;
}

// CpuSeconds: this process's user + system CPU time so far (every thread:
// the ingest worker, group commit, RocksDB's flushes and compactions).
double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::string Device(int d) { return absl::StrFormat("%064x", d + 1); }

// RawBatch: the same keys and values Ingest writes for a new batch.
store::WriteBatch RawBatch(const std::string& device, const std::string& tenant,
                           const v1::UploadErrorsRequest& req, int64_t now) {
  store::WriteBatch b;
  v1::UploadErrorsRequest events;
  *events.mutable_events() = req.events();
  const uint64_t first = req.events(0).sequence();
  const uint64_t last = req.events(req.events_size() - 1).sequence();
  b.Put(kByTenant, BatchKey(tenant, now, device, first),
        events.SerializeAsString());
  b.Put(kByDevice, DeviceIndexKey(device, last),
        absl::StrCat(first, ",", now, ",", tenant));
  for (int exit = 0; exit < 8 && exit < req.events_size(); ++exit) {
    b.Put(kByIssue,
          IssueKey(tenant, "dw100-app", "1.0.3", 1, exit, device, first),
          absl::StrCat(now, ",", req.events_size() / 8));
  }
  return b;
}

int Main(int argc, char** argv) {
  const int uploads = Flag(argc, argv, "uploads", 400);
  const int in_flight = Flag(argc, argv, "in_flight", 32);
  const int events = Flag(argc, argv, "events", 1000);
  const bool run_floor = Flag(argc, argv, "floor", 1) != 0;
  const bool run_ingest = Flag(argc, argv, "ingest", 1) != 0;
  const bool warm = Flag(argc, argv, "warm", 1) != 0;
  // Group-commit writers (ErrorReportingPlugin::Options::writers, default 1).
  const int writers = Flag(argc, argv, "writers", 1);
  const int prefill = Flag(argc, argv, "prefill", 0);
  const bool shard_memory = Flag(argc, argv, "shard_memory", 0) != 0;
  const bool filter = Flag(argc, argv, "filter", 1) != 0;
  const char* base = std::getenv("STORE_BENCH_DIR");
  if (base == nullptr) base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base ? base : "/tmp", "/errors_bench.XXXXXX");
  const std::string root = mkdtemp(tmpl.data());
  store::RocksOptions options;
  options.data_key = std::string(32, 'k');
  if (shard_memory) {
    options.memtable_budget_bytes = size_t{16} << 20;
    options.block_cache_bytes = size_t{8} << 20;
  }
  const std::string tenant = "0f8fad5b-d9cb-469f-a165-70867728950e";
  const int64_t now = absl::ToUnixMillis(absl::Now());
  std::printf(
      "error ingest: %d uploads x %d events, %d in flight, encrypted "
      "RocksDB, sync=true, %d devices stored before, %s memory, filter "
      "%s\n",
      uploads, events, in_flight, prefill,
      shard_memory ? "the shard's" : "RocksDB's default",
      filter ? "on" : "off");

  // Floor: raw synced WriteBatches of the same bytes, `in_flight` writers.
  if (run_floor) {
    auto db = store::OpenRocksStore(root + "/raw", ColumnFamilies(), options);
    if (!db.ok()) {
      std::fprintf(stderr, "%s\n", db.status().ToString().c_str());
      return 1;
    }
    std::vector<store::WriteBatch> batches;
    for (int u = 0; u < uploads; ++u) {
      batches.push_back(
          RawBatch(Device(u), tenant, MakeUpload(events, 1), now));
    }
    size_t bytes = 0;
    for (const auto& b : batches) bytes += b.ApproximateBytes();
    std::atomic<int> next{0};
    absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    for (int w = 0; w < in_flight; ++w) {
      threads.emplace_back([&] {
        for (int i = next.fetch_add(1); i < uploads; i = next.fetch_add(1)) {
          absl::Status s = (*db)->Write(batches[i]);
          if (!s.ok()) {
            std::fprintf(stderr, "%s\n", s.ToString().c_str());
            std::abort();
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    double secs = absl::ToDoubleSeconds(absl::Now() - start);
    std::printf(
        "floor  raw synced WriteBatch (%d writers): %10.0f events/s  "
        "(%.1f MB/s, %zu bytes per event)\n",
        in_flight, uploads * double(events) / secs, bytes / secs / 1e6,
        bytes / (size_t(uploads) * events));
  }

  // Ingest: validation, quota, duplicate check, batch building, group
  // commit.
  if (run_ingest) {
    auto db =
        store::OpenRocksStore(root + "/ingest", ColumnFamilies(), options);
    if (!db.ok()) {
      std::fprintf(stderr, "%s\n", db.status().ToString().c_str());
      return 1;
    }
    if (prefill > 0) {
      // Devices after the timed ones (ids uploads + 1 ...), 1,000 a write.
      const v1::UploadErrorsRequest stored = MakeUpload(events, 1);
      const absl::Time t0 = absl::Now();
      for (int d = 0; d < prefill;) {
        store::WriteBatch b;
        for (int k = 0; k < 1000 && d < prefill; ++k, ++d) {
          b.Append(RawBatch(Device(uploads + d), tenant, stored, now));
        }
        if (absl::Status s = (*db)->Write(b); !s.ok()) {
          std::fprintf(stderr, "prefill: %s\n", s.ToString().c_str());
          return 1;
        }
      }
      std::printf("prefill: %d devices stored in %.1f s\n", prefill,
                  absl::ToDoubleSeconds(absl::Now() - t0));
    }
    store::GroupCommitOptions gopts;
    gopts.name = "errors";
    std::vector<std::unique_ptr<store::GroupCommitWriter>> owned;
    std::vector<store::GroupCommitWriter*> group_writers;
    for (int i = 0; i < std::max(1, writers); ++i) {
      owned.push_back(
          std::make_unique<store::GroupCommitWriter>(db->get(), gopts));
      group_writers.push_back(owned.back().get());
    }
    ErrorStoreOptions no_quota;  // one batch per device: quota not the topic
    no_quota.device_events_per_second = 0;
    no_quota.device_bytes_per_second = 0;
    no_quota.filter_stored_devices = filter;
    ErrorStore errors(db->get(), group_writers, Clock::Real(), no_quota);
    // The startup scan of the stored devices, before anything is timed.
    const absl::Time scan_start = absl::Now();
    if (errors.AwaitDeviceFilter()) {
      std::printf("filter of stored devices filled in %.2f s\n",
                  absl::ToDoubleSeconds(absl::Now() - scan_start));
    }
    if (warm) {
      // At most `in_flight` (and <= 512) warm-ups at once: each is its
      // device's first upload, so it takes the ingest worker's slow path,
      // whose queue is bounded (max_worker_queue); a refused warm-up would
      // leave its device cold in the timed part.
      const v1::UploadErrorsRequest hello = MakeUpload(1, 1);
      struct Warm {
        int outstanding = 0, done = 0, failed = 0, limit = 0;
      } wu;
      wu.limit = std::max(1, std::min(in_flight, 512));
      absl::Mutex wm;
      for (int u = 0; u < uploads; ++u) {
        {
          absl::MutexLock l(&wm);
          wm.Await(absl::Condition(
              +[](Warm* x) { return x->outstanding < x->limit; }, &wu));
          ++wu.outstanding;
        }
        errors.Ingest(Device(u), tenant, hello,
                      [&](absl::StatusOr<v1::UploadErrorsResponse> r) {
                        absl::MutexLock l(&wm);
                        --wu.outstanding;
                        ++wu.done;
                        if (!r.ok()) ++wu.failed;
                      });
      }
      int warm_failed = 0;
      {
        absl::MutexLock l(&wm);
        wm.Await(absl::Condition(
            +[](Warm* x) { return x->outstanding == 0; }, &wu));
        warm_failed = wu.failed;
      }
      if (warm_failed > 0) {
        std::fprintf(stderr, "warm-up: %d of %d uploads failed\n", warm_failed,
                     uploads);
        for (auto& gw : owned) gw->Stop();
        std::filesystem::remove_all(root);
        return 1;
      }
    }
    std::vector<v1::UploadErrorsRequest> reqs;
    for (int u = 0; u < uploads; ++u) {
      reqs.push_back(MakeUpload(events, warm ? 2 : 1));
    }
    struct Window {
      int outstanding = 0, done = 0, failed = 0, limit = 0, total = 0;
    } w;
    w.limit = in_flight;
    w.total = uploads;
    int& outstanding = w.outstanding;
    int& done = w.done;
    int& failed = w.failed;
    absl::Mutex mu;
    CALLGRIND_START_INSTRUMENTATION;
    const double cpu_start = CpuSeconds();
    absl::Time start = absl::Now();
    for (int u = 0; u < uploads; ++u) {
      {
        absl::MutexLock l(&mu);
        mu.Await(absl::Condition(
            +[](Window* x) { return x->outstanding < x->limit; }, &w));
        ++outstanding;
      }
      errors.Ingest(Device(u), tenant, reqs[u],
                    [&](absl::StatusOr<v1::UploadErrorsResponse> r) {
                      absl::MutexLock l(&mu);
                      --outstanding;
                      ++done;
                      if (!r.ok() || r->stored() != uint32_t(events)) {
                        ++failed;
                        if (failed == 1) {
                          std::fprintf(stderr, "upload failed: %s\n",
                                       r.status().ToString().c_str());
                        }
                      }
                    });
    }
    {
      absl::MutexLock l(&mu);
      mu.Await(absl::Condition(
          +[](Window* x) { return x->done == x->total; }, &w));
    }
    double secs = absl::ToDoubleSeconds(absl::Now() - start);
    const double cpu = CpuSeconds() - cpu_start;
    CALLGRIND_STOP_INSTRUMENTATION;
    uint64_t groups = 0;
    for (auto& w : owned) {
      w->Stop();
      groups += w->groups_written();
    }
    std::printf(
        "ingest ErrorStore::Ingest + group commit:  %10.0f events/s  "
        "(%s devices; %d writers; %llu group writes for %d uploads; "
        "%d failed)\n",
        uploads * double(events) / secs, warm ? "warm" : "cold",
        static_cast<int>(owned.size()), static_cast<unsigned long long>(groups),
        uploads, failed);
    std::printf(
        "ingest CPU (process, all threads): %.1f us per upload, %.2f "
        "us per event\n",
        cpu / uploads * 1e6, cpu / (double(uploads) * events) * 1e6);
  }
  std::filesystem::remove_all(root);
  return 0;
}

}  // namespace
}  // namespace sphere::errors

int main(int argc, char** argv) { return sphere::errors::Main(argc, argv); }
