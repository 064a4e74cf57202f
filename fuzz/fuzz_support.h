// fuzz_support: fixed keys shared by the fuzz targets and the seed-corpus
// generator, so that seeds signed by the generator verify inside the targets
// (the seeds then reach the code behind each signature check).
//
// These keys are public test constants: never use them outside fuzz/.
#ifndef SPHERE_FUZZ_FUZZ_SUPPORT_H_
#define SPHERE_FUZZ_FUZZ_SUPPORT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"

namespace sphere::fuzz {

// FuzzKey returns a deterministic P-256 key for `label` (the scalar is
// SHA-256("sphere-fuzz-key:" || label)). Thread-safe.
crypto::EcPrivateKey FuzzKey(absl::string_view label);

// FuzzNow is the fixed time every target and seed uses (FakeClock's default
// start, 2026-01-01).
absl::Time FuzzNow();

// FuzzRootPem returns a self-signed CA certificate for FuzzKey("root"),
// valid from FuzzNow() - 1 day for 20 years. (ECDSA signatures are random,
// so the bytes differ per call; the subject and key do not.)
std::string FuzzRootPem();

// FuzzTenantCaPem returns the tenant CA "Contoso CA" for FuzzKey("tenant-ca"),
// issued by FuzzKey("root") under `root_pem` (FuzzRootPem()), valid from
// FuzzNow() - 1 hour for a year, path length 0: the CA the seeds' device
// leaves are issued under.
std::string FuzzTenantCaPem(absl::string_view root_pem);

// FuzzSpec returns the spec of a certificate for `common_name` and
// FuzzKey(key_label)'s public key, with `serial` and `usage`, valid from
// FuzzNow() - 1 hour for a day (callers change what differs).
crypto::CertificateSpec FuzzSpec(absl::string_view common_name,
                                 absl::string_view key_label, uint64_t serial,
                                 crypto::KeyUsage usage);

// FuzzMasterKey returns a fixed 32-byte master key.
std::string FuzzMasterKey();

// TbsCertificateOf returns the TBSCertificate (the whole first element of the
// outer SEQUENCE) of the certificate DER `der`; "" when `der` does not start
// that way.
std::string TbsCertificateOf(absl::string_view der);

// CertificateDer wraps `tbs` as a Certificate: SEQUENCE { tbs, `algorithm`
// (a whole AlgorithmIdentifier), BIT STRING { 0 unused bits, `signature` } }.
std::string CertificateDer(absl::string_view tbs, absl::string_view algorithm,
                           absl::string_view signature);

// Bytes views fuzzer input as a string_view.
inline absl::string_view Bytes(const uint8_t* data, size_t size) {
  return absl::string_view(reinterpret_cast<const char*>(data), size);
}

// RecordReader splits fuzzer input into records, each a 4-byte big-endian
// length followed by that many bytes (AppendRecord writes this form; the
// seed generator uses it). A length past the end takes what is left.
class RecordReader {
 public:
  explicit RecordReader(absl::string_view input) : rest_(input) {}
  bool done() const { return rest_.empty(); }
  // Next returns the next record; false when the input is exhausted.
  bool Next(absl::string_view* record);
  // NextByte returns one byte (0 when exhausted).
  uint8_t NextByte();

 private:
  absl::string_view rest_;
};
void AppendRecord(std::string* out, absl::string_view record);

// Check aborts with `what` when `cond` is false: a broken invariant is a
// finding, which libFuzzer reports as a crash with the input that caused it.
void Check(bool cond, absl::string_view what);

}  // namespace sphere::fuzz

#endif  // SPHERE_FUZZ_FUZZ_SUPPORT_H_
