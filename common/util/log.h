// Structured logging: one JSON object per line, e.g.
//   {"ts":"2026-11-25T18:00:00.123Z","level":"info","component":"shard",
//    "msg":"attested","device":"ab12..","outcome":"UP_TO_DATE"}
//
// Example:
//   sphere::log::Info("attested", {{"device", id}, {"outcome", "UP_TO_DATE"}});
//   sphere::log::Audit({"tenant:Contoso", "ClaimDevice", "device:ab12.."});
//
// Bounds: inputs can never grow a log without limit. Every field value and
// the message are cut to kMaxValueBytes (at a UTF-8 boundary) and end with
// kTruncatedMarker plus the original length; keys are cut to kMaxKeyBytes;
// a line keeps at most kMaxFields fields. Invalid UTF-8 becomes U+FFFD and
// control characters are JSON-escaped, so a line is always one line.
//
// Output goes to stderr, or with SetOutputFile to a file created 0640 and
// rotated by size (FILE -> FILE.1 -> ... -> FILE.<keep>).
//
// The minimum level is info unless the environment variable
// SPHERE_LOG_LEVEL says debug, info, warning or error (SetMinLevel
// overrides it). Periodic chatter (heartbeats) is logged at debug.
//
// Thread-safe: each line is written with a single write under a mutex.
#ifndef SPHERE_COMMON_UTIL_LOG_H_
#define SPHERE_COMMON_UTIL_LOG_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sphere::log {

using Fields = std::vector<std::pair<std::string, std::string>>;

enum class Level { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

inline constexpr size_t kMaxValueBytes = 256;
inline constexpr size_t kMaxKeyBytes = 64;
inline constexpr size_t kMaxFields = 32;
inline constexpr absl::string_view kTruncatedMarker = "...[truncated, ";

// Bound returns `value` if it fits in `max_bytes`, else its first bytes (cut
// at a UTF-8 character boundary) followed by "...[truncated, N bytes]".
std::string Bound(absl::string_view value, size_t max_bytes = kMaxValueBytes);

// SetComponent names the process in every line (e.g. "shard-0").
void SetComponent(absl::string_view component);
// SetMinLevel drops lines below `level`.
void SetMinLevel(Level level);
Level MinLevel();
// ParseLevel reads "debug", "info", "warning" or "error".
bool ParseLevel(absl::string_view name, Level* level);

// RotatingFile appends lines to `path` (created with mode 0640) and, when a
// line would take it past `max_bytes`, renames path.<i> to path.<i+1> (the
// oldest, path.<keep>, is dropped), path to path.1, and starts a new file.
// Thread-compatible (callers serialise Append).
class RotatingFile {
 public:
  static constexpr int kMode = 0640;
  RotatingFile(std::string path, uint64_t max_bytes, int keep);
  ~RotatingFile();
  RotatingFile(const RotatingFile&) = delete;
  RotatingFile& operator=(const RotatingFile&) = delete;

  absl::Status Open();
  // Append writes `data` (one or more whole lines).
  absl::Status Append(absl::string_view data);
  uint64_t size() const { return size_; }

 private:
  absl::Status Rotate();
  const std::string path_;
  const uint64_t max_bytes_;
  const int keep_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// SetOutputFile sends every later line to a RotatingFile instead of stderr.
absl::Status SetOutputFile(const std::string& path, uint64_t max_bytes,
                           int keep);

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

// AuditEvent is one state change: who did what to which object.
struct AuditEvent {
  std::string who;     // caller identity, e.g. "tenant:Contoso/CN=..."
  std::string what;    // the action, e.g. "ClaimDevice"
  std::string object;  // e.g. "device:ab12..."
  Fields details;      // e.g. request id
};

// Audit logs `event` once at info level with "audit":true (never filtered
// by level: audit events are always written).
void Audit(const AuditEvent& event);

}  // namespace sphere::log

#endif  // SPHERE_COMMON_UTIL_LOG_H_
