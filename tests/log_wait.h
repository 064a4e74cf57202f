// Waiting on a process's JSON log file without sleeps: inotify on the file
// wakes the waiter on every write; every wait ends at its deadline.
//
// Example:
//   auto line = WaitForLog(dir + "/logs/dw100-1.log",
//                          {"\"msg\":\"attested\""}, absl::Now() + timeout);
//   ASSERT_TRUE(line.ok()) << line.status();
//   std::string ts = JsonField(*line, "ts");
#ifndef SPHERE_TESTS_LOG_WAIT_H_
#define SPHERE_TESTS_LOG_WAIT_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sphere::testing {

// WaitForLogLine blocks until the file at `path` has a line for which
// `match` is true, or `deadline` (DeadlineExceeded naming `what`). Returns
// that line (the first such line in the file).
absl::StatusOr<std::string> WaitForLogLine(
    const std::string& path,
    const std::function<bool(absl::string_view)>& match,
    const std::string& what, absl::Time deadline);

// WaitForLog: WaitForLogLine for a line holding every one of `markers`.
absl::StatusOr<std::string> WaitForLog(const std::string& path,
                                       const std::vector<std::string>& markers,
                                       absl::Time deadline);

// JsonField: the string value of "key" in one JSON log line ("" if absent).
std::string JsonField(absl::string_view line, absl::string_view key);

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_LOG_WAIT_H_
