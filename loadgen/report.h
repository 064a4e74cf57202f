// Report: the result of one load-generator run, written as
// REPORT_DIR/report.json (stable field names, so runs can be compared; see
// issue 14) and REPORT_DIR/report.html (self-contained: inline SVG plots of
// throughput over time and latency percentiles per phase; no script, no
// network).
//
// report.json:
//   { "twins": N, "shards": S, "cores": C, "wall_s": ..., "rss_bytes_per_twin":
//   ...,
//     "phases": { "<phase>": { "ops", "ops_per_s", "p50_ms", "p99_ms",
//     "p999_ms",
//                              "errors": {"<grpc code>": count}, "skipped",
//                              ["skip_reason"], ["metrics": {"<name>": x}] } },
//     "floors": { "ecdsa_sign_per_s", "ecdsa_verify_per_s",
//                 "attest_crypto_bound_per_s", "echo_rpc_per_s",
//                 "rocksdb_synced_writes_per_s" },
//     "service": { "rss_bytes_per_device" },
//     ["fault": { "kind", "shard", "at_s", "recover_s", "acknowledged",
//                 "verified", "lost", "retried" }],
//     "mode": "closed"|"open", "transport": "gateway"|"tls-per-twin",
//     ["tls_connections", "tls_handshakes_per_s"] }
// Bracketed keys appear only when they apply.
//
// Thread-safety: a plain value; build it on one thread.
#ifndef SPHERE_LOADGEN_REPORT_H_
#define SPHERE_LOADGEN_REPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sphere::loadgen {

struct PhaseReport {
  std::string name;
  bool skipped = false;
  std::string skip_reason;
  uint64_t ops = 0;
  double ops_per_s = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  std::map<std::string, uint64_t> errors;
  std::vector<uint64_t> throughput;  // completions in each second (html only)
  // The phase's own numbers (update_install: "mb_per_s", "bytes",
  // "installed_on_service"; telemetry: "readings_per_s"); omitted if none.
  std::map<std::string, double> metrics;
};

struct Floors {
  double ecdsa_sign_per_s = 0;
  double ecdsa_verify_per_s = 0;
  double attest_crypto_bound_per_s = 0;
  double echo_rpc_per_s = 0;
  double rocksdb_synced_writes_per_s = 0;
};

struct FaultReport {
  std::string kind;           // "restart-shard"
  std::string shard;          // e.g. "shard-0"
  double at_s = 0;            // seconds into the attest phase
  double recover_s = -1;      // kill -> first success on that shard (-1: never)
  uint64_t acknowledged = 0;  // certificates the twins received
  uint64_t verified = 0;      // of those, found in the owning shard's records
  uint64_t lost = 0;          // not in a shard that answered (fault_check.h)
  uint64_t retried = 0;       // twins refused for a nonce the restart lost,
                              // retried once with a fresh challenge
  uint64_t unreachable = 0;   // owner never answered the check: not verified
};

struct Report {
  uint64_t twins = 0;
  int shards = 0;
  int cores = 0;
  double wall_s = 0;
  double rss_bytes_per_twin = 0;
  // RSS growth right after manufacture, per twin: what an idle twin costs.
  double rss_bytes_per_idle_twin = 0;
  std::vector<PhaseReport> phases;  // in run order
  Floors floors;
  double service_rss_bytes_per_device = 0;
  std::optional<FaultReport> fault;
  std::string mode = "closed";
  std::string transport = "gateway";
  // --tls-per-twin: TCP connections (full mTLS handshakes) opened by the
  // attest phase, and per second of it.
  uint64_t tls_connections = 0;
  double tls_handshakes_per_s = 0;

  std::string ToJson() const;
  std::string ToHtml() const;
  // Write creates `dir` if needed and writes report.json and report.html.
  absl::Status Write(const std::string& dir) const;
  // Summary: the human-readable table printed at the end of a run, with the
  // ratios to the targets.
  std::string Summary() const;
};

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_REPORT_H_
