// common/update/metadata: signed update metadata (TUF-style "targets +
// timestamp" in one document), shared by the Security Service (which signs
// the target set of each device group) and devices (which verify it before
// acting on any of it).
//
// Wire format (protos/update.proto): SignedUpdateMetadata{metadata, signature}
// where `metadata` is a serialized UpdateMetadata and `signature` is a DER
// ECDSA P-256 signature by the platform image-signing key over
//   SHA-256("sphere-update-metadata-v1" || metadata).
// The exact bytes are signed, so no canonical re-encoding is ever needed.
//
// Device-side checks in VerifyMetadata, in this order (first failure wins):
//   1. sizes of the envelope            InvalidArgument    kMalformed
//   2. signature over the exact bytes    Unauthenticated    kBadSignature
//   3. parse + format_version + limits   InvalidArgument    kMalformed /
//                                                           kUnsupportedFormat
//   4. expiry (freeze attack)            FailedPrecondition kExpired
//   5. metadata_version >= last accepted FailedPrecondition kRollback
// UpdateErrorOf(status) returns the reason (carried as a status payload), so
// callers and tests distinguish kExpired from kRollback without parsing text.
//
// Thread-safety: free functions without shared state; thread-safe.
//
// Example (platform):
//   v1::UpdateMetadata md;  md.set_metadata_version(rev); ...
//   absl::StatusOr<v1::SignedUpdateMetadata> s = SignMetadata(md, key);
// Example (device):
//   absl::StatusOr<v1::UpdateMetadata> md =
//       VerifyMetadata(signed, platform_pub, clock->Now(), last_version);
//   if (!md.ok() && UpdateErrorOf(md.status()) == UpdateError::kRollback) ...
#ifndef SPHERE_COMMON_UPDATE_METADATA_H_
#define SPHERE_COMMON_UPDATE_METADATA_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "protos/update.pb.h"

namespace sphere::update {

inline constexpr absl::string_view kMetadataContext =
    "sphere-update-metadata-v1";
inline constexpr uint32_t kMetadataFormatVersion = 1;

// Limits, checked before anything is parsed, stored or logged.
inline constexpr size_t kMaxMetadataBytes = 64 * 1024;
inline constexpr size_t kMaxSignatureBytes = 80;  // DER P-256 is <= 72
inline constexpr size_t kMaxTargets = 64;
inline constexpr size_t kMaxIdBytes = 128;  // ids, components, tenant
inline constexpr size_t kMaxHardwareEntries = 16;
inline constexpr size_t kMaxHardwareNameBytes = 64;
inline constexpr size_t kDigestBytes = 32;
// Largest package a target may announce (flash is 16 MiB).
inline constexpr uint64_t kMaxPackageBytes = 16ull * 1024 * 1024;

// UpdateError says why metadata or an update was refused.
enum class UpdateError {
  kNone = 0,           // OK status or not an update error
  kMalformed,          // oversized, unparseable, field over a limit
  kUnsupportedFormat,  // format_version other than kMetadataFormatVersion
  kBadSignature,       // unsigned or signed by another key
  kExpired,            // expires_unix_ms <= now (freeze attack)
  kRollback,           // metadata_version < last accepted (rollback attack)
};
const char* UpdateErrorName(UpdateError e);

// UpdateErrorOf returns the reason attached by this library, or kNone.
UpdateError UpdateErrorOf(const absl::Status& status);

// MakeUpdateError builds a status of `code` carrying `reason` (for other
// update-path code that wants the same classification).
absl::Status MakeUpdateError(absl::StatusCode code, UpdateError reason,
                             absl::string_view message);

// ValidateMetadata checks format version and every size/count limit of an
// already parsed UpdateMetadata (no signature, no time). Errors:
// InvalidArgument (kMalformed / kUnsupportedFormat).
absl::Status ValidateMetadata(const v1::UpdateMetadata& metadata);

// SignMetadata sets format_version to kMetadataFormatVersion, validates the
// metadata (the platform never signs what devices would refuse as
// malformed, including expires <= issued), serializes it and signs it.
// Errors: InvalidArgument (limits, invalid key).
absl::StatusOr<v1::SignedUpdateMetadata> SignMetadata(
    v1::UpdateMetadata metadata, const crypto::EcPrivateKey& signing_key);

// VerifyMetadata runs the device-side checks listed in the file comment
// against the platform image-signing public key (65-byte SEC1), the device's
// current time and the last metadata_version the device accepted (0 = none).
// An equal metadata_version is accepted (the same document fetched again).
absl::StatusOr<v1::UpdateMetadata> VerifyMetadata(
    const v1::SignedUpdateMetadata& signed_metadata,
    absl::string_view signing_public_key, absl::Time now,
    uint64_t last_accepted_version);

// FindTarget returns the target with `image_id` in verified metadata, or
// nullptr (an image outside the signed set: mix-and-match).
const v1::UpdateTarget* FindTarget(const v1::UpdateMetadata& metadata,
                                   absl::string_view image_id);

}  // namespace sphere::update

#endif  // SPHERE_COMMON_UPDATE_METADATA_H_
