#include "common/util/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sphere::log {
namespace {

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

Level InitialLevel() {
  Level level = Level::kInfo;
  if (const char* env = getenv("SPHERE_LOG_LEVEL")) ParseLevel(env, &level);
  return level;
}

struct State {
  absl::Mutex mu;
  std::string component ABSL_GUARDED_BY(mu) = "sphere";
  Level min_level ABSL_GUARDED_BY(mu) = InitialLevel();
  std::unique_ptr<RotatingFile> file ABSL_GUARDED_BY(mu);
};

State& GetState() {
  static State* s = new State();
  return *s;
}

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data.remove_prefix(n);
  }
}

void Emit(const nlohmann::ordered_json& j) {
  std::string line =
      j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  State& s = GetState();
  absl::MutexLock l(&s.mu);
  if (s.file != nullptr && s.file->Append(line).ok()) return;
  WriteAll(STDERR_FILENO, line);
}

nlohmann::ordered_json Header(Level level, absl::string_view msg) {
  nlohmann::ordered_json j;
  j["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                             absl::UTCTimeZone());
  j["level"] = LevelName(level);
  {
    State& s = GetState();
    absl::MutexLock l(&s.mu);
    j["component"] = s.component;
  }
  j["msg"] = Bound(msg);
  return j;
}

void AddFields(nlohmann::ordered_json& j, const Fields& fields) {
  size_t n = 0;
  for (const auto& [k, v] : fields) {
    if (n++ >= kMaxFields) {
      j["fields_dropped"] = std::to_string(fields.size() - kMaxFields);
      break;
    }
    std::string key = Bound(k, kMaxKeyBytes);
    // The header keys belong to the logger.
    if (key == "ts" || key == "level" || key == "component" || key == "msg" ||
        key == "audit") {
      key = "field_" + key;
    }
    j[key] = Bound(v);
  }
}

}  // namespace

std::string Bound(absl::string_view value, size_t max_bytes) {
  if (value.size() <= max_bytes) return std::string(value);
  size_t cut = max_bytes;
  // Do not split a UTF-8 sequence: back up over continuation bytes.
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return absl::StrCat(value.substr(0, cut), kTruncatedMarker, value.size(),
                      " bytes]");
}

void SetComponent(absl::string_view c) {
  State& s = GetState();
  absl::MutexLock l(&s.mu);
  s.component = Bound(c, kMaxKeyBytes);
}

void SetMinLevel(Level level) {
  State& s = GetState();
  absl::MutexLock l(&s.mu);
  s.min_level = level;
}

Level MinLevel() {
  State& s = GetState();
  absl::MutexLock l(&s.mu);
  return s.min_level;
}

bool ParseLevel(absl::string_view name, Level* level) {
  std::string n = absl::AsciiStrToLower(name);
  if (n == "debug") {
    *level = Level::kDebug;
  } else if (n == "info") {
    *level = Level::kInfo;
  } else if (n == "warning" || n == "warn") {
    *level = Level::kWarning;
  } else if (n == "error") {
    *level = Level::kError;
  } else {
    return false;
  }
  return true;
}

RotatingFile::RotatingFile(std::string path, uint64_t max_bytes, int keep)
    : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep) {}

RotatingFile::~RotatingFile() {
  if (fd_ >= 0) close(fd_);
}

absl::Status RotatingFile::Open() {
  if (fd_ >= 0) close(fd_);
  fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, kMode);
  if (fd_ < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open log file ", path_, ": ", strerror(errno)));
  }
  // An existing file keeps its mode from an older run: make it 0640 too.
  fchmod(fd_, kMode);
  struct stat st;
  size_ = fstat(fd_, &st) == 0 ? st.st_size : 0;
  return absl::OkStatus();
}

absl::Status RotatingFile::Rotate() {
  for (int i = keep_ - 1; i >= 1; --i) {
    std::string from = absl::StrCat(path_, ".", i);
    std::string to = absl::StrCat(path_, ".", i + 1);
    rename(from.c_str(), to.c_str());  // a missing older file is fine
  }
  if (keep_ >= 1) {
    rename(path_.c_str(), absl::StrCat(path_, ".1").c_str());
  } else {
    unlink(path_.c_str());
  }
  return Open();
}

absl::Status RotatingFile::Append(absl::string_view data) {
  if (fd_ < 0) {
    if (auto s = Open(); !s.ok()) return s;
  }
  if (size_ > 0 && size_ + data.size() > max_bytes_) {
    if (auto s = Rotate(); !s.ok()) return s;
  }
  WriteAll(fd_, data);
  size_ += data.size();
  return absl::OkStatus();
}

absl::Status SetOutputFile(const std::string& path, uint64_t max_bytes,
                           int keep) {
  auto file = std::make_unique<RotatingFile>(path, max_bytes, keep);
  if (auto s = file->Open(); !s.ok()) return s;
  State& s = GetState();
  absl::MutexLock l(&s.mu);
  s.file = std::move(file);
  return absl::OkStatus();
}

void Write(Level level, absl::string_view msg, const Fields& fields) {
  if (level < MinLevel()) return;
  nlohmann::ordered_json j = Header(level, msg);
  AddFields(j, fields);
  Emit(j);
}

void Audit(const AuditEvent& event) {
  nlohmann::ordered_json j = Header(Level::kInfo, "audit");
  j["audit"] = true;
  j["who"] = Bound(event.who);
  j["what"] = Bound(event.what);
  j["object"] = Bound(event.object);
  AddFields(j, event.details);
  Emit(j);
}

}  // namespace sphere::log
