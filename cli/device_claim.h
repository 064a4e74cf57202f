// spherectl device claim --file ids.txt: the bulk form of 'device claim'
// (ClaimDevices in batches of 1000).
#ifndef SPHERE_CLI_DEVICE_CLAIM_H_
#define SPHERE_CLI_DEVICE_CLAIM_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sphere::cli {

class Context;

// ClaimDevicesFromFile claims every device id in `path` (ParseDeviceIds)
// with ClaimDevices, 1000 per call, each call all-or-nothing; with a
// non-empty `group` the devices also join that group. Devices the tenant
// already owns count as already claimed, so after a refused batch the file
// can be fixed and the command run again. Prints the totals.
absl::Status ClaimDevicesFromFile(Context& c, const std::string& path,
                                  const std::string& group);

// ParseDeviceIds reads a device id file: one 64-character lowercase hex
// device id per line; surrounding whitespace, blank lines and '#' comments
// are skipped. A malformed or repeated id fails naming path:line; so does
// an empty list or one above 10,000,000 ids.
absl::StatusOr<std::vector<std::string>> ParseDeviceIds(
    const std::string& path, const std::string& text);

}  // namespace sphere::cli

#endif  // SPHERE_CLI_DEVICE_CLAIM_H_
