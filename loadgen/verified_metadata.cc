#include "loadgen/verified_metadata.h"

#include <utility>

#include "common/update/metadata.h"

namespace sphere::loadgen {

absl::StatusOr<std::shared_ptr<const v1::UpdateMetadata>>
VerifiedMetadataCache::Verify(const v1::SignedUpdateMetadata& signed_metadata,
                              absl::string_view public_key, absl::Time now,
                              uint64_t last_accepted_version) {
  {
    absl::MutexLock l(&mu_);
    auto it = documents_.find(signed_metadata.signature());
    if (it != documents_.end() && it->second.public_key == public_key &&
        it->second.metadata == signed_metadata.metadata()) {
      const v1::UpdateMetadata& md = *it->second.parsed;
      // The same checks as update::VerifyMetadata's steps 4 and 5; a
      // failure is left to it below, for the exact error.
      if (md.expires_unix_ms() > absl::ToUnixMillis(now) &&
          md.metadata_version() >= last_accepted_version) {
        return it->second.parsed;
      }
    }
    ++signature_checks_;
  }
  absl::StatusOr<v1::UpdateMetadata> md = update::VerifyMetadata(
      signed_metadata, public_key, now, last_accepted_version);
  if (!md.ok()) return md.status();
  auto parsed = std::make_shared<const v1::UpdateMetadata>(*std::move(md));
  absl::MutexLock l(&mu_);
  if (documents_.size() >= max_documents_) documents_.clear();
  documents_[signed_metadata.signature()] =
      Document{std::string(public_key), signed_metadata.metadata(), parsed};
  return parsed;
}

uint64_t VerifiedMetadataCache::signature_checks() const {
  absl::MutexLock l(&mu_);
  return signature_checks_;
}

}  // namespace sphere::loadgen
