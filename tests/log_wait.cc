#include "tests/log_wait.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/util/file.h"

namespace sphere::testing {

absl::StatusOr<std::string> WaitForLogLine(
    const std::string& path,
    const std::function<bool(absl::string_view)>& match,
    const std::string& what, absl::Time deadline) {
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return absl::InternalError("inotify_init1 failed");
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  if (inotify_add_watch(fd, path.c_str(), IN_MODIFY | IN_CLOSE_WRITE) < 0) {
    return absl::NotFoundError(absl::StrCat("cannot watch ", path));
  }
  for (;;) {
    // Read after arming the watch, so no write is missed.
    auto text = util::ReadFile(path);
    if (text.ok()) {
      for (absl::string_view line : absl::StrSplit(*text, '\n')) {
        if (match(line)) return std::string(line);
      }
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat(
          "no line with ", what, " in ", path, " before the deadline"));
    }
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    }
  }
}

// WaitForLog: WaitForLogLine for a line holding every one of `markers`.
absl::StatusOr<std::string> WaitForLog(const std::string& path,
                                       const std::vector<std::string>& markers,
                                       absl::Time deadline) {
  return WaitForLogLine(
      path,
      [&](absl::string_view line) {
        for (const auto& m : markers) {
          if (!absl::StrContains(line, m)) return false;
        }
        return true;
      },
      absl::StrJoin(markers, " + "), deadline);
}

// JsonField: the string value of "key" in one JSON log line ("" if absent).
std::string JsonField(absl::string_view line, absl::string_view key) {
  const std::string k = absl::StrCat("\"", key, "\":\"");
  const size_t at = line.find(k);
  if (at == absl::string_view::npos) return "";
  const size_t from = at + k.size();
  const size_t to = line.find('"', from);
  return std::string(line.substr(from, to - from));
}

}  // namespace sphere::testing
