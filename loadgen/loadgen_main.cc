// loadgen: drives N twins (twin library + mcu-model, in this one process)
// through every phase of the platform against a running cluster, measures
// floors in the same run and writes REPORT_DIR/report.json + report.html.
//
//   loadgen --cluster DIR/cluster.json --twins N [--report DIR]
//           [--rate R] [--tls-per-twin] [--fault restart-shard]
//
// `./sphere load` starts a fresh cluster and runs this against it. Exit
// codes: 0 every phase that ran succeeded; 1 a phase failed or the run was
// interrupted (SIGINT/SIGTERM stop the current phase; the report is still
// written); 2 bad flags; 3 the run could not start (cluster, files).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "absl/synchronization/mutex.h"
#include "common/util/log.h"
#include "loadgen/runner.h"
#include "loadgen/stats.h"

namespace sphere::loadgen {
namespace {

int Main(int argc, char** argv) {
  RunOptions o;
  FleetOptions& f = o.fleet;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  f.cores = cores > 0 ? static_cast<int>(cores) : 1;
  double floor_seconds = 1, phase_timeout_s = 4 * 3600;
  CLI::App app(
      "loadgen: many twins in one process through every Sphere hot path, "
      "with a report (report.json, report.html)",
      "loadgen");
  app.add_option("--cluster", f.cluster_file,
                 "cluster.json written by local_cluster")
      ->required();
  app.add_option("--twins", f.twins, "number of twins")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10000000}));
  app.add_option("--report", o.report_dir,
                 "directory for report.json and report.html")
      ->capture_default_str();
  app.add_option("--rate", f.rate,
                 "open loop: start this many attestations per second "
                 "(0 = closed loop, as fast as the window allows)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--window", f.max_active,
                 "twins mid-attestation at once (closed-loop window)")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  app.add_option("--in-flight", f.max_in_flight,
                 "RPCs in flight on the gateway channels")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--attest-batch", f.attest_batch,
                 "twins per GetChallenges/AttestBatch RPC on the gateway "
                 "channels (1 = one GetChallenge/Attest RPC per twin)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--attest-window", f.attest_window,
                 "attest phase on the gateway channels: twins "
                 "mid-attestation at once (--tls-per-twin and --fault use "
                 "--window)")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  app.add_option("--claim-batch", f.claim_batch,
                 "devices per ClaimDevices call (bulk claim into the fleet's "
                 "group); 1 = ClaimDevice + AssignDevice per device")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--claim-window", f.claim_window,
                 "ClaimDevice calls in flight")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--verify-chain-every", f.verify_chain_every,
                 "every Nth twin verifies its issued chain (0 = none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--error-events", f.error_events,
                 "error_report phase: app crashes recorded per twin")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--error-batch", f.error_batch,
                 "error_report phase: twins per UploadErrorsBatch RPC on the "
                 "gateway channels (1 = one UploadErrors RPC per twin)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--error-in-flight", f.error_in_flight,
                 "error_report phase: upload RPCs in flight")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--update-batch", f.update_batch,
                 "update_check phase: twins per GetUpdatesBatch RPC on the "
                 "gateway channels (1 = one GetUpdates RPC per twin)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--update-in-flight", f.update_in_flight,
                 "update_check phase: GetUpdatesBatch RPCs in flight per shard")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--update-fraction", f.update_fraction,
                 "update_install phase: fraction of the certified fleet that "
                 "installs a real deployment (at least one twin; 0 skips it)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--telemetry-batch", f.telemetry_batch,
                 "telemetry phase: readings per ReportTelemetry batch")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--telemetry-batches", f.telemetry_batches,
                 "telemetry phase: batches each twin sends (0 skips it); "
                 "default one batch of 100 readings per twin, so a million "
                 "twins send 10^8 readings (5 was the old volume)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--keep-certificates", f.keep_certificates,
                 "twins keep their device certificate from the attest phase "
                 "(one tenant CA copy per process) and prove to appsvc "
                 "without attesting again")
      ->capture_default_str();
  app.add_option("--prove-reattest-every", f.prove_reattest_every,
                 "telemetry phase: every Nth twin drops its kept "
                 "certificate and attests again before proving (0 none, 1 "
                 "every twin: the behaviour before certificates were kept)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("--prove-window", f.prove_window,
                 "telemetry phase: senders of readings to appsvc at once "
                 "(at least one per channel; proving uses batch calls)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--update-image-kib", f.update_image_kib,
                 "update_install phase: payload size of the deployed app "
                 "image in KiB")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_flag("--install-reattest", f.install_reattest,
               "update_install phase: the fraction re-attests before its "
               "first update check (the behaviour before stop 23) instead of "
               "keeping its session tokens behind a catalog barrier per "
               "shard");
  app.add_flag("--install-decommit", f.install_decommit,
               "update_install phase: turn the allocator's aggressive "
               "decommit on during the installs (the behaviour of stop 22: "
               "an madvise per freed download buffer)");
  app.add_flag("--tls-per-twin", f.tls_per_twin,
               "one mutual-TLS connection (full handshake) per twin instead "
               "of shared gateway channels; for smaller fleets");
  app.add_option("--fault", f.fault,
                 "fault scenario: restart-shard (SIGKILL shard-0 mid-attest; "
                 "local_cluster restarts it)")
      ->check(CLI::IsMember({"", "restart-shard"}));
  app.add_option("--fault-at", f.fault_at,
                 "fraction of the fleet certified when the fault strikes")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--cores", f.cores,
                 "cores the crypto bound assumes; also the threads that "
                 "manufacture the fleet")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--floor-seconds", floor_seconds,
                 "time spent measuring each floor")
      ->check(CLI::Range(0.1, 60.0))
      ->capture_default_str();
  app.add_option("--phase-timeout", phase_timeout_s,
                 "seconds a phase may take before the run gives up")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  app.add_option("--last-phase", o.last_phase,
                 "run the phases in order up to and including this one; "
                 "later phases are reported skipped (e.g. claim: build, "
                 "register and claim the fleet only)")
      ->check(CLI::IsMember(PhaseNames()));
  app.add_option("--tenant", f.tenant,
                 "tenant that claims the fleet (default loadgen-<time>)");
  app.add_option("--appsvc", f.appsvc,
                 "telemetry phase: appsvc host:port serving the fleet's "
                 "--tenant and product \"loadgen\" (default: cluster.json's)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  o.floor_time = absl::Seconds(floor_seconds);
  f.phase_timeout = absl::Seconds(phase_timeout_s);
  o.progress = stderr;
  o.progress_tty = isatty(fileno(stderr));
  log::SetComponent("loadgen");
  // Ctrl-C / SIGTERM: stop the phase, still write the report.
  InstallStopHandlers();

  absl::Status failure;
  auto report = RunLoad(o, &failure);
  if (!report.ok()) {
    std::cerr << "loadgen: " << report.status() << "\n";
    return 3;
  }
  if (auto s = report->Write(o.report_dir); !s.ok()) {
    std::cerr << "loadgen: cannot write the report: " << s << "\n";
    return 3;
  }
  std::cout << report->Summary() << "report: " << o.report_dir
            << "/report.json, " << o.report_dir << "/report.html\n";
  if (!failure.ok()) {
    std::cerr << "loadgen: " << failure << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace sphere::loadgen

int main(int argc, char** argv) {
  // As the shard: Debian's Abseil checks every Mutex acquisition for
  // lock-order cycles (on in its non-NDEBUG build), a few % of loadgen's CPU
  // per attestation (issue 14). Tests keep it; the load generator does not.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return sphere::loadgen::Main(argc, argv);
}
