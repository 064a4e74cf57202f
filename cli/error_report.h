// Error report export shared by `spherectl tenant download-error-report` and
// its test: page through every shard's QueryErrors and write CSV in Azure
// Sphere's report shape (device id, event type, event class, event count,
// description, start and end time) plus component, version, sequence and
// the time the service received the event. RFC 4180: CRLF line ends, fields
// with a comma, quote or line break quoted.
#ifndef SPHERE_CLI_ERROR_REPORT_H_
#define SPHERE_CLI_ERROR_REPORT_H_

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "protos/error_reporting.pb.h"

namespace sphere::cli {

// ErrorReportCsvHeader: the column names, in order.
const std::vector<std::string>& ErrorReportCsvHeader();

// CsvField quotes `s` when needed (RFC 4180).
std::string CsvField(const std::string& s);

// ErrorReportShard: one shard's QueryErrors (errors name the shard).
struct ErrorReportShard {
  std::string id;
  std::function<absl::StatusOr<v1::QueryErrorsResponse>(
      const v1::QueryErrorsRequest&)>
      query;
};

// WriteErrorReportCsv writes the header and every report `base` selects on
// every shard (paged by base.page_size()), and returns the rows written.
absl::StatusOr<uint64_t> WriteErrorReportCsv(
    std::ostream& out, const std::vector<ErrorReportShard>& shards,
    const v1::QueryErrorsRequest& base);

}  // namespace sphere::cli

#endif  // SPHERE_CLI_ERROR_REPORT_H_
