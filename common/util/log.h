// Structured logging: one JSON object per line on stderr, e.g.
//   {"ts":"2026-11-25T18:00:00.123Z","level":"info","component":"shard",
//    "msg":"attested","device":"ab12..","outcome":"UP_TO_DATE"}
//
// Example:
//   sphere::log::Info("attested", {{"device", id}, {"outcome", "UP_TO_DATE"}});
//
// Thread-safe: each line is written with a single fwrite under a mutex.
#ifndef SPHERE_COMMON_UTIL_LOG_H_
#define SPHERE_COMMON_UTIL_LOG_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace sphere::log {

using Fields = std::vector<std::pair<std::string, std::string>>;

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// SetComponent names the process in every line (e.g. "shard-0").
void SetComponent(absl::string_view component);
// SetMinLevel drops lines below `level` (default kInfo).
void SetMinLevel(Level level);

void Write(Level level, absl::string_view msg, const Fields& fields);

inline void Debug(absl::string_view msg, const Fields& f = {}) {
  Write(Level::kDebug, msg, f);
}
inline void Info(absl::string_view msg, const Fields& f = {}) {
  Write(Level::kInfo, msg, f);
}
inline void Warning(absl::string_view msg, const Fields& f = {}) {
  Write(Level::kWarning, msg, f);
}
inline void Error(absl::string_view msg, const Fields& f = {}) {
  Write(Level::kError, msg, f);
}

}  // namespace sphere::log

#endif  // SPHERE_COMMON_UTIL_LOG_H_
