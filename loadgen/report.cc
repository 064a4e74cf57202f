#include "loadgen/report.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"

namespace sphere::loadgen {
namespace {

// Finite numbers only: JSON has no NaN or infinity.
double Num(double v) { return std::isfinite(v) ? v : 0; }

std::string Escape(const std::string& s) {
  return absl::StrReplaceAll(
      s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

const PhaseReport* Find(const Report& r, const std::string& name) {
  for (const auto& p : r.phases) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

// ThroughputSvg: completions per second of one phase over its seconds.
std::string ThroughputSvg(const PhaseReport& p) {
  constexpr int kW = 640, kH = 180, kL = 60, kB = 30, kT = 10, kR = 10;
  uint64_t peak = 1;
  for (uint64_t v : p.throughput) peak = std::max(peak, v);
  const size_t n = std::max<size_t>(p.throughput.size(), 2);
  std::string pts;
  for (size_t i = 0; i < p.throughput.size(); ++i) {
    const double x = kL + (kW - kL - kR) * (static_cast<double>(i) + 0.5) / n;
    const double y =
        kT +
        (kH - kT - kB) * (1.0 - static_cast<double>(p.throughput[i]) / peak);
    absl::StrAppendFormat(&pts, "%.1f,%.1f ", x, y);
  }
  return absl::StrFormat(
      "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
      "role='img' aria-label='%s throughput'>"
      "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#444'/>"
      "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#444'/>"
      "<text x='%d' y='%d' font-size='11' text-anchor='end'>%d/s</text>"
      "<text x='%d' y='%d' font-size='11' text-anchor='end'>0</text>"
      "<text x='%d' y='%d' font-size='11' text-anchor='end'>%d s</text>"
      "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' "
      "points='%s'/></svg>",
      kW, kH, Escape(p.name), kL, kT, kL, kH - kB, kL, kH - kB, kW - kR,
      kH - kB, kL - 4, kT + 10, peak, kL - 4, kH - kB, kW - kR, kH - kB + 15,
      p.throughput.size(), pts);
}

// LatencySvg: p50 / p99 / p99.9 bars per measured phase, log scale.
std::string LatencySvg(const Report& r) {
  std::vector<const PhaseReport*> ps;
  for (const auto& p : r.phases) {
    if (!p.skipped && p.ops > 0) ps.push_back(&p);
  }
  constexpr int kH = 240, kL = 60, kB = 40, kT = 20, kGroup = 120;
  const int w =
      kL + kGroup * static_cast<int>(std::max<size_t>(ps.size(), 1)) + 20;
  double top = 1;
  for (const auto* p : ps) top = std::max(top, p->p999_ms);
  const double lo = 0.01, log_span = std::log10(top * 2 / lo);
  auto y = [&](double ms) {
    const double f = std::log10(std::max(ms, lo) / lo) / log_span;
    return kT + (kH - kT - kB) * (1 - f);
  };
  std::string out = absl::StrFormat(
      "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
      "role='img' aria-label='latency percentiles'>"
      "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#444'/>",
      w, kH, kL, kT, kL, kH - kB);
  for (double tick = lo; tick <= top * 2; tick *= 10) {
    absl::StrAppendFormat(
        &out,
        "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/>"
        "<text x='%d' y='%.1f' font-size='11' text-anchor='end'>%g ms</text>",
        kL, y(tick), w - 10, y(tick), kL - 4, y(tick) + 4, tick);
  }
  const char* colors[] = {"#2ca02c", "#ff7f0e", "#d62728"};
  const char* names[] = {"p50", "p99", "p99.9"};
  for (size_t i = 0; i < ps.size(); ++i) {
    const double vals[] = {ps[i]->p50_ms, ps[i]->p99_ms, ps[i]->p999_ms};
    const int x0 = kL + 10 + kGroup * static_cast<int>(i);
    for (int k = 0; k < 3; ++k) {
      const double yy = y(vals[k]);
      absl::StrAppendFormat(
          &out,
          "<rect x='%d' y='%.1f' width='28' height='%.1f' fill='%s'>"
          "<title>%s %s %.3f ms</title></rect>",
          x0 + 32 * k, yy, std::max(0.0, kH - kB - yy), colors[k],
          Escape(ps[i]->name), names[k], vals[k]);
    }
    absl::StrAppendFormat(&out,
                          "<text x='%d' y='%d' font-size='12' "
                          "text-anchor='middle'>%s</text>",
                          x0 + 46, kH - kB + 16, Escape(ps[i]->name));
  }
  for (int k = 0; k < 3; ++k) {
    absl::StrAppendFormat(&out,
                          "<rect x='%d' y='%d' width='10' height='10' "
                          "fill='%s'/><text x='%d' y='%d' font-size='11'>%s"
                          "</text>",
                          kL + 10 + 70 * k, kH - 14, colors[k],
                          kL + 24 + 70 * k, kH - 5, names[k]);
  }
  out += "</svg>";
  return out;
}

}  // namespace

std::string Report::ToJson() const {
  nlohmann::ordered_json j;
  j["twins"] = twins;
  j["shards"] = shards;
  j["cores"] = cores;
  j["wall_s"] = Num(wall_s);
  j["rss_bytes_per_twin"] = Num(rss_bytes_per_twin);
  j["rss_bytes_per_idle_twin"] = Num(rss_bytes_per_idle_twin);
  nlohmann::ordered_json phases_json = nlohmann::ordered_json::object();
  for (const auto& p : phases) {
    nlohmann::ordered_json pj;
    pj["ops"] = p.ops;
    pj["ops_per_s"] = Num(p.ops_per_s);
    pj["p50_ms"] = Num(p.p50_ms);
    pj["p99_ms"] = Num(p.p99_ms);
    pj["p999_ms"] = Num(p.p999_ms);
    pj["errors"] = nlohmann::ordered_json::object();
    for (const auto& [code, n] : p.errors) pj["errors"][code] = n;
    pj["skipped"] = p.skipped;
    if (p.skipped) pj["skip_reason"] = p.skip_reason;
    if (!p.metrics.empty()) {
      pj["metrics"] = nlohmann::ordered_json::object();
      for (const auto& [k, v] : p.metrics) pj["metrics"][k] = Num(v);
    }
    phases_json[p.name] = std::move(pj);
  }
  j["phases"] = std::move(phases_json);
  j["floors"] = {
      {"ecdsa_sign_per_s", Num(floors.ecdsa_sign_per_s)},
      {"ecdsa_verify_per_s", Num(floors.ecdsa_verify_per_s)},
      {"attest_crypto_bound_per_s", Num(floors.attest_crypto_bound_per_s)},
      {"echo_rpc_per_s", Num(floors.echo_rpc_per_s)},
      {"rocksdb_synced_writes_per_s", Num(floors.rocksdb_synced_writes_per_s)},
  };
  j["service"] = {{"rss_bytes_per_device", Num(service_rss_bytes_per_device)}};
  if (fault) {
    j["fault"] = {{"kind", fault->kind},
                  {"shard", fault->shard},
                  {"at_s", Num(fault->at_s)},
                  {"recover_s", Num(fault->recover_s)},
                  {"acknowledged", fault->acknowledged},
                  {"verified", fault->verified},
                  {"lost", fault->lost},
                  {"unreachable", fault->unreachable},
                  {"retried", fault->retried}};
  }
  j["mode"] = mode;
  j["transport"] = transport;
  if (transport == "tls-per-twin") {
    j["tls_connections"] = tls_connections;
    j["tls_handshakes_per_s"] = Num(tls_handshakes_per_s);
  }
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string Report::ToHtml() const {
  std::string h =
      "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
      "<title>Sphere load report</title><style>"
      "body{font-family:sans-serif;margin:2em;color:#222}"
      "table{border-collapse:collapse}td,th{border:1px solid #ccc;"
      "padding:3px 8px;text-align:right}th{background:#f3f3f3}"
      "td.l{text-align:left}</style></head><body>\n";
  absl::StrAppendFormat(
      &h,
      "<h1>Sphere load report</h1><p>%d twins, %d shards, %d cores, %s loop, "
      "%s transport; wall %.1f s; %.0f B RSS per twin; service %.0f B RSS per "
      "device.</p>\n",
      twins, shards, cores, Escape(mode), Escape(transport), wall_s,
      rss_bytes_per_twin, service_rss_bytes_per_device);
  h += "<h2>Phases</h2><table><tr><th>phase</th><th>ops</th><th>ops/s</th>"
       "<th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>errors</th></tr>\n";
  for (const auto& p : phases) {
    if (p.skipped) {
      absl::StrAppendFormat(&h,
                            "<tr><td class='l'>%s</td><td class='l' "
                            "colspan='6'>skipped: %s</td></tr>\n",
                            Escape(p.name), Escape(p.skip_reason));
      continue;
    }
    std::string errs;
    for (const auto& [code, n] : p.errors) {
      absl::StrAppend(&errs, errs.empty() ? "" : ", ", code, " ", n);
    }
    absl::StrAppendFormat(
        &h,
        "<tr><td class='l'>%s</td><td>%d</td><td>%.0f</td><td>%.3f</td>"
        "<td>%.3f</td><td>%.3f</td><td class='l'>%s</td></tr>\n",
        Escape(p.name), p.ops, p.ops_per_s, p.p50_ms, p.p99_ms, p.p999_ms,
        Escape(errs.empty() ? "-" : errs));
    if (!p.metrics.empty()) {
      std::string m;
      for (const auto& [k, v] : p.metrics) {
        absl::StrAppendFormat(&m, "%s%s = %.6g", m.empty() ? "" : ", ", k, v);
      }
      absl::StrAppendFormat(&h,
                            "<tr><td></td><td class='l' colspan='6'>%s</td>"
                            "</tr>\n",
                            Escape(m));
    }
  }
  h += "</table>\n<h2>Floors (measured in this run)</h2><table>\n";
  absl::StrAppendFormat(
      &h,
      "<tr><td class='l'>ECDSA P-256 sign / s (one core)</td><td>%.0f</td></tr>"
      "<tr><td class='l'>ECDSA P-256 verify / s (one "
      "core)</td><td>%.0f</td></tr>"
      "<tr><td class='l'>attestation crypto bound / s (all cores)</td>"
      "<td>%.0f</td></tr>"
      "<tr><td class='l'>empty RPC / s (same channels)</td><td>%.0f</td></tr>"
      "<tr><td class='l'>RocksDB synced batch writes / s</td><td>%.0f</td></tr>"
      "</table>\n",
      floors.ecdsa_sign_per_s, floors.ecdsa_verify_per_s,
      floors.attest_crypto_bound_per_s, floors.echo_rpc_per_s,
      floors.rocksdb_synced_writes_per_s);
  if (fault) {
    absl::StrAppendFormat(
        &h,
        "<h2>Fault: %s</h2><p>%s killed (SIGKILL) %.1f s into attest; first "
        "success on it again after %.2f s. Acknowledged certificates: %d; "
        "found in the owning shard's records: %d; lost: %d; owner "
        "unreachable for the check: %d.</p>\n",
        Escape(fault->kind), Escape(fault->shard), fault->at_s,
        fault->recover_s, fault->acknowledged, fault->verified, fault->lost,
        fault->unreachable);
  }
  h += "<h2>Latency percentiles per phase (log scale)</h2>\n";
  h += LatencySvg(*this);
  h += "\n<h2>Throughput over time (completions per second)</h2>\n";
  for (const auto& p : phases) {
    if (p.skipped || p.throughput.empty()) continue;
    absl::StrAppendFormat(&h, "<h3>%s</h3>\n", Escape(p.name));
    h += ThroughputSvg(p);
    h += "\n";
  }
  h += "</body></html>\n";
  return h;
}

absl::Status Report::Write(const std::string& dir) const {
  if (auto s = util::MakeDirs(dir); !s.ok()) return s;
  if (auto s = util::WriteFile(dir + "/report.json", ToJson()); !s.ok()) {
    return s;
  }
  return util::WriteFile(dir + "/report.html", ToHtml());
}

std::string Report::Summary() const {
  std::string s =
      absl::StrFormat("%-15s %10s %10s %9s %9s %9s  %s\n", "phase", "ops",
                      "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "errors");
  for (const auto& p : phases) {
    if (p.skipped) {
      absl::StrAppendFormat(&s, "%-15s skipped: %s\n", p.name, p.skip_reason);
      continue;
    }
    std::string errs;
    for (const auto& [code, n] : p.errors) {
      absl::StrAppend(&errs, errs.empty() ? "" : ", ", code, "=", n);
    }
    absl::StrAppendFormat(&s, "%-15s %10d %10.0f %9.3f %9.3f %9.3f  %s\n",
                          p.name, p.ops, p.ops_per_s, p.p50_ms, p.p99_ms,
                          p.p999_ms, errs.empty() ? "-" : errs);
    if (!p.metrics.empty()) {
      std::string m;
      for (const auto& [k, v] : p.metrics) {
        absl::StrAppendFormat(&m, "%s%s=%.6g", m.empty() ? "" : ", ", k, v);
      }
      absl::StrAppendFormat(&s, "%-15s   %s\n", "", m);
    }
  }
  absl::StrAppendFormat(
      &s,
      "floors: sign %.0f/s, verify %.0f/s (one core), attest crypto bound "
      "%.0f/s, echo RPC %.0f/s, RocksDB synced writes %.0f/s\n",
      floors.ecdsa_sign_per_s, floors.ecdsa_verify_per_s,
      floors.attest_crypto_bound_per_s, floors.echo_rpc_per_s,
      floors.rocksdb_synced_writes_per_s);
  s += "targets (issue 14):\n";
  if (const auto* a = Find(*this, "attest"); a && !a->skipped) {
    absl::StrAppendFormat(
        &s,
        "  attest %.0f/s = %.0f%% of 5,000/s; %.0f%% of the "
        "crypto bound (target >= 55%%)\n",
        a->ops_per_s, 100 * a->ops_per_s / 5000,
        floors.attest_crypto_bound_per_s > 0
            ? 100 * a->ops_per_s / floors.attest_crypto_bound_per_s
            : 0);
  }
  if (const auto* u = Find(*this, "update_check"); u && !u->skipped) {
    absl::StrAppendFormat(
        &s, "  update_check %.0f/s = %.0f%% of echo RPC (target >= 70%%)\n",
        u->ops_per_s,
        floors.echo_rpc_per_s > 0 ? 100 * u->ops_per_s / floors.echo_rpc_per_s
                                  : 0);
  }
  if (const auto* p = Find(*this, "telemetry"); p && !p->skipped) {
    // One op is a batch; the target is in readings (events).
    auto it = p->metrics.find("readings_per_s");
    const double rate = it != p->metrics.end() ? it->second : p->ops_per_s;
    absl::StrAppendFormat(&s,
                          "  telemetry %.0f readings/s = %.0f%% of 200,000/s "
                          "(RocksDB synced writes %.0f/s)\n",
                          rate, 100 * rate / 200000,
                          floors.rocksdb_synced_writes_per_s);
  }
  if (const auto* p = Find(*this, "error_report"); p && !p->skipped) {
    // One op is an upload; the target is in events acknowledged = durable.
    auto it = p->metrics.find("events_per_s");
    const double rate = it != p->metrics.end() ? it->second : 0;
    absl::StrAppendFormat(&s,
                          "  error_report %.0f events/s = %.0f%% of 200,000/s "
                          "(%.0f uploads/s)\n",
                          rate, 100 * rate / 200000, p->ops_per_s);
  }
  absl::StrAppendFormat(
      &s,
      "  service %.0f B/device (target <= 1024); loadgen %.0f B/twin after "
      "every phase, %.0f B/idle twin (target <= 2048)\n",
      service_rss_bytes_per_device, rss_bytes_per_twin,
      rss_bytes_per_idle_twin);
  if (transport == "tls-per-twin") {
    absl::StrAppendFormat(&s,
                          "  tls-per-twin: %d connections, %.0f full mTLS "
                          "handshakes/s\n",
                          tls_connections, tls_handshakes_per_s);
  }
  if (fault) {
    absl::StrAppendFormat(&s,
                          "  (a shard was restarted: its RSS, and so the "
                          "service bytes per device, restarted with it)\n");
    absl::StrAppendFormat(&s,
                          "fault %s on %s at %.1f s: recovered in %.2f s; %d "
                          "acknowledged, %d verified, %d lost, %d "
                          "unreachable\n",
                          fault->kind, fault->shard, fault->at_s,
                          fault->recover_s, fault->acknowledged,
                          fault->verified, fault->lost, fault->unreachable);
  }
  absl::StrAppendFormat(&s, "wall %.1f s for %d twins\n", wall_s, twins);
  return s;
}

}  // namespace sphere::loadgen
