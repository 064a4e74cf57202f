#include "securitysvc/errors/error_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(double, error_device_events_per_second,
          sphere::errors::ErrorStoreOptions().device_events_per_second,
          "Error reporting: sustained events/s one device may upload (0 = no "
          "limit; see docs/error-reporting.md)");
ABSL_FLAG(double, error_device_event_burst,
          sphere::errors::ErrorStoreOptions().device_event_burst,
          "Error reporting: events one device may upload at once (>= 1000, "
          "one full batch)");
ABSL_FLAG(
    double, error_device_bytes_per_second,
    sphere::errors::ErrorStoreOptions().device_bytes_per_second,
    "Error reporting: sustained upload bytes/s per device (0 = no limit)");
ABSL_FLAG(double, error_device_byte_burst,
          sphere::errors::ErrorStoreOptions().device_byte_burst,
          "Error reporting: upload bytes one device may send at once (>= one "
          "full batch, 700000)");
ABSL_FLAG(int, error_device_max_in_flight,
          sphere::errors::ErrorStoreOptions().max_in_flight_per_device,
          "Error reporting: batches of one device queued for the synced write "
          "at once (>= 1)");

namespace sphere::errors {

absl::Status ValidateQuota(const ErrorStoreOptions& o) {
  auto bad = [](absl::string_view flag, absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": ", why, " (docs/error-reporting.md)"));
  };
  if (o.device_events_per_second < 0) {
    return bad("error_device_events_per_second", "must not be negative");
  }
  if (o.device_bytes_per_second < 0) {
    return bad("error_device_bytes_per_second", "must not be negative");
  }
  if (o.device_events_per_second > 0 &&
      o.device_event_burst < kMaxEventsPerBatch) {
    return bad("error_device_event_burst",
               absl::StrCat("is ", o.device_event_burst,
                            "; it must hold one "
                            "full batch of ",
                            kMaxEventsPerBatch, " events"));
  }
  if (o.device_bytes_per_second > 0 &&
      o.device_byte_burst < static_cast<double>(kMaxBatchBytes)) {
    return bad("error_device_byte_burst",
               absl::StrCat("is ", o.device_byte_burst,
                            "; it must hold one "
                            "full batch of ",
                            kMaxBatchBytes, " bytes"));
  }
  if (o.max_in_flight_per_device < 1) {
    return bad(
        "error_device_max_in_flight",
        absl::StrCat("is ", o.max_in_flight_per_device, "; at least 1 batch"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ErrorStoreOptions> ErrorStoreOptionsFromFlags() {
  ErrorStoreOptions o;
  o.device_events_per_second =
      absl::GetFlag(FLAGS_error_device_events_per_second);
  o.device_event_burst = absl::GetFlag(FLAGS_error_device_event_burst);
  o.device_bytes_per_second =
      absl::GetFlag(FLAGS_error_device_bytes_per_second);
  o.device_byte_burst = absl::GetFlag(FLAGS_error_device_byte_burst);
  o.max_in_flight_per_device = absl::GetFlag(FLAGS_error_device_max_in_flight);
  if (absl::Status s = ValidateQuota(o); !s.ok()) return s;
  return o;
}

}  // namespace sphere::errors
