#include "loadgen/runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/util/log.h"
#include "loadgen/allocator.h"
#include "loadgen/floors.h"
#include "loadgen/phase_cpu.h"
#include "loadgen/phases.h"
#include "loadgen/process_cpu.h"
#include "loadgen/progress.h"
#include "loadgen/stats.h"

namespace sphere::loadgen {
namespace {

PhaseReport ToReport(const PhaseStats& s, absl::Time now) {
  PhaseReport p;
  p.name = s.name();
  p.skipped = s.skipped();
  p.skip_reason = s.skip_reason();
  if (p.skipped) return p;
  p.ops = s.ops();
  p.ops_per_s = s.ops_per_s(now);
  p.p50_ms = s.latency().PercentileMs(0.5);
  p.p99_ms = s.latency().PercentileMs(0.99);
  p.p999_ms = s.latency().PercentileMs(0.999);
  p.errors = s.errors();
  p.throughput = s.throughput_series(now);
  p.metrics = s.metrics();
  return p;
}

uint64_t SelfRss() {
  ReleaseFreeMemory();  // what the allocator keeps for reuse is not a twin
  auto rss = ReadProcessRss(0);
  return rss.ok() ? *rss : 0;
}

}  // namespace

std::vector<std::string> PhaseNames() {
  std::vector<std::string> names;
  for (const auto& phase : DefaultPhases()) names.push_back(phase->name());
  return names;
}

absl::StatusOr<Report> RunLoad(const RunOptions& options,
                               absl::Status* failure) {
  *failure = absl::OkStatus();
  if (!options.last_phase.empty()) {
    const std::vector<std::string> names = PhaseNames();
    if (std::find(names.begin(), names.end(), options.last_phase) ==
        names.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--last-phase ", options.last_phase,
          ": no such phase (phases: ", absl::StrJoin(names, ", "), ")"));
    }
  }
  const absl::Time t0 = absl::Now();
  auto opened = Fleet::Open(options.fleet);
  if (!opened.ok()) return opened.status();
  Fleet& fleet = **opened;
  const FleetOptions& fo = fleet.options();

  Report report;
  report.twins = fo.twins;
  report.shards = static_cast<int>(fleet.cluster().shards.size());
  report.cores = fo.cores;
  report.mode = fo.rate > 0 ? "open" : "closed";
  report.transport = fo.tls_per_twin ? "tls-per-twin" : "gateway";

  // Floors, before the load, in this process on this machine.
  log::Info("measuring floors", {});
  const EcdsaRates ecdsa = MeasureEcdsa(options.floor_time);
  report.floors.ecdsa_sign_per_s = ecdsa.sign_per_s;
  report.floors.ecdsa_verify_per_s = ecdsa.verify_per_s;
  // Device signs the quote; the service verifies it and signs the
  // certificate; every verify_chain_every-th twin verifies 2 signatures.
  const double chain_verifies =
      fo.verify_chain_every > 0 ? 2.0 / fo.verify_chain_every : 0;
  report.floors.attest_crypto_bound_per_s =
      AttestCryptoBound(fo.cores, ecdsa, 2, 1 + chain_verifies);
  auto echo = MeasureEchoRpc(fleet.cluster().shards, fleet.gateway_tls(),
                             options.floor_time, 64);
  if (!echo.ok()) {
    return absl::Status(echo.status().code(),
                        absl::StrCat("echo floor: ", echo.status().message()));
  }
  report.floors.echo_rpc_per_s = *echo;
  auto rocks = MeasureRocksDbSyncedWrites(
      options.report_dir + "/rocksdb-floor.tmp", options.floor_time);
  if (!rocks.ok()) return rocks.status();
  report.floors.rocksdb_synced_writes_per_s = *rocks;

  const uint64_t rss0 = SelfRss();
  const uint64_t shards_rss0 = fleet.ShardsRss();

  Progress progress(options.progress, options.progress_tty);
  std::vector<std::unique_ptr<PhaseStats>> stats;
  std::string stopped;  // why later phases did not run
  for (auto& phase : DefaultPhases()) {
    stats.push_back(std::make_unique<PhaseStats>(phase->name()));
    PhaseStats& s = *stats.back();
    if (!stopped.empty()) {
      s.Skip(stopped);
      continue;
    }
    if (std::string why = phase->Unavailable(fleet); !why.empty()) {
      s.Skip(why);
      continue;
    }
    progress.Watch(&s);
    const PhaseCpu cpu0 = PhaseCpu::Take(fleet);
    absl::Status st = phase->Run(fleet, s);
    if (!s.finished()) s.Finish(absl::Now());
    PhaseCpu::Report(cpu0, PhaseCpu::Take(fleet), s.ops(), s);
    progress.Watch(nullptr);
    // Memory after each phase (this process trimmed, the shards as they
    // are), so the report shows where the bytes per twin/device appear.
    const uint64_t rss_now = SelfRss();
    const uint64_t shards_now = fleet.ShardsRss();
    s.SetMetric("loadgen_rss_bytes", static_cast<double>(rss_now));
    s.SetMetric("shards_rss_bytes", static_cast<double>(shards_now));
    // The same per twin / per device, from the start of the first phase:
    // issue 14's memory targets, after each phase.
    if (!fleet.twins().empty()) {
      const double twins = static_cast<double>(fleet.twins().size());
      s.SetMetric("loadgen_rss_bytes_per_twin",
                  (static_cast<double>(rss_now) - static_cast<double>(rss0)) /
                      twins);
      s.SetMetric("shards_rss_bytes_per_device",
                  (static_cast<double>(shards_now) -
                   static_cast<double>(shards_rss0)) /
                      twins);
    }
    if (st.ok() && std::string(phase->name()) == "manufacture" &&
        !fleet.twins().empty()) {
      // Idle twins: built, booted, nothing in flight, no channel yet.
      report.rss_bytes_per_idle_twin =
          (static_cast<double>(rss_now) - static_cast<double>(rss0)) /
          static_cast<double>(fleet.twins().size());
    }
    if (!st.ok()) {
      *failure = absl::Status(st.code(),
                              absl::StrCat(phase->name(), ": ", st.message()));
      stopped = StopRequested()
                    ? std::string("not run: the run was interrupted")
                    : absl::StrCat("not run: phase ", phase->name(), " failed");
    } else if (phase->name() == options.last_phase) {
      stopped = absl::StrCat("not selected: --last-phase ", options.last_phase);
    }
  }
  progress.Stop();

  const uint64_t rss1 = SelfRss();
  const uint64_t shards_rss1 = fleet.ShardsRss();
  // Per twin actually built (an interrupted run may have fewer than asked).
  const double n =
      fleet.twins().empty() ? 1 : static_cast<double>(fleet.twins().size());
  report.rss_bytes_per_twin =
      (static_cast<double>(rss1) - static_cast<double>(rss0)) / n;
  report.service_rss_bytes_per_device =
      (static_cast<double>(shards_rss1) - static_cast<double>(shards_rss0)) / n;
  const absl::Time end = absl::Now();
  for (const auto& s : stats) report.phases.push_back(ToReport(*s, end));
  report.fault = fleet.fault;
  report.tls_connections = fleet.tls_connections;
  for (const auto& p : report.phases) {
    if (p.name == "attest" && !p.skipped && p.ops > 0 && p.ops_per_s > 0) {
      // One connection per attempt, over the attest phase's duration.
      report.tls_handshakes_per_s = static_cast<double>(fleet.tls_connections) *
                                    p.ops_per_s / static_cast<double>(p.ops);
    }
  }
  report.wall_s = absl::ToDoubleSeconds(end - t0);
  return report;
}

}  // namespace sphere::loadgen
