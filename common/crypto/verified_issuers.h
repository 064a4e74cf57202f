// VerifiedIssuers: remembers intermediate CAs (a tenant CA) that already
// verified to a pinned trust root, so a chain leaf -> CA -> root costs one
// signature verification (the leaf's) instead of two once its CA is known
// (issue 14: appsvc proves every device of a tenant under the same CA).
//
// What is remembered, and when: after crypto::VerifyChain accepts a chain
// with exactly one intermediate, that intermediate is kept when the leaf
// names it as its issuer and it verifies to a certificate of `roots_pem` on
// its own; it is keyed by its DER (byte for byte) and the exact roots. A
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
// Reading a leaf under a remembered CA without OpenSSL's X509 parse (whose
// public-key decoder costs about three P-256 verifies in OpenSSL 3.0): a
// leaf of the shape Sphere issues (strict DER; v3; ecdsa-with-SHA256 in both
// places; issuer equal to the CA's subject byte for byte; a P-256 key on the
// curve; only basicConstraints (not a CA, no path length), keyUsage (one
// of its first 16 bits set, as OpenSSL 3 requires), extendedKeyUsage,
// subjectAltName, SKID and AKID (not critical, no
// issuer/serial, key id equal to the CA's), each once and decodable; no
// unique identifiers; subject not the issuer) is checked here: the CA's
// signature over its TBSCertificate, both validity windows as X509_cmp_time
// reads them, and the clientAuth EKU. Only a CA with a P-256 key and no
// other extension than those (so no name constraints or policies) is used
// so. Anything else, including any failure of those checks, is verified by
// OpenSSL as before, so its verdict and error are today's: this path only
// accepts what OpenSSL accepts.
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
#include "absl/types/span.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"

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

  // VerifyChainAndParse: VerifyChain, and on success the leaf's fields as
  // crypto::ParseCertificate gives them, read from the very certificate the
  // verification used (the leaf is parsed once, not once per step).
  absl::StatusOr<ParsedCertificate> VerifyChainAndParse(
      absl::string_view leaf_pem, absl::string_view intermediates_pem,
      absl::string_view roots_pem, absl::Time now, bool require_client_auth);

  // VerifyDerChainAndParse: VerifyChainAndParse for a chain given as DER
  // certificates, `chain[0]` the leaf and then its intermediates, so no PEM
  // is decoded (a gateway may send DER). Each element must be exactly one
  // DER SEQUENCE with nothing after it (else InvalidArgument). With exactly
  // one intermediate that is a remembered CA (its DER, byte for byte), the
  // leaf is checked as VerifyChainAndParse checks it under that CA; any
  // other chain gets VerifyChainAndParse's verdict on the same certificates
  // as PEM. Accepts nothing VerifyChainAndParse would refuse.
  absl::StatusOr<ParsedCertificate> VerifyDerChainAndParse(
      absl::Span<const absl::string_view> chain, absl::string_view roots_pem,
      absl::Time now, bool require_client_auth);

  size_t size() const;
  // Calls answered through a remembered CA / by a full verification.
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t full_verifications() const {
    return misses_.load(std::memory_order_relaxed);
  }
  // Of hits(), leaves read and verified without OpenSSL's X509 parse.
  uint64_t direct_leaves() const {
    return direct_.load(std::memory_order_relaxed);
  }

 private:
  struct Entry;
  static void QualifyForDirectLeaves(absl::string_view ca_der, Entry* e);
  // DirectLeaf: true when `der` is a leaf of Sphere's shape that OpenSSL
  // would accept under `e`'s CA at `now` (see verified_issuers.cc), with its
  // fields in `out` (when not null); false leaves the verdict to OpenSSL.
  static bool DirectLeaf(const Entry& e, absl::string_view der, absl::Time now,
                         bool require_client_auth, ParsedCertificate* out);
  // Verify: VerifyChain's work; on success, the leaf's fields into
  // `leaf_out` when it is not null.
  absl::Status Verify(absl::string_view leaf_pem,
                      absl::string_view intermediates_pem,
                      absl::string_view roots_pem, absl::Time now,
                      bool require_client_auth, ParsedCertificate* leaf_out);
  // UnderRememberedCa: Verify's work for a leaf under the remembered CA `e`
  // (its root's window, then DirectLeaf, else OpenSSL with `e`'s CA as the
  // only trust anchor). `leaf` is its DER when `leaf_is_der`, else PEM.
  absl::Status UnderRememberedCa(const Entry& e, absl::string_view leaf,
                                 bool leaf_is_der, absl::Time now,
                                 bool require_client_auth,
                                 ParsedCertificate* leaf_out);
  std::shared_ptr<const Entry> Find(absl::string_view ca_der,
                                    absl::string_view roots_pem) const;
  void Remember(std::string key, std::shared_ptr<const Entry> entry);

  const size_t max_entries_;
  mutable absl::Mutex mu_;
  // Keyed by the CA's DER.
  absl::flat_hash_map<std::string, std::shared_ptr<const Entry>> entries_
      ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // oldest first
  std::atomic<uint64_t> hits_{0}, misses_{0}, direct_{0};
};

// CertificatePemToDer: the DER bytes of one PEM "CERTIFICATE" block (the
// base64 is decoded; the certificate is not parsed). InvalidArgument when
// `pem` holds no certificate block.
absl::StatusOr<std::string> CertificatePemToDer(absl::string_view pem);
// CertificateDerToPem: the PEM "CERTIFICATE" block of `der` (not parsed).
std::string CertificateDerToPem(absl::string_view der);

}  // namespace sphere::crypto

#endif  // SPHERE_COMMON_CRYPTO_VERIFIED_ISSUERS_H_
