#include "loadgen/phase_cpu.h"

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "loadgen/process_cpu.h"

namespace sphere::loadgen {

PhaseCpu PhaseCpu::Take(const Fleet& fleet) {
  PhaseCpu m;
  if (auto self = ProcessCpuSeconds(0); self.ok()) m.loadgen = *self;
  double total = 0;
  bool all = true;
  for (const auto& shard : fleet.cluster().shards) {
    auto pid = fleet.ShardPid(shard.id);
    auto cpu = pid.ok() ? ProcessCpuSeconds(*pid)
                        : absl::StatusOr<double>(pid.status());
    if (!cpu.ok()) {
      all = false;
      break;
    }
    total += *cpu;
  }
  if (all) m.shards = total;
  auto of = [&fleet](const char* name) {
    auto pid = fleet.ShardPid(name);
    if (!pid.ok()) return -1.0;
    auto cpu = ProcessCpuSeconds(*pid);
    return cpu.ok() ? *cpu : -1.0;
  };
  m.management = of("management");
  // The telemetry phase's appsvc: the cluster's own, or the one `./sphere
  // load` started for the fleet's tenant (--appsvc), which it names
  // run/loadgen-appsvc.pid.
  m.appsvc = of(fleet.options().appsvc.empty() ? "appsvc" : "loadgen-appsvc");
  return m;
}

void PhaseCpu::Report(const PhaseCpu& before, const PhaseCpu& after,
                      uint64_t ops, PhaseStats& stats) {
  if (ops == 0) return;
  const double n = static_cast<double>(ops);
  const std::map<std::string, double> have = stats.metrics();
  auto set = [&](const char* name, double b, double a) {
    if (b < 0 || a < b || have.count(name) > 0) return;
    stats.SetMetric(name, (a - b) / n * 1e6);
  };
  set("loadgen_cpu_us_per_op", before.loadgen, after.loadgen);
  set("shards_cpu_us_per_op", before.shards, after.shards);
  set("management_cpu_us_per_op", before.management, after.management);
  set("appsvc_cpu_us_per_op", before.appsvc, after.appsvc);
}

}  // namespace sphere::loadgen
