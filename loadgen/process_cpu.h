// ProcessCpuSeconds: CPU time (user + system) a process has used so far, read
// from /proc/<pid>/stat, so a phase can report the CPU it cost per operation
// in loadgen and in the shards (issue 14: where the time of an attestation
// goes, service and loadgen together).
//
// Example:
//   auto before = ProcessCpuSeconds(0);   // 0 = this process
//   ... run the phase ...
//   auto after = ProcessCpuSeconds(0);
//   double us_per_op = (*after - *before) / ops * 1e6;
#ifndef SPHERE_LOADGEN_PROCESS_CPU_H_
#define SPHERE_LOADGEN_PROCESS_CPU_H_

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sphere::loadgen {

// ProcessCpuSeconds of `pid` (0 = this process); NotFound when the process
// is gone, DataLoss when its stat line does not parse.
absl::StatusOr<double> ProcessCpuSeconds(pid_t pid);

// ParseStatCpuTicks: utime + stime (clock ticks) from one /proc/<pid>/stat
// line. The command name (field 2) may hold spaces and parentheses; fields
// are counted after its last ')'.
absl::StatusOr<uint64_t> ParseStatCpuTicks(absl::string_view stat_line);

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_PROCESS_CPU_H_
