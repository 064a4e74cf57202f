// VerifiedIssuers: remembers intermediate CAs (a tenant CA) that already
// verified to a pinned trust root, so a chain leaf -> CA -> root costs one
// signature verification (the leaf's) instead of two once its CA is known
// (issue 14: appsvc proves every device of a tenant under the same CA).
//
// What is remembered, and when: after crypto::VerifyChain accepts a chain
// with exactly one intermediate, that intermediate is kept when the leaf
// names it as its issuer and it verifies to a certificate of `roots_pem` on
// its own; it is keyed by the SHA-256 of its DER and the exact roots. A
// chain that fails, a CA that does not chain to the pinned roots or did not
// issue the leaf, or a chain with more or fewer intermediates is never
// remembered.
//
// What every call still checks, remembered or not: the leaf's signature by
// the CA, the leaf's validity window and (when asked) its clientAuth EKU,
// the CA's validity window and CA constraints (OpenSSL, the CA as the only
// trust anchor of a partial chain), and that the CA was verified under the
// very `roots_pem` of this call, whose certificate that signed the CA must
// be inside its validity window at `now`. Only the CA's own signature by
// the root is not verified again (it cannot change: the key is its DER).
//
// Errors are crypto::VerifyChain's: InvalidArgument (unparseable),
// Unauthenticated (bad signature, unknown issuer, wrong EKU),
// FailedPrecondition (expired / not yet valid, the CA's or root's too).
//
// Bounded: at most `max_entries` CAs (the oldest is dropped first); 0 turns
// remembering off (every call is a full verification).
//
// Thread-safety: thread-safe. A remembered CA's trust store is shared
// read-only by reference between concurrent calls.
//
// Example:
//   crypto::VerifiedIssuers issuers;
//   absl::Status s = issuers.VerifyChain(leaf_pem, tenant_ca_pem, root_pem,
//                                        now, /*require_client_auth=*/true);
#ifndef SPHERE_COMMON_CRYPTO_VERIFIED_ISSUERS_H_
#define SPHERE_COMMON_CRYPTO_VERIFIED_ISSUERS_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sphere::crypto {

class VerifiedIssuers {
 public:
  explicit VerifiedIssuers(size_t max_entries = 64);
  ~VerifiedIssuers();
  VerifiedIssuers(const VerifiedIssuers&) = delete;
  VerifiedIssuers& operator=(const VerifiedIssuers&) = delete;

  // VerifyChain: as crypto::VerifyChain (same arguments, checks and
  // errors), through a remembered CA when there is one (see above).
  absl::Status VerifyChain(absl::string_view leaf_pem,
                           absl::string_view intermediates_pem,
                           absl::string_view roots_pem, absl::Time now,
                           bool require_client_auth);

  size_t size() const;
  // Calls answered through a remembered CA / by a full verification.
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t full_verifications() const {
    return misses_.load(std::memory_order_relaxed);
  }

 private:
  struct Entry;
  std::shared_ptr<const Entry> Find(const std::string& key,
                                    absl::string_view roots_pem) const;
  void Remember(std::string key, std::shared_ptr<const Entry> entry);

  const size_t max_entries_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Entry>> entries_
      ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // oldest first
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

// CertificatePemToDer: the DER bytes of one PEM "CERTIFICATE" block (the
// base64 is decoded; the certificate is not parsed). InvalidArgument when
// `pem` holds no certificate block.
absl::StatusOr<std::string> CertificatePemToDer(absl::string_view pem);
// CertificateDerToPem: the PEM "CERTIFICATE" block of `der` (not parsed).
std::string CertificateDerToPem(absl::string_view der);

}  // namespace sphere::crypto

#endif  // SPHERE_COMMON_CRYPTO_VERIFIED_ISSUERS_H_
