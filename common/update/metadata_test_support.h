// Test support for signed update metadata (testonly): a fixed "now", a
// well-formed target and a metadata document valid around that "now", so
// every test of code that signs or verifies metadata builds the same
// document the same way (common/update/metadata_test,
// loadgen/verified_metadata_test).
//
//   v1::UpdateMetadata md = TestMetadata(7);          // kernel + os-services
//   auto signed_md = SignMetadata(md, key);           // update::SignMetadata
//   VerifyMetadata(*signed_md, key.PublicKey(), kMetadataTestNow, 0);
#ifndef SPHERE_COMMON_UPDATE_METADATA_TEST_SUPPORT_H_
#define SPHERE_COMMON_UPDATE_METADATA_TEST_SUPPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "protos/update.pb.h"

namespace sphere::update {

// kMetadataTestNow: the tests' clock (2026-01-01T00:00:00Z).
inline const absl::Time kMetadataTestNow = absl::FromUnixSeconds(1767225600);

// TestTarget: an mt3620 kernel-kind target for `component` at `version`,
// its image hash SHA-256(component + version).
v1::UpdateTarget TestTarget(const std::string& component, uint32_t version);

// TestMetadata: version `version` for tenant-1/group-1, issued an hour
// before kMetadataTestNow, expiring 24 h after it, with one TestTarget at
// version 2 per component.
v1::UpdateMetadata TestMetadata(
    uint64_t version,
    const std::vector<std::string>& components = {"kernel", "os-services"});

}  // namespace sphere::update

#endif  // SPHERE_COMMON_UPDATE_METADATA_TEST_SUPPORT_H_
