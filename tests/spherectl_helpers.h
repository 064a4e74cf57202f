// Test-only setup steps the cross-process tests share, each a few spherectl
// (//cli:spherectl) and factory (//securitysvc/factory) runs against a
// cluster file; the calling test lists both binaries in its data.
//
// Example:
//   ASSERT_TRUE(SetUpTenant(cluster->cluster_file(), "Contoso", {"DW100"})
//                   .ok());
//   auto id = ClaimNewTwin(cluster->cluster_file(), "Contoso", "dw100-1",
//                          "DW100/Production");
#ifndef SPHERE_TESTS_SPHERECTL_HELPERS_H_
#define SPHERE_TESTS_SPHERECTL_HELPERS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sphere::testing {

// SetUpTenant: as the platform operator, creates tenant `tenant` and its
// own operator credential (spherectl records it in cluster.json); then, as
// the tenant, creates each of `products`. The first failing command (its
// arguments, exit code and output) as an error, else OK.
absl::Status SetUpTenant(const std::string& cluster_file,
                         const std::string& tenant,
                         const std::vector<std::string>& products = {});

// ClaimNewTwin: runs the factory for twin `name`, then has `tenant` claim
// the device and put it in `device_group` ("PRODUCT/GROUP"); its device id,
// or the failing command as an error.
absl::StatusOr<std::string> ClaimNewTwin(const std::string& cluster_file,
                                         const std::string& tenant,
                                         const std::string& name,
                                         const std::string& device_group);

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_SPHERECTL_HELPERS_H_
