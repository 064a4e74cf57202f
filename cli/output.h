// Output: how spherectl shows what the server returned. Tables escape every
// control and non-ASCII byte (a name or reason from the server can never
// move the cursor or retitle the terminal); JSON output escapes them as
// JSON does. Enum values print the way azsphere users know them
// ("RetailEval", "Claimed"). Lists are sorted and paged on the client.
#ifndef SPHERE_CLI_OUTPUT_H_
#define SPHERE_CLI_OUTPUT_H_

#include <google/protobuf/message.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "protos/device.pb.h"
#include "protos/management.pb.h"

namespace sphere::cli {

using json = nlohmann::json;

// Escape returns `s` with every byte outside printable ASCII written as a C
// escape: "\e[31m" becomes "\x1b[31m", NUL "\x00", a newline "\n" as two
// characters. Backslashes stay as they are (harmless to a terminal).
std::string Escape(absl::string_view s);

// CheckName refuses a name spherectl would send that is not printable ASCII,
// with a message that shows the offending byte escaped, e.g.
//   --name "Caf\xc3\xa9" contains a non-ASCII character at byte 4; names use
//   ASCII letters, digits, space, '.', '_' and '-'
// (the server enforces the full rule; this catches what a terminal would
// garble).
absl::Status CheckName(absl::string_view flag, absl::string_view value);

// User-facing enum names; "-" for unspecified.
std::string FeedName(v1::OsFeed f);
std::string PolicyName(v1::AppUpdatePolicy p);
std::string StateName(v1::DeviceState s);
std::string KindName(v1::ImageKind k);
// Parsers accept the user-facing name in any case, and the proto name.
absl::StatusOr<v1::OsFeed> ParseFeed(absl::string_view s);
absl::StatusOr<v1::AppUpdatePolicy> ParsePolicy(absl::string_view s);

// FormatUnixMs prints a time as "2026-12-01 13:42:50 UTC" ("-" for 0).
std::string FormatUnixMs(int64_t unix_ms);

// ToJson is the proto's JSON form (proto field names).
json ToJson(const google::protobuf::Message& m);

// Printer writes tables or JSON to stdout.
class Printer {
 public:
  explicit Printer(bool as_json) : json_(as_json) {}
  bool json_output() const { return json_; }
  // Print prints rows under headers (table mode, every cell escaped) or
  // `j` (json mode).
  void Print(const std::vector<std::string>& headers,
             const std::vector<std::vector<std::string>>& rows,
             const json& j) const;

 private:
  bool json_;
};

// PageRequest is --page-size / --page-token: size 0 means everything.
struct PageRequest {
  size_t size = 0;
  std::string token;
};

// PageOf returns the items of `sorted` (sorted by `key`, keys unique) after
// `page.token` (the key of the last item of the previous page), at most
// page.size of them, and sets *next to the key of the last one returned if
// more follow (else empty).
template <typename T>
std::vector<T> PageOf(const std::vector<T>& sorted,
                      const std::function<std::string(const T&)>& key,
                      const PageRequest& page, std::string* next) {
  next->clear();
  auto it = sorted.begin();
  if (!page.token.empty()) {
    it = std::upper_bound(sorted.begin(), sorted.end(), page.token,
                          [&](const std::string& token, const T& item) {
                            return token < key(item);
                          });
  }
  std::vector<T> out;
  for (; it != sorted.end(); ++it) {
    if (page.size > 0 && out.size() == page.size) {
      *next = key(out.back());
      break;
    }
    out.push_back(*it);
  }
  return out;
}

// PrintNextPage tells the user (on stderr, so JSON on stdout stays one
// document) how to get the next page, if there is one.
void PrintNextPage(const std::string& next, size_t page_size);

}  // namespace sphere::cli

#endif  // SPHERE_CLI_OUTPUT_H_
