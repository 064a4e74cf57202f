// VerifiedMetadataCache: update::VerifyMetadata for a load generator, whose
// thousands of twins receive the same signed update metadata (one document
// per group variant). The ECDSA verify (the costliest step: ~9,000/s on one
// core here) runs once per distinct document; every later answer must be
// byte-identical to a document that verified (public key, metadata bytes
// and signature all compared in full), and its expiry (freeze) and version
// (rollback) are still checked on every call. Anything else (a new
// document, a changed byte, an expired or rolled-back one) goes through
// update::VerifyMetadata itself, so errors and their UpdateError payloads
// are exactly the device's.
//
// Bounded: at most `max_documents` documents (each within
// update::kMaxMetadataBytes), emptied when full.
//
// Thread-safe.
//
// Example:
//   VerifiedMetadataCache cache;
//   auto md = cache.Verify(answer.signed_metadata(), platform_key,
//                          absl::Now(), /*last_accepted_version=*/0);
#ifndef SPHERE_LOADGEN_VERIFIED_METADATA_H_
#define SPHERE_LOADGEN_VERIFIED_METADATA_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/update.pb.h"

namespace sphere::loadgen {

class VerifiedMetadataCache {
 public:
  explicit VerifiedMetadataCache(size_t max_documents = 64)
      : max_documents_(max_documents) {}

  // Verify: what update::VerifyMetadata(signed_metadata, public_key, now,
  // last_accepted_version) returns, the signature check remembered.
  absl::StatusOr<std::shared_ptr<const v1::UpdateMetadata>> Verify(
      const v1::SignedUpdateMetadata& signed_metadata,
      absl::string_view public_key, absl::Time now,
      uint64_t last_accepted_version);

  uint64_t signature_checks() const;  // full verifications run (tests)

 private:
  struct Document {
    std::string public_key;
    std::string metadata;  // the exact signed bytes
    std::shared_ptr<const v1::UpdateMetadata> parsed;
  };
  const size_t max_documents_;
  mutable absl::Mutex mu_;
  // Keyed by signature; the key and bytes are compared in full on a hit.
  absl::flat_hash_map<std::string, Document> documents_ ABSL_GUARDED_BY(mu_);
  uint64_t signature_checks_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_VERIFIED_METADATA_H_
