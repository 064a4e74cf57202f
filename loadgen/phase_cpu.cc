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
  auto mpid = fleet.ShardPid("management");
  if (mpid.ok()) {
    if (auto cpu = ProcessCpuSeconds(*mpid); cpu.ok()) m.management = *cpu;
  }
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
}

}  // namespace sphere::loadgen
