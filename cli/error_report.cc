#include "cli/error_report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace sphere::cli {
namespace {

std::string Time(int64_t ms) {
  if (ms == 0) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms),
                          absl::UTCTimeZone());
}

}  // namespace

const std::vector<std::string>& ErrorReportCsvHeader() {
  static const auto* h = new std::vector<std::string>{
      "Device ID",         "Event Type", "Event Class",  "Event Count",
      "Description",       "Start Time", "End Time",     "Component",
      "Component Version", "Sequence",   "Received Time"};
  return *h;
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  return out + "\"";
}

absl::StatusOr<uint64_t> WriteErrorReportCsv(
    std::ostream& out, const std::vector<ErrorReportShard>& shards,
    const v1::QueryErrorsRequest& base) {
  out << absl::StrJoin(ErrorReportCsvHeader(), ",") << "\r\n";
  uint64_t rows = 0;
  for (const ErrorReportShard& shard : shards) {
    v1::QueryErrorsRequest req = base;
    req.clear_page_token();
    for (;;) {
      absl::StatusOr<v1::QueryErrorsResponse> resp = shard.query(req);
      if (!resp.ok()) {
        return absl::Status(
            resp.status().code(),
            absl::StrCat("shard ", shard.id, ": ", resp.status().message()));
      }
      for (const v1::ErrorReport& r : resp->reports()) {
        std::vector<std::string> f = {r.device_id(),
                                      r.event_type(),
                                      r.event_class(),
                                      absl::StrCat(r.event_count()),
                                      r.description(),
                                      Time(r.start_unix_ms()),
                                      Time(r.end_unix_ms()),
                                      r.event().component(),
                                      r.event().component_version(),
                                      absl::StrCat(r.event().sequence()),
                                      Time(r.received_unix_ms())};
        for (std::string& x : f) x = CsvField(x);
        out << absl::StrJoin(f, ",") << "\r\n";
        ++rows;
      }
      if (resp->next_page_token().empty()) break;
      if (resp->next_page_token() == req.page_token()) {
        return absl::InternalError(absl::StrCat(
            "shard ", shard.id, " returned the same page token twice"));
      }
      req.set_page_token(resp->next_page_token());
    }
    if (!out) return absl::InternalError("writing the CSV failed");
  }
  return rows;
}

}  // namespace sphere::cli
