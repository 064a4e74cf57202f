// common/crypto: the platform's cryptography, written to the API subset that
// OpenSSL 3 and BoringSSL share (EVP, EC_KEY/ECDSA, X509). The main build links
// OpenSSL; `--config=boringssl` builds the same sources against BoringSSL.
//
// All byte strings are raw binary held in std::string unless a name says Hex
// or Pem. Every function is thread-safe (no shared mutable state).
//
// Example:
//   auto key = sphere::crypto::EcPrivateKey::Generate();
//   std::string sig = *key.Sign("hello");
//   CHECK(sphere::crypto::EcdsaVerify(key.PublicKey(), "hello", sig).ok());
#ifndef SPHERE_COMMON_CRYPTO_CRYPTO_H_
#define SPHERE_COMMON_CRYPTO_CRYPTO_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sphere::crypto {

// ---- Digests, MACs, encoding, randomness -------------------------------

// Sha256 returns the 32-byte SHA-256 digest of `data`.
std::string Sha256(absl::string_view data);

// HmacSha256 returns the 32-byte HMAC-SHA256 of `data` under `key`.
std::string HmacSha256(absl::string_view key, absl::string_view data);

// ConstantTimeEquals compares two byte strings without early exit.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// HexEncode returns lowercase hex; HexDecode rejects odd length / non-hex.
std::string HexEncode(absl::string_view bytes);
absl::StatusOr<std::string> HexDecode(absl::string_view hex);

// RandomBytes returns `n` bytes from the OS CSPRNG (RAND_bytes).
std::string RandomBytes(size_t n);

// ---- P-256 ECDSA --------------------------------------------------------

// EcPrivateKey holds a P-256 private key as its 32-byte scalar only (compact:
// a million of them fit in loadgen). Signing builds an EC_KEY per call.
class EcPrivateKey {
 public:
  static EcPrivateKey Generate();
  // FromScalar accepts a 32-byte big-endian scalar in [1, n-1].
  static absl::StatusOr<EcPrivateKey> FromScalar(absl::string_view scalar);
  // FromPem accepts "EC PRIVATE KEY" (SEC1) or "PRIVATE KEY" (PKCS#8) PEM.
  static absl::StatusOr<EcPrivateKey> FromPem(absl::string_view pem);

  EcPrivateKey() = default;  // empty, invalid; use a factory.

  bool valid() const { return scalar_.size() == 32; }
  const std::string& scalar() const { return scalar_; }
  // PKCS#8 "PRIVATE KEY" PEM (readable by openssl and gRPC's TLS stack).
  std::string ToPem() const;
  // Uncompressed SEC1 point: 0x04 || X || Y (65 bytes).
  std::string PublicKey() const;

  // Sign returns a DER ECDSA signature over SHA-256(message).
  absl::StatusOr<std::string> Sign(absl::string_view message) const;
  // SignDigest signs a caller-computed 32-byte digest.
  absl::StatusOr<std::string> SignDigest(absl::string_view digest) const;

 private:
  explicit EcPrivateKey(std::string scalar) : scalar_(std::move(scalar)) {}
  std::string scalar_;
};

// EcdsaVerify checks a DER signature over SHA-256(message) with a 65-byte
// SEC1 public key. Errors: InvalidArgument (malformed key/signature),
// Unauthenticated (signature does not verify).
absl::Status EcdsaVerify(absl::string_view public_key,
                         absl::string_view message,
                         absl::string_view signature);
absl::Status EcdsaVerifyDigest(absl::string_view public_key,
                               absl::string_view digest,
                               absl::string_view signature);

// PublicKeyToPem / PublicKeyFromPem convert a SEC1 point to/from SPKI PEM.
std::string PublicKeyToPem(absl::string_view public_key);
absl::StatusOr<std::string> PublicKeyFromPem(absl::string_view pem);

// ---- Symmetric ----------------------------------------------------------

// AES-256-GCM. Seal returns ciphertext || 16-byte tag. Open fails with
// Unauthenticated on any tampering. The two backends differ (EVP_CIPHER GCM in
// OpenSSL, EVP_AEAD in BoringSSL); the difference is hidden in one file.
absl::StatusOr<std::string> AesGcmSeal(absl::string_view key32,
                                       absl::string_view nonce12,
                                       absl::string_view plaintext,
                                       absl::string_view aad);
absl::StatusOr<std::string> AesGcmOpen(absl::string_view key32,
                                       absl::string_view nonce12,
                                       absl::string_view sealed,
                                       absl::string_view aad);

// AesCtrXor encrypts/decrypts `n` bytes of `data` in place with AES-256-CTR,
// starting at byte `offset` of the key stream for `iv16` (the counter block is
// iv16 + offset/16, big-endian add). Used by the encrypted RocksDB Env over
// whole buffers.
absl::Status AesCtrXor(absl::string_view key32, absl::string_view iv16,
                       uint64_t offset, char* data, size_t n);

// ---- X.509 --------------------------------------------------------------

// Claims carried in a Sphere device certificate as SAN URIs
// (urn:sphere:device:<id>, urn:sphere:tenant:<id>, urn:sphere:product:<id>,
// urn:sphere:group:<id>, urn:sphere:scope:<scope>, urn:sphere:epoch:<n>).
struct DeviceClaims {
  std::string device_id;
  std::string tenant_id;
  std::string product_id;
  std::string device_group_id;
  std::string scope;  // "full" or "update-only"; empty when absent.
  // Ownership epoch (decimal) of the device when the credential was issued
  // (urn:sphere:epoch:<n>); a transfer increments it and voids older ones.
  std::string epoch;
  bool empty() const {
    return device_id.empty() && tenant_id.empty() && product_id.empty() &&
           device_group_id.empty() && scope.empty() && epoch.empty();
  }
};

enum class KeyUsage { kCa, kServerAuth, kClientAuth, kServerAndClientAuth };

// CertificateSpec describes a certificate to issue.
struct CertificateSpec {
  std::string common_name;
  std::string organization;        // optional
  std::string subject_public_key;  // 65-byte SEC1 point
  uint64_t serial = 0;             // 0 = random 63-bit serial
  absl::Time not_before;
  absl::Time not_after;
  KeyUsage usage = KeyUsage::kClientAuth;
  int path_len = -1;  // CA only; -1 = unlimited
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;  // e.g. "127.0.0.1"
  DeviceClaims claims;               // emitted as URI SANs when non-empty
};

// IssueCertificate signs `spec` (ECDSA-SHA256) with `issuer_key`.
// `issuer_cert_pem` empty means self-signed (issuer = subject; the spec's key
// must then be issuer_key's public key). Returns the certificate PEM.
absl::StatusOr<std::string> IssueCertificate(const CertificateSpec& spec,
                                             const EcPrivateKey& issuer_key,
                                             absl::string_view issuer_cert_pem);

// IssuedCertificate is what CertificateIssuer::IssueWithSerial returns.
struct IssuedCertificate {
  std::string pem;
  uint64_t serial = 0;     // the serial actually used (random when spec's is 0)
  std::string serial_hex;  // same form as ParsedCertificate::serial_hex
};

// CertificateIssuer issues certificates for one issuer (key + certificate).
// IssueCertificate redoes the per-issuer work on every call: parsing the
// issuer certificate PEM (hundreds of µs on OpenSSL 3), deriving the issuer's
// public key, building the signing key. A CertificateIssuer does it once in
// Create, so Issue costs about one signature plus encoding. Output is the
// same as IssueCertificate(spec, issuer_key, issuer_cert_pem).
//
// Immutable after Create; Issue/IssueWithSerial are thread-safe.
//
// Example:
//   auto issuer = CertificateIssuer::Create(ca_key, ca_pem);  // once
//   auto pem = (*issuer)->Issue(spec);                         // per device
class CertificateIssuer {
 public:
  // Create checks the key and, when `issuer_cert_pem` is non-empty, that the
  // certificate parses and holds the key's public key (InvalidArgument
  // otherwise). Empty `issuer_cert_pem` means self-signed issuance.
  static absl::StatusOr<std::unique_ptr<CertificateIssuer>> Create(
      const EcPrivateKey& issuer_key, absl::string_view issuer_cert_pem);
  ~CertificateIssuer();
  CertificateIssuer(const CertificateIssuer&) = delete;
  CertificateIssuer& operator=(const CertificateIssuer&) = delete;

  absl::StatusOr<std::string> Issue(const CertificateSpec& spec) const;
  // IssueWithSerial also returns the serial, so callers need not parse the
  // certificate back to learn it.
  absl::StatusOr<IssuedCertificate> IssueWithSerial(
      const CertificateSpec& spec) const;

  // The issuer's 65-byte SEC1 public key.
  const std::string& public_key() const;
  bool self_signed() const;

 private:
  struct Impl;
  explicit CertificateIssuer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// SerialToHex formats a certificate serial as ParsedCertificate::serial_hex
// does (minimal big-endian bytes in lowercase hex; "00" for zero).
std::string SerialToHex(uint64_t serial);

struct ParsedCertificate {
  std::string common_name;
  std::string organization;
  std::string issuer_common_name;
  std::string subject_line;  // one-line form, e.g. "CN=..., O=..."
  std::string issuer_line;
  std::string serial_hex;
  std::string public_key;  // 65-byte SEC1 point
  absl::Time not_before;
  absl::Time not_after;
  bool is_ca = false;
  bool server_auth = false;
  bool client_auth = false;
  std::vector<std::string> dns_sans;
  std::vector<std::string> uri_sans;
  DeviceClaims claims;
  std::string der;  // DER encoding (for fingerprints)
};

absl::StatusOr<ParsedCertificate> ParseCertificate(absl::string_view pem);

// SplitPemChain splits a concatenation of PEM certificates.
std::vector<std::string> SplitPemChain(absl::string_view pem);

// VerifyChain checks `leaf_pem` up to one of `roots_pem` (concatenated PEMs)
// through `intermediates_pem` (concatenated, may be empty) at time `now`:
// signatures, validity windows, CA basic constraints, and — when
// `require_client_auth` — the clientAuth EKU on the leaf. Errors:
// InvalidArgument (unparseable), Unauthenticated (bad signature, unknown
// issuer, wrong EKU), FailedPrecondition (expired / not yet valid).
absl::Status VerifyChain(absl::string_view leaf_pem,
                         absl::string_view intermediates_pem,
                         absl::string_view roots_pem, absl::Time now,
                         bool require_client_auth);

// CSRs: CreateCsr signs a PKCS#10 request for `common_name`; ParseCsr
// verifies its self-signature and returns the subject CN and public key.
absl::StatusOr<std::string> CreateCsr(const EcPrivateKey& key,
                                      absl::string_view common_name);
struct ParsedCsr {
  std::string common_name;
  std::string public_key;  // 65-byte SEC1 point
};
absl::StatusOr<ParsedCsr> ParseCsr(absl::string_view pem);

// BackendName reports the library this build links: "OpenSSL x.y.z ..." or
// "BoringSSL" (`--config=boringssl`). For logs and tests.
std::string BackendName();

}  // namespace sphere::crypto

#endif  // SPHERE_COMMON_CRYPTO_CRYPTO_H_
