// ingest_crash_writer: child process for ingest_crash_test. Runs appsvc's
// core (ContosoCloud over a synced RocksStore through common/store's
// GroupCommitWriter) with `threads` devices reporting batches of `batch`
// samples forever, and prints "<device index> <last sequence>" to stdout only
// after ReportTelemetry acknowledged the batch. The test SIGKILLs it and checks
// that every acknowledged sample survived.
//
// Usage: ingest_crash_writer <db path> <threads> <batch>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/durable_writer.h"
#include "common/store/store.h"
#include "common/util/clock.h"

namespace contoso::appsvc {
std::string CrashDeviceId(int i);  // ingest_crash_writer_ids.cc
}  // namespace contoso::appsvc

int main(int argc, char** argv) {
  using namespace contoso::appsvc;
  if (argc != 4) {
    std::fprintf(stderr, "usage: ingest_crash_writer <db> <threads> <batch>\n");
    return 2;
  }
  auto store = sphere::store::OpenRocksStore(argv[1], ColumnFamilies());
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  sphere::store::GroupCommitWriter group(store->get(), {"appsvc"});
  SharedGroupCommit writer(&group);
  ContosoCloud cloud(store->get(), &writer, sphere::Clock::Real());
  const int threads = std::atoi(argv[2]);
  const int batch = std::atoi(argv[3]);
  absl::Mutex out_mu;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      const std::string dev = CrashDeviceId(t);
      uint64_t seq = 1;
      for (uint64_t cycle = 1;; ++cycle) {
        contoso::v1::ReportTelemetryRequest req;
        for (int i = 0; i < batch; ++i) {
          auto* s = req.add_samples();
          s->set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
          s->set_drying_temperature_c(60 + i % 10);
          s->set_rinse_agent_level_pct(80);
          s->set_cycle_state(i + 1 == batch ? contoso::v1::Telemetry::DONE
                                            : contoso::v1::Telemetry::DRYING);
          s->set_cycle_id(cycle);
          s->set_sequence(seq++);
        }
        auto r = cloud.ReportTelemetry(dev, req);
        if (!r.ok()) {
          std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
          std::_Exit(1);
        }
        absl::MutexLock l(&out_mu);
        std::printf("%d %llu\n", t, static_cast<unsigned long long>(seq - 1));
        std::fflush(stdout);
      }
    });
  }
  for (auto& t : ts) t.join();
  return 0;
}
