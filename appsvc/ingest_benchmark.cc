// Telemetry ingest benchmark (issue 13): readings per second that appsvc's
// core ingests and acknowledges as durable (ContosoCloud::ReportTelemetry on
// RocksDB with synced writes through common/store's GroupCommitWriter), next to
// a floor measured in the same run from the same number of threads: raw synced
// RocksDB write batches with one put per reading, and raw synced writes of
// one value per batch carrying the same serialized samples (appsvc's layout).
//
//   bazel run -c opt //appsvc:ingest_benchmark -- --seconds=5 --threads=8
//
// A fourth line measures a gateway's many-device call
// (ContosoCloud::ReportTelemetryMany, --devices_per_call devices of
// --batch readings each, one durable write per call).
//
// Each line also gives the process CPU (all threads) per reading over the
// measurement; --many_only measures just the many-device call (callgrind).
//
// Prints one line per measurement; never fails on a number.
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/durable_writer.h"
#include "common/store/store.h"
#include "common/util/clock.h"

ABSL_FLAG(double, seconds, 5, "Duration of each measurement");
ABSL_FLAG(int, threads, 8, "Concurrent writers (devices reporting at once)");
ABSL_FLAG(int, batch, 1000, "Samples per batch");
ABSL_FLAG(std::string, dir, "", "Scratch directory (default $TMPDIR)");
ABSL_FLAG(int, devices_per_call, 16,
          "Devices per ReportTelemetryMany call (a gateway's batch call)");
ABSL_FLAG(bool, many_only, false,
          "Measure only the many-device call (e.g. under callgrind)");

namespace contoso::appsvc {
namespace {

std::string Scratch(const std::string& name) {
  std::string base = absl::GetFlag(FLAGS_dir);
  if (base.empty()) {
    const char* t = getenv("TEST_TMPDIR");
    if (t == nullptr) t = getenv("TMPDIR");
    base = t ? t : "/tmp";
  }
  return absl::StrCat(base, "/appsvc-bench-", getpid(), "-", name);
}

// DeviceId: one device per writer thread (64 hex digits).
std::string DeviceId(int t) {
  std::string id = absl::StrCat(std::string(60, 'a'), 1000 + t);
  return id.substr(0, 64);
}

v1::ReportTelemetryRequest MakeBatch(int n, uint64_t* seq, uint64_t* cycle) {
  v1::ReportTelemetryRequest req;
  const int64_t now = absl::ToUnixMillis(absl::Now());
  for (int i = 0; i < n; ++i) {
    v1::Telemetry* s = req.add_samples();
    s->set_time_unix_ms(now + i);
    s->set_water_temperature_c(55.5);
    s->set_drying_temperature_c(64 + (i % 5));
    s->set_rinse_agent_level_pct(80);
    const int phase = i % 100;
    s->set_cycle_state(phase < 90 ? v1::Telemetry::DRYING
                                  : (phase == 99 ? v1::Telemetry::DONE
                                                 : v1::Telemetry::RINSING));
    s->set_cycle_id(*cycle + i / 100);
    s->set_sequence((*seq)++);
  }
  *cycle += (n + 99) / 100;
  return req;
}

// CpuSeconds: this process's user + system CPU so far.
double CpuSeconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Rate {
  double readings_per_s = 0;
  double cpu_us_per_reading = 0;  // process CPU (all threads) per reading
};

template <typename Fn>
Rate Run(int threads, double seconds, int batch, Fn fn) {
  std::atomic<uint64_t> readings{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  const double cpu0 = CpuSeconds();
  const absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t seq = 1, cycle = 1;
      while (!stop.load()) {
        if (!fn(t, &seq, &cycle)) {
          std::fprintf(stderr, "write failed\n");
          std::abort();
        }
        readings += batch;
      }
    });
  }
  absl::SleepFor(absl::Seconds(seconds));  // a benchmark's measuring window
  stop = true;
  for (auto& t : ts) t.join();
  const double n = static_cast<double>(readings.load());
  Rate r;
  r.readings_per_s = n / absl::ToDoubleSeconds(absl::Now() - start);
  r.cpu_us_per_reading = n > 0 ? (CpuSeconds() - cpu0) / n * 1e6 : 0;
  return r;
}

struct Ingest {
  bool ok = false;
  Rate rate;
  uint64_t groups = 0, batches = 0;  // synced writes, calls written
};

// RunIngest measures appsvc's core on a fresh RocksDB store: each thread
// sends one device's `batch` readings per ReportTelemetry call when
// `per_call` is 0, else one ReportTelemetryMany call of `per_call` devices
// of its own with those readings each. Requests are built once per thread
// (the client's work); each iteration only renumbers sequences and cycles.
Ingest RunIngest(const std::string& name, int threads, double seconds,
                 int batch, int per_call) {
  Ingest out;
  auto store = sphere::store::OpenRocksStore(Scratch(name), ColumnFamilies());
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return out;
  }
  sphere::store::GroupCommitWriter group(store->get(), {"appsvc"});
  SharedGroupCommit writer(&group);
  ContosoCloud cloud(store->get(), &writer, sphere::Clock::Real());
  std::vector<v1::ReportTelemetryRequest> reqs(threads);
  for (int t = 0; t < threads; ++t) {
    uint64_t s = 1, c = 1;
    reqs[t] = MakeBatch(batch, &s, &c);
  }
  const int devices = per_call > 0 ? per_call : 1;
  out.rate = Run(
      threads, seconds, batch * devices,
      [&](int t, uint64_t* seq, uint64_t* cycle) {
        v1::ReportTelemetryRequest& req = reqs[t];
        for (int i = 0; i < req.samples_size(); ++i) {
          req.mutable_samples(i)->set_sequence((*seq)++);
          req.mutable_samples(i)->set_cycle_id(*cycle + i / 100);
        }
        *cycle += (batch + 99) / 100;
        if (per_call == 0) {
          auto r = cloud.ReportTelemetry(DeviceId(t), req);
          return r.ok() && r->accepted() == static_cast<uint32_t>(batch);
        }
        // The same samples for each of the thread's devices.
        std::vector<ContosoCloud::TelemetryItem> items;
        for (int d = 0; d < per_call; ++d) {
          items.push_back({DeviceId(t * per_call + d), &req});
        }
        for (const auto& r : cloud.ReportTelemetryMany(items)) {
          if (!r.ok() || r->accepted() != static_cast<uint32_t>(batch)) {
            return false;
          }
        }
        return true;
      });
  out.groups = group.groups_written();
  out.batches = group.batches_written();
  out.ok = true;
  return out;
}

int Main() {
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  const double seconds = absl::GetFlag(FLAGS_seconds);

  const int per_call = absl::GetFlag(FLAGS_devices_per_call);
  if (absl::GetFlag(FLAGS_many_only)) {
    Ingest many = RunIngest("appsvc-many", threads, seconds, batch, per_call);
    if (!many.ok) return 1;
    std::printf(
        "appsvc ingest, %d devices per call: %10.0f readings/s, %.2f us CPU "
        "per reading (%llu calls in %llu synced writes)\n",
        per_call, many.rate.readings_per_s, many.rate.cpu_us_per_reading,
        static_cast<unsigned long long>(many.batches),
        static_cast<unsigned long long>(many.groups));
    return 0;
  }
  // Floor: raw synced RocksDB batches of `batch` puts (same keys/values).
  Rate floor;
  {
    auto store = sphere::store::OpenRocksStore(Scratch("raw"), {"samples"});
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      return 1;
    }
    // Values are serialized once per thread (the client's work); each
    // iteration builds the keys and the batch and writes it synced.
    std::vector<std::vector<std::string>> values(threads);
    for (int t = 0; t < threads; ++t) {
      uint64_t s = 1, c = 1;
      const v1::ReportTelemetryRequest req = MakeBatch(batch, &s, &c);
      for (const auto& sample : req.samples()) {
        values[t].push_back(sample.SerializeAsString());
      }
    }
    floor = Run(threads, seconds, batch, [&](int t, uint64_t* seq, uint64_t*) {
      sphere::store::WriteBatch b;
      const std::string dev = DeviceId(t);
      for (const std::string& v : values[t]) {
        b.Put("samples", absl::StrCat(dev, "/", (*seq)++), v);
      }
      return (*store)->Write(b).ok();
    });
  }
  // Floor 2: raw synced RocksDB writes of one value per batch holding the
  // same serialized samples (appsvc's storage layout, no appsvc logic).
  Rate floor_chunk;
  {
    auto store =
        sphere::store::OpenRocksStore(Scratch("raw-chunk"), {"samples"});
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      return 1;
    }
    std::vector<std::string> chunks(threads);
    for (int t = 0; t < threads; ++t) {
      uint64_t s = 1, c = 1;
      chunks[t] = MakeBatch(batch, &s, &c).SerializeAsString();
    }
    floor_chunk =
        Run(threads, seconds, batch, [&](int t, uint64_t* seq, uint64_t*) {
          sphere::store::WriteBatch b;
          b.Put("samples", absl::StrCat(DeviceId(t), "/", *seq), chunks[t]);
          *seq += batch;
          return (*store)->Write(b).ok();
        });
  }
  // appsvc: validate, dedupe, analyse, group commit, acknowledged durable;
  // once one device per call (ReportTelemetry), once a gateway's
  // many-device call (ReportTelemetryMany: `devices_per_call` devices of
  // the thread's own, `batch` readings each, one durable write per call).
  Ingest one = RunIngest("appsvc", threads, seconds, batch, 0);
  if (!one.ok) return 1;
  Ingest many = RunIngest("appsvc-many", threads, seconds, batch, per_call);
  if (!many.ok) return 1;
  const Rate ingest = one.rate, ingest_many = many.rate;
  const uint64_t groups = one.groups, batches = one.batches;
  const uint64_t many_groups = many.groups, many_batches = many.batches;
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  const double chunk = floor_chunk.readings_per_s;
  std::printf("threads=%d batch=%d seconds=%.1f load_average_1m=%.1f\n",
              threads, batch, seconds, load[0]);
  std::printf(
      "floor  raw RocksDB synced, 1 put per reading: %10.0f readings/s, "
      "%.2f us CPU per reading\n",
      floor.readings_per_s, floor.cpu_us_per_reading);
  std::printf(
      "floor  raw RocksDB synced, 1 value per batch: %10.0f readings/s, "
      "%.2f us CPU per reading\n",
      chunk, floor_chunk.cpu_us_per_reading);
  std::printf(
      "appsvc ingest, acked = durable    : %10.0f readings/s, %.2f us CPU "
      "per reading (%.0f%% of the 1-value floor; target >= 200000)\n",
      ingest.readings_per_s, ingest.cpu_us_per_reading,
      chunk > 0 ? 100 * ingest.readings_per_s / chunk : 0);
  std::printf("group commit: %llu batches in %llu synced writes\n",
              static_cast<unsigned long long>(batches),
              static_cast<unsigned long long>(groups));
  std::printf(
      "appsvc ingest, %d devices per call: %10.0f readings/s, %.2f us CPU "
      "per reading (%.0f%% of the 1-value floor; %llu calls in %llu synced "
      "writes)\n",
      per_call, ingest_many.readings_per_s, ingest_many.cpu_us_per_reading,
      chunk > 0 ? 100 * ingest_many.readings_per_s / chunk : 0,
      static_cast<unsigned long long>(many_batches),
      static_cast<unsigned long long>(many_groups));
  return 0;
}

}  // namespace
}  // namespace contoso::appsvc

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return contoso::appsvc::Main();
}
