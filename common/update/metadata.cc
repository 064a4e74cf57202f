#include "common/update/metadata.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace sphere::update {
namespace {

constexpr absl::string_view kReasonPayloadUrl =
    "type.sphere/sphere.update.UpdateError";

std::string SignedBytes(absl::string_view metadata) {
  return absl::StrCat(kMetadataContext, metadata);
}

absl::Status Malformed(absl::string_view what) {
  return MakeUpdateError(absl::StatusCode::kInvalidArgument,
                         UpdateError::kMalformed,
                         absl::StrCat("update metadata: ", what));
}

absl::Status CheckId(absl::string_view field, absl::string_view value,
                     int index) {
  if (value.size() > kMaxIdBytes) {
    return Malformed(absl::StrCat("target ", index, " ", field, " is ",
                                  value.size(), " bytes (limit ", kMaxIdBytes,
                                  ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTarget(const v1::UpdateTarget& t, int i) {
  if (t.image_id().empty()) {
    return Malformed(absl::StrCat("target ", i, " has no image_id"));
  }
  if (t.component().empty()) {
    return Malformed(absl::StrCat("target ", i, " has no component"));
  }
  for (auto s : {CheckId("image_id", t.image_id(), i),
                 CheckId("component", t.component(), i),
                 CheckId("tenant_id", t.tenant_id(), i)}) {
    if (!s.ok()) return s;
  }
  if (t.image_hash().size() != kDigestBytes) {
    return Malformed(absl::StrCat("target ", i, " (", t.component(),
                                  ") image_hash is ", t.image_hash().size(),
                                  " bytes, want ", kDigestBytes));
  }
  if (t.package_sha256().size() != kDigestBytes) {
    return Malformed(
        absl::StrCat("target ", i, " (", t.component(), ") package_sha256 is ",
                     t.package_sha256().size(), " bytes, want ", kDigestBytes));
  }
  if (t.package_size() == 0 || t.package_size() > kMaxPackageBytes) {
    return Malformed(absl::StrCat("target ", i, " (", t.component(),
                                  ") package_size ", t.package_size(),
                                  " outside 1..", kMaxPackageBytes));
  }
  if (t.size() > t.package_size()) {
    return Malformed(absl::StrCat("target ", i, " (", t.component(),
                                  ") payload size ", t.size(),
                                  " exceeds package_size ", t.package_size()));
  }
  if (static_cast<size_t>(t.hardware_size()) > kMaxHardwareEntries) {
    return Malformed(absl::StrCat("target ", i, " lists ", t.hardware_size(),
                                  " hardware types (limit ",
                                  kMaxHardwareEntries, ")"));
  }
  for (const std::string& h : t.hardware()) {
    if (h.empty() || h.size() > kMaxHardwareNameBytes) {
      return Malformed(absl::StrCat("target ", i,
                                    " hardware name empty or over ",
                                    kMaxHardwareNameBytes, " bytes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* UpdateErrorName(UpdateError e) {
  switch (e) {
    case UpdateError::kNone:
      return "none";
    case UpdateError::kMalformed:
      return "malformed";
    case UpdateError::kUnsupportedFormat:
      return "unsupported-format";
    case UpdateError::kBadSignature:
      return "bad-signature";
    case UpdateError::kExpired:
      return "expired";
    case UpdateError::kRollback:
      return "rollback";
  }
  return "unknown";
}

absl::Status MakeUpdateError(absl::StatusCode code, UpdateError reason,
                             absl::string_view message) {
  absl::Status s(code, message);
  s.SetPayload(kReasonPayloadUrl,
               absl::Cord(std::string(1, static_cast<char>(reason))));
  return s;
}

UpdateError UpdateErrorOf(const absl::Status& status) {
  if (status.ok()) return UpdateError::kNone;
  absl::optional<absl::Cord> p = status.GetPayload(kReasonPayloadUrl);
  if (!p.has_value() || p->size() != 1) return UpdateError::kNone;
  int v = static_cast<unsigned char>(std::string(*p)[0]);
  if (v > static_cast<int>(UpdateError::kRollback)) return UpdateError::kNone;
  return static_cast<UpdateError>(v);
}

absl::Status ValidateMetadata(const v1::UpdateMetadata& md) {
  if (md.format_version() != kMetadataFormatVersion) {
    return MakeUpdateError(
        absl::StatusCode::kInvalidArgument, UpdateError::kUnsupportedFormat,
        absl::StrCat("update metadata: format_version ", md.format_version(),
                     " is not supported (this device understands ",
                     kMetadataFormatVersion, ")"));
  }
  if (md.metadata_version() == 0) {
    return Malformed("metadata_version 0 (versions start at 1)");
  }
  if (md.expires_unix_ms() <= md.issued_unix_ms()) {
    return Malformed(absl::StrCat("expires_unix_ms ", md.expires_unix_ms(),
                                  " is not after issued_unix_ms ",
                                  md.issued_unix_ms()));
  }
  if (md.tenant_id().size() > kMaxIdBytes ||
      md.device_group_id().size() > kMaxIdBytes ||
      md.deployment_id().size() > kMaxIdBytes) {
    return Malformed(absl::StrCat("tenant/group/deployment id over ",
                                  kMaxIdBytes, " bytes"));
  }
  if (static_cast<size_t>(md.targets_size()) > kMaxTargets) {
    return Malformed(
        absl::StrCat(md.targets_size(), " targets (limit ", kMaxTargets, ")"));
  }
  for (int i = 0; i < md.targets_size(); ++i) {
    absl::Status s = ValidateTarget(md.targets(i), i);
    if (!s.ok()) return s;
    for (int j = 0; j < i; ++j) {
      if (md.targets(j).image_id() == md.targets(i).image_id()) {
        return Malformed(absl::StrCat("image_id ", md.targets(i).image_id(),
                                      " listed twice"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::SignedUpdateMetadata> SignMetadata(
    v1::UpdateMetadata metadata, const crypto::EcPrivateKey& signing_key) {
  if (!signing_key.valid()) {
    return absl::InvalidArgumentError("update metadata: invalid signing key");
  }
  metadata.set_format_version(kMetadataFormatVersion);
  absl::Status valid = ValidateMetadata(metadata);
  if (!valid.ok()) return valid;
  v1::SignedUpdateMetadata out;
  if (!metadata.SerializeToString(out.mutable_metadata())) {
    return absl::InternalError("update metadata: serialization failed");
  }
  if (out.metadata().size() > kMaxMetadataBytes) {
    return Malformed(absl::StrCat("serialized metadata is ",
                                  out.metadata().size(), " bytes (limit ",
                                  kMaxMetadataBytes, ")"));
  }
  absl::StatusOr<std::string> sig =
      signing_key.Sign(SignedBytes(out.metadata()));
  if (!sig.ok()) return sig.status();
  out.set_signature(*std::move(sig));
  return out;
}

absl::StatusOr<v1::UpdateMetadata> VerifyMetadata(
    const v1::SignedUpdateMetadata& signed_metadata,
    absl::string_view signing_public_key, absl::Time now,
    uint64_t last_accepted_version) {
  const std::string& bytes = signed_metadata.metadata();
  if (bytes.empty()) return Malformed("empty metadata");
  if (bytes.size() > kMaxMetadataBytes) {
    return Malformed(absl::StrCat("metadata is ", bytes.size(),
                                  " bytes (limit ", kMaxMetadataBytes, ")"));
  }
  if (signed_metadata.signature().empty()) {
    return MakeUpdateError(absl::StatusCode::kUnauthenticated,
                           UpdateError::kBadSignature,
                           "update metadata: unsigned (no signature)");
  }
  if (signed_metadata.signature().size() > kMaxSignatureBytes) {
    return Malformed(absl::StrCat("signature is ",
                                  signed_metadata.signature().size(),
                                  " bytes (limit ", kMaxSignatureBytes, ")"));
  }
  absl::Status sig = crypto::EcdsaVerify(signing_public_key, SignedBytes(bytes),
                                         signed_metadata.signature());
  if (!sig.ok()) {
    return MakeUpdateError(
        absl::StatusCode::kUnauthenticated, UpdateError::kBadSignature,
        absl::StrCat("update metadata: signature does not verify with the "
                     "platform image-signing key (",
                     sig.message(), ")"));
  }
  v1::UpdateMetadata md;
  if (!md.ParseFromString(bytes)) return Malformed("unparseable metadata");
  absl::Status valid = ValidateMetadata(md);
  if (!valid.ok()) return valid;
  const int64_t now_ms = absl::ToUnixMillis(now);
  if (md.expires_unix_ms() <= now_ms) {
    return MakeUpdateError(
        absl::StatusCode::kFailedPrecondition, UpdateError::kExpired,
        absl::StrCat("update metadata: version ", md.metadata_version(),
                     " expired at ", md.expires_unix_ms(), " ms (now ", now_ms,
                     " ms); refusing frozen metadata"));
  }
  if (md.metadata_version() < last_accepted_version) {
    return MakeUpdateError(
        absl::StatusCode::kFailedPrecondition, UpdateError::kRollback,
        absl::StrCat("update metadata: version ", md.metadata_version(),
                     " is older than the last accepted version ",
                     last_accepted_version, "; refusing rollback"));
  }
  return md;
}

const v1::UpdateTarget* FindTarget(const v1::UpdateMetadata& metadata,
                                   absl::string_view image_id) {
  for (const v1::UpdateTarget& t : metadata.targets()) {
    if (t.image_id() == image_id) return &t;
  }
  return nullptr;
}

}  // namespace sphere::update
