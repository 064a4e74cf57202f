#include "fuzz/fuzz_support.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"

namespace sphere::fuzz {
namespace {

// Protobuf logs an ERROR line for every string field holding invalid UTF-8
// (parsing then fails, which the targets handle). At fuzzing rates that
// floods stderr and slows the fuzzer, so the targets drop protobuf's log.
void DropProtobufLog(google::protobuf::LogLevel, const char*, int,
                     const std::string&) {}
const bool kProtobufLogDropped =
    (google::protobuf::SetLogHandler(&DropProtobufLog), true);

}  // namespace

crypto::EcPrivateKey FuzzKey(absl::string_view label) {
  absl::StatusOr<crypto::EcPrivateKey> key = crypto::EcPrivateKey::FromScalar(
      crypto::Sha256(absl::StrCat("sphere-fuzz-key:", label)));
  Check(key.ok(), "fuzz key scalar out of range");
  return *key;
}

absl::Time FuzzNow() { return absl::FromUnixSeconds(1767225600); }

std::string FuzzRootPem() {
  crypto::EcPrivateKey key = FuzzKey("root");
  crypto::CertificateSpec spec;
  spec.common_name = "Sphere Fuzz Root CA";
  spec.organization = "Sphere";
  spec.subject_public_key = key.PublicKey();
  spec.serial = 1;
  spec.not_before = FuzzNow() - absl::Hours(24);
  spec.not_after = FuzzNow() + absl::Hours(24 * 365 * 20);
  spec.usage = crypto::KeyUsage::kCa;
  absl::StatusOr<std::string> pem = crypto::IssueCertificate(spec, key, "");
  Check(pem.ok(), "cannot issue the fuzz root");
  return *pem;
}

std::string FuzzTenantCaPem(absl::string_view root_pem) {
  crypto::CertificateSpec ca;
  ca.common_name = "Contoso CA";
  ca.organization = "Contoso";
  ca.subject_public_key = FuzzKey("tenant-ca").PublicKey();
  ca.serial = 2;
  ca.not_before = FuzzNow() - absl::Hours(1);
  ca.not_after = FuzzNow() + absl::Hours(24 * 365);
  ca.usage = crypto::KeyUsage::kCa;
  ca.path_len = 0;
  absl::StatusOr<std::string> pem =
      crypto::IssueCertificate(ca, FuzzKey("root"), root_pem);
  Check(pem.ok(), "cannot issue the fuzz tenant CA");
  return *pem;
}

crypto::CertificateSpec FuzzSpec(absl::string_view common_name,
                                 absl::string_view key_label, uint64_t serial,
                                 crypto::KeyUsage usage) {
  crypto::CertificateSpec spec;
  spec.common_name = std::string(common_name);
  spec.subject_public_key = FuzzKey(key_label).PublicKey();
  spec.serial = serial;
  spec.not_before = FuzzNow() - absl::Hours(1);
  spec.not_after = FuzzNow() + absl::Hours(24);
  spec.usage = usage;
  return spec;
}

std::string FuzzMasterKey() { return crypto::Sha256("sphere-fuzz-master-key"); }

namespace {

// DerLength: a DER length (definite, minimal).
std::string DerLength(size_t n) {
  if (n < 0x80) return std::string(1, static_cast<char>(n));
  std::string bytes;
  for (; n > 0; n >>= 8) bytes.insert(bytes.begin(), static_cast<char>(n));
  return absl::StrCat(std::string(1, static_cast<char>(0x80 | bytes.size())),
                      bytes);
}

std::string Der(uint8_t tag, absl::string_view value) {
  return absl::StrCat(std::string(1, static_cast<char>(tag)),
                      DerLength(value.size()), value);
}

}  // namespace

std::string TbsCertificateOf(absl::string_view der) {
  // Both headers: tag, then a short or 1..4-byte long-form length.
  auto skip_header = [](absl::string_view* in, size_t* len) {
    if (in->size() < 2 || (*in)[0] != 0x30) return false;
    const uint8_t first = static_cast<uint8_t>((*in)[1]);
    size_t header = 2;
    *len = first;
    if (first & 0x80) {
      const size_t n = first & 0x7f;
      if (n == 0 || n > 4 || in->size() < 2 + n) return false;
      *len = 0;
      for (size_t i = 0; i < n; ++i) {
        *len = (*len << 8) | static_cast<uint8_t>((*in)[2 + i]);
      }
      header += n;
    }
    if (in->size() - header < *len) return false;
    in->remove_prefix(header);
    return true;
  };
  absl::string_view in = der;
  size_t len = 0;
  if (!skip_header(&in, &len)) return "";
  absl::string_view tbs = in;
  if (!skip_header(&in, &len)) return "";
  return std::string(tbs.substr(0, (in.data() - tbs.data()) + len));
}

std::string CertificateDer(absl::string_view tbs, absl::string_view algorithm,
                           absl::string_view signature) {
  return Der(
      0x30,
      absl::StrCat(tbs, algorithm,
                   Der(0x03, absl::StrCat(std::string(1, '\0'), signature))));
}

bool RecordReader::Next(absl::string_view* record) {
  if (rest_.empty()) return false;
  uint32_t len = 0;
  size_t i = 0;
  for (; i < 4 && i < rest_.size(); ++i) {
    len = (len << 8) | static_cast<uint8_t>(rest_[i]);
  }
  rest_.remove_prefix(i);
  const size_t n = std::min<size_t>(len, rest_.size());
  *record = rest_.substr(0, n);
  rest_.remove_prefix(n);
  return true;
}

uint8_t RecordReader::NextByte() {
  if (rest_.empty()) return 0;
  const uint8_t b = static_cast<uint8_t>(rest_[0]);
  rest_.remove_prefix(1);
  return b;
}

void AppendRecord(std::string* out, absl::string_view record) {
  const uint32_t n = static_cast<uint32_t>(record.size());
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((n >> shift) & 0xff));
  }
  out->append(record.data(), record.size());
}

void Check(bool cond, absl::string_view what) {
  if (cond) return;
  std::fprintf(stderr, "fuzz invariant broken: %.*s\n",
               static_cast<int>(what.size()), what.data());
  std::abort();
}

}  // namespace sphere::fuzz
