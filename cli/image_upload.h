// image_upload: the client side of ManagementService.UploadImageStream, as
// one function any tool can call (spherectl, local_cluster, tests).
//
// Example:
//   auto stub = v1::ManagementService::NewStub(channel);
//   absl::StatusOr<v1::Image> image =
//       UploadImagePackage(stub.get(), "", package_bytes, absl::Seconds(30));
#ifndef SPHERE_CLI_IMAGE_UPLOAD_H_
#define SPHERE_CLI_IMAGE_UPLOAD_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "protos/management.grpc.pb.h"

namespace sphere::cli {

// UploadImagePackage streams `package` in chunks of `chunk_bytes` (at most
// the server's 1 MiB) to UploadImageStream for `tenant` (id or name; empty:
// the caller's own tenant, or a platform OS image for platform operators)
// and returns the recorded image, or the server's error.
absl::StatusOr<v1::Image> UploadImagePackage(
    v1::ManagementService::StubInterface* stub, absl::string_view tenant,
    absl::string_view package, absl::Duration timeout,
    size_t chunk_bytes = 256 * 1024);

}  // namespace sphere::cli

#endif  // SPHERE_CLI_IMAGE_UPLOAD_H_
