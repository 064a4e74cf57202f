// limits: every size, count and character-set limit the management plane
// enforces on input from outside, in one place. The catalog checks them
// before a write commits (a refused write changes nothing and does not
// advance the revision); the gRPC adapter checks the per-method request caps
// before any work. Everything the catalog replicates (records, Watch events,
// snapshot pages) stays far below the 8 MiB gRPC message limit, so one
// tenant's call can never produce an event that no follower can receive.
//
// Errors name the field and the limit; they echo at most
// kMaxEchoedInputBytes of the offending input, C-escaped (EscapedPrefix), so
// neither a 8 MB tenant id nor an ESC sequence reaches logs or terminals.
//
// Example:
//   if (auto s = limits::ValidateComponentId("component", c); !s.ok())
//     return s;
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_LIMITS_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_LIMITS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sphere::management::limits {

// ---- Strings ---------------------------------------------------------------
// Names of tenants, products, device groups, operators: 1..64 characters of
// [A-Za-z0-9 ._-], not starting or ending with a space.
inline constexpr size_t kMaxNameLength = 64;
// Free text (descriptions, revocation reasons): printable ASCII (0x20-0x7e),
// at most 512 bytes.
inline constexpr size_t kMaxDescriptionLength = 512;
// Component ids (ImageHeader.component, "kernel", "app:dw100"): 1..64
// characters of [a-z0-9._:-], no "..", not starting with '.'; no control
// characters, no NUL, no '/'.
inline constexpr size_t kMaxComponentIdLength = 64;
// References to an object by id or name in a request (tenant, product,
// device group as "PRODUCT/GROUP", page tokens): at most 130 bytes, no
// control characters. Longer references cannot name anything that exists.
inline constexpr size_t kMaxReferenceLength = 2 * kMaxNameLength + 2;
// Device ids: exactly 64 lowercase hex characters.
inline constexpr size_t kDeviceIdLength = 64;
// OS release versions ("24.10"): 1..32 characters of [A-Za-z0-9._-].
inline constexpr size_t kMaxVersionLength = 32;
// Shards: id 1..64 of [A-Za-z0-9_-]; address host:port, 3..255 printable.
inline constexpr size_t kMaxShardAddressLength = 255;
// Device type of a factory record: as a name.
inline constexpr size_t kMaxDeviceTypeLength = kMaxNameLength;

// ---- Repeated fields
// --------------------------------------------------------- Image ids in one
// deployment (after removing duplicates): one image per app component a device
// can run.
inline constexpr size_t kMaxImagesPerDeployment = 32;
// Image ids in one OS release (after removing duplicates): the boot chain.
inline constexpr size_t kMaxImagesPerOsRelease = 16;
// Factory devices in one ImportDevices message.
inline constexpr size_t kMaxDevicesPerImport = 100000;
// Shards in the shard map (the whole map is one Watch event).
inline constexpr size_t kMaxShards = 1024;
// Device ids in one ClaimDevices call: the claimed devices are one Watch
// event (static_assert below).
inline constexpr size_t kMaxDevicesPerClaim = 1000;

// ---- Records and events
// ------------------------------------------------------ Any one catalog record
// as stored.
inline constexpr size_t kMaxRecordBytes = 64 * 1024;
// Any one Watch event (live, replayed or one snapshot event). The channel
// limit is 8 MiB; this is 16 times smaller.
inline constexpr size_t kMaxWatchEventBytes = 512 * 1024;
// gRPC's default message limit, for reference in static checks.
inline constexpr size_t kChannelMessageLimit = 8 * 1024 * 1024;
static_assert(kMaxWatchEventBytes * 8 <= kChannelMessageLimit,
              "Watch events must stay far below the channel limit");
static_assert(kMaxShards * (kMaxNameLength + kMaxShardAddressLength + 16) <
                  kMaxWatchEventBytes,
              "a full shard map must fit in one Watch event");
// A claimed device as an event holds its id (64), public key (65), tenant,
// product and group ids (UUIDs, 36 each), device type and a few varints:
// under 400 bytes with field tags.
static_assert(kMaxDevicesPerClaim * (64 + 65 + 3 * 36 + kMaxNameLength + 64) <
                  kMaxWatchEventBytes,
              "a full bulk claim must fit in one Watch event");

// ---- Image uploads
// ------------------------------------------------------------- One uploaded
// image package (header + payload + signature). The largest boot-chain image
// (kernel) is 2.5 MiB.
inline constexpr size_t kMaxImagePackageBytes = 6 * 1024 * 1024;
// One chunk of UploadImageStream.
inline constexpr size_t kMaxUploadChunkBytes = 1024 * 1024;
// Per-tenant image quota (defaults; CatalogOptions may lower them): distinct
// images and the sum of their payload sizes. Re-uploading an image the tenant
// already has costs nothing.
inline constexpr size_t kDefaultMaxImagesPerTenant = 64;
inline constexpr uint64_t kDefaultMaxImageBytesPerTenant = 128ull << 20;

// Staged rollout state written into a deployment by management's
// RolloutController: why it halted, and its serialized RolloutStatus.
inline constexpr size_t kMaxRolloutReasonBytes = 512;
inline constexpr size_t kMaxRolloutStatusBytes = 1024;

// ---- Echoing input
// ---------------------------------------------------------------
inline constexpr size_t kMaxEchoedInputBytes = 32;

// EscapedPrefix returns at most kMaxEchoedInputBytes of `input`, C-escaped
// (control characters, quotes and non-ASCII as \ooo / \xNN), followed by
// "...(N bytes)" when cut. The result is safe to log and print.
std::string EscapedPrefix(absl::string_view input);

// The validators return OkStatus or InvalidArgument naming `field`, the
// limit, and EscapedPrefix of the input.
absl::Status ValidateName(absl::string_view field, absl::string_view name);
absl::Status ValidateDescription(absl::string_view field,
                                 absl::string_view text);
absl::Status ValidateComponentId(absl::string_view field,
                                 absl::string_view component);
// ValidateReference: an id-or-name reference; empty is allowed (callers
// decide whether it is required).
absl::Status ValidateReference(absl::string_view field,
                               absl::string_view reference);
absl::Status ValidateDeviceId(absl::string_view field, absl::string_view id);
absl::Status ValidateVersion(absl::string_view field,
                             absl::string_view version);
// ValidateCount: InvalidArgument when n > max.
absl::Status ValidateCount(absl::string_view field, size_t n, size_t max);
// ValidateSize: InvalidArgument when bytes > max ("field is N bytes; the
// limit is M").
absl::Status ValidateSize(absl::string_view field, size_t bytes, size_t max);

}  // namespace sphere::management::limits

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_LIMITS_H_
