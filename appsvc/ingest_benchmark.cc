// Telemetry ingest benchmark (issue 13): readings per second that appsvc's
// core ingests and acknowledges as durable (ContosoCloud::ReportTelemetry on
// RocksDB with synced writes through the GroupCommitWriter), next to a floor
// measured in the same run: raw synced RocksDB write batches of the same
// size carrying the same bytes, from the same number of threads.
//
//   bazel run -c opt //appsvc:ingest_benchmark -- --seconds=5 --threads=8
//
// Prints one line per measurement; never fails on a number.
#include <unistd.h>

#include <atomic>
#include <cstdio>
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

template <typename Fn>
double Run(int threads, double seconds, int batch, Fn fn) {
  std::atomic<uint64_t> readings{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
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
  return readings.load() / absl::ToDoubleSeconds(absl::Now() - start);
}

int Main() {
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  const double seconds = absl::GetFlag(FLAGS_seconds);

  // Floor: raw synced RocksDB batches of `batch` puts (same keys/values).
  double floor = 0;
  {
    auto store = sphere::store::OpenRocksStore(Scratch("raw"), {"samples"});
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      return 1;
    }
    floor = Run(threads, seconds, batch, [&](int t, uint64_t* seq,
                                             uint64_t* cycle) {
      v1::ReportTelemetryRequest req = MakeBatch(batch, seq, cycle);
      sphere::store::WriteBatch b;
      const std::string dev = absl::StrCat(std::string(63, 'a'), t % 10);
      for (const auto& s : req.samples()) {
        b.Put("samples", absl::StrCat(dev, "/", s.sequence()),
              s.SerializeAsString());
      }
      return (*store)->Write(b).ok();
    });
  }
  // appsvc: validate, dedupe, analyse, group commit, acknowledged durable.
  double ingest = 0;
  uint64_t groups = 0, batches = 0;
  {
    auto store =
        sphere::store::OpenRocksStore(Scratch("appsvc"), ColumnFamilies());
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      return 1;
    }
    GroupCommitWriter writer(store->get());
    ContosoCloud cloud(store->get(), &writer, sphere::Clock::Real());
    ingest = Run(threads, seconds, batch, [&](int t, uint64_t* seq,
                                              uint64_t* cycle) {
      const std::string dev = absl::StrCat(std::string(63, 'a'), t % 10);
      v1::ReportTelemetryRequest req = MakeBatch(batch, seq, cycle);
      auto r = cloud.ReportTelemetry(dev, req);
      return r.ok() && r->accepted() == static_cast<uint32_t>(batch);
    });
    groups = writer.groups();
    batches = writer.batches();
  }
  std::printf("threads=%d batch=%d seconds=%.1f\n", threads, batch, seconds);
  std::printf("floor  raw RocksDB synced batches : %10.0f readings/s\n",
              floor);
  std::printf("appsvc ingest, acked = durable    : %10.0f readings/s "
              "(%.0f%% of floor; target >= 200000)\n",
              ingest, floor > 0 ? 100 * ingest / floor : 0);
  std::printf("group commit: %llu batches in %llu synced writes\n",
              static_cast<unsigned long long>(batches),
              static_cast<unsigned long long>(groups));
  return 0;
}

}  // namespace
}  // namespace contoso::appsvc

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return contoso::appsvc::Main();
}
