#include "common/util/log.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sphere::log {
namespace {
absl::Mutex mu;
std::string* component = new std::string("sphere");
Level min_level = Level::kInfo;

const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarning:
      return "warning";
    case Level::kError:
      return "error";
  }
  return "info";
}
}  // namespace

void SetComponent(absl::string_view c) {
  absl::MutexLock l(&mu);
  *component = std::string(c);
}

void SetMinLevel(Level level) {
  absl::MutexLock l(&mu);
  min_level = level;
}

void Write(Level level, absl::string_view msg, const Fields& fields) {
  absl::MutexLock l(&mu);
  if (level < min_level) return;
  nlohmann::ordered_json j;
  j["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                             absl::UTCTimeZone());
  j["level"] = LevelName(level);
  j["component"] = *component;
  j["msg"] = std::string(msg);
  for (const auto& [k, v] : fields) j[k] = v;
  std::string line = j.dump(-1, ' ', false,
                            nlohmann::json::error_handler_t::replace) +
                     "\n";
  fwrite(line.data(), 1, line.size(), stderr);
  fflush(stderr);
}

}  // namespace sphere::log
