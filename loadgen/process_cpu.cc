#include "loadgen/process_cpu.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sphere::loadgen {

absl::StatusOr<uint64_t> ParseStatCpuTicks(absl::string_view stat_line) {
  const size_t close = stat_line.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::DataLossError("stat line has no command name");
  }
  // After ") ": state (field 3), ..., utime (14), stime (15).
  std::vector<absl::string_view> f =
      absl::StrSplit(stat_line.substr(close + 1), ' ', absl::SkipWhitespace());
  constexpr size_t kUtime = 14 - 3, kStime = 15 - 3;
  uint64_t utime = 0, stime = 0;
  if (f.size() <= kStime || !absl::SimpleAtoi(f[kUtime], &utime) ||
      !absl::SimpleAtoi(f[kStime], &stime)) {
    return absl::DataLossError("stat line has no utime/stime");
  }
  return utime + stime;
}

absl::StatusOr<double> ProcessCpuSeconds(pid_t pid) {
  const std::string path =
      pid == 0 ? "/proc/self/stat" : absl::StrCat("/proc/", pid, "/stat");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  auto ticks = ParseStatCpuTicks(text.str());
  if (!ticks.ok()) {
    return absl::DataLossError(
        absl::StrCat(path, ": ", ticks.status().message()));
  }
  const long hz = sysconf(_SC_CLK_TCK);
  return static_cast<double>(*ticks) / static_cast<double>(hz > 0 ? hz : 100);
}

}  // namespace sphere::loadgen
