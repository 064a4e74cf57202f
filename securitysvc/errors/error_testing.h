// Test helpers of the error store's tests and benchmark: the crash events
// they upload, and Ingest waited for.
#ifndef SPHERE_SECURITYSVC_ERRORS_ERROR_TESTING_H_
#define SPHERE_SECURITYSVC_ERRORS_ERROR_TESTING_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "protos/error_reporting.pb.h"
#include "securitysvc/errors/error_store.h"

namespace sphere::errors {

// CrashUpload: n APP_CRASH events of dw100-app 1.0 (exit code 3), sequences
// first, first + 1, ... and times first_time_unix_ms + i.
inline v1::UploadErrorsRequest CrashUpload(uint64_t first, int n,
                                           int64_t first_time_unix_ms) {
  v1::UploadErrorsRequest r;
  for (int i = 0; i < n; ++i) {
    v1::ErrorEvent* e = r.add_events();
    e->set_sequence(first + i);
    e->set_kind(v1::ErrorEvent::APP_CRASH);
    e->set_component("dw100-app");
    e->set_component_version("1.0");
    e->set_exit_code(3);
    e->set_time_unix_ms(first_time_unix_ms + i);
  }
  return r;
}

// IngestAndWait: errors->Ingest, blocking the (test) caller until answered.
inline absl::StatusOr<v1::UploadErrorsResponse> IngestAndWait(
    ErrorStore* errors, const std::string& device, const std::string& tenant,
    const v1::UploadErrorsRequest& req) {
  absl::Notification done;
  absl::StatusOr<v1::UploadErrorsResponse> out;
  errors->Ingest(device, tenant, req,
                 [&](absl::StatusOr<v1::UploadErrorsResponse> r) {
                   out = std::move(r);
                   done.Notify();
                 });
  done.WaitForNotification();
  return out;
}

}  // namespace sphere::errors

#endif  // SPHERE_SECURITYSVC_ERRORS_ERROR_TESTING_H_
