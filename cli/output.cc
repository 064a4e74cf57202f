#include "cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace sphere::cli {

std::string Escape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          out += absl::StrFormat("\\x%02x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

absl::Status CheckName(absl::string_view flag, absl::string_view value) {
  for (size_t i = 0; i < value.size(); ++i) {
    const unsigned char c = value[i];
    if (c >= 0x80) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " \"", Escape(value),
                       "\" contains a non-ASCII character at "
                       "byte ",
                       i + 1,
                       "; names use ASCII letters, digits, space, '.', '_' "
                       "and '-'"));
    }
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " \"", Escape(value),
                       "\" contains a control character at "
                       "byte ",
                       i + 1,
                       "; names use ASCII letters, digits, space, '.', '_' "
                       "and '-'"));
    }
  }
  return absl::OkStatus();
}

std::string FeedName(v1::OsFeed f) {
  switch (f) {
    case v1::RETAIL:
      return "Retail";
    case v1::RETAIL_EVAL:
      return "RetailEval";
    default:
      return "-";
  }
}

std::string PolicyName(v1::AppUpdatePolicy p) {
  switch (p) {
    case v1::UPDATE_ALL:
      return "UpdateAll";
    case v1::NO_3RD_PARTY_APP_UPDATES:
      return "No3rdPartyAppUpdates";
    case v1::NO_UPDATES:
      return "NoUpdates";
    default:
      return "-";
  }
}

std::string StateName(v1::DeviceState s) {
  switch (s) {
    case v1::UNCLAIMED:
      return "Unclaimed";
    case v1::CLAIMED:
      return "Claimed";
    case v1::REVOKED:
      return "Revoked";
    case v1::TRANSFER_PENDING:
      return "TransferPending";
    default:
      return "-";
  }
}

std::string KindName(v1::ImageKind k) {
  // IMAGE_KIND_APPLICATION -> Application, IMAGE_KIND_SECURITY_MONITOR ->
  // SecurityMonitor.
  std::string name = v1::ImageKind_Name(k);
  absl::string_view v = name;
  if (v.substr(0, 11) == "IMAGE_KIND_") v.remove_prefix(11);
  std::string out;
  bool upper = true;
  for (char c : v) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper ? absl::ascii_toupper(c) : absl::ascii_tolower(c);
    upper = false;
  }
  return out.empty() ? "-" : out;
}

absl::StatusOr<v1::OsFeed> ParseFeed(absl::string_view s) {
  const std::string l = absl::AsciiStrToLower(s);
  if (l == "retail") return v1::RETAIL;
  if (l == "retaileval" || l == "retail_eval") return v1::RETAIL_EVAL;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown OS feed \"", Escape(s), "\"; use Retail or RetailEval"));
}

absl::StatusOr<v1::AppUpdatePolicy> ParsePolicy(absl::string_view s) {
  const std::string l = absl::AsciiStrToLower(s);
  if (l == "updateall" || l == "update_all") return v1::UPDATE_ALL;
  if (l == "no3rdpartyappupdates" || l == "no_3rd_party_app_updates") {
    return v1::NO_3RD_PARTY_APP_UPDATES;
  }
  if (l == "noupdates" || l == "no_updates") return v1::NO_UPDATES;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown app update policy \"", Escape(s),
                   "\"; use UpdateAll, No3rdPartyAppUpdates or NoUpdates"));
}

std::string FormatUnixMs(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                          absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

json ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return json::parse(out, nullptr, false);
}

void Printer::Print(const std::vector<std::string>& headers,
                    const std::vector<std::vector<std::string>>& rows,
                    const json& j) const {
  if (json_) {
    // dump escapes control characters as \u00XX; invalid UTF-8 is replaced
    // rather than thrown on.
    std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    return;
  }
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size());
  for (const auto& r : rows) {
    std::vector<std::string> escaped;
    for (const std::string& c : r) escaped.push_back(Escape(c));
    cells.push_back(std::move(escaped));
  }
  std::vector<size_t> width(headers.size());
  for (size_t i = 0; i < headers.size(); ++i) width[i] = headers[i].size();
  for (const auto& r : cells) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& row) {
    std::string out;
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size() && i < width.size()) {
        out += std::string(width[i] - row[i].size() + 2, ' ');
      }
    }
    std::cout << out << "\n";
  };
  line(headers);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  line(rule);
  for (const auto& r : cells) line(r);
}

void PrintNextPage(const std::string& next, size_t page_size) {
  if (next.empty()) return;
  std::cerr << "more: add --page-size " << page_size << " --page-token '"
            << Escape(next) << "' for the next page\n";
}

}  // namespace sphere::cli
