// csr_fuzzer: certificate signing requests and public keys from outside
// (PEM CSRs, SPKI PEM keys, SEC1 points and DER ECDSA signatures).
//
// Input: records (fuzz_support.h RecordReader): [pem, key, message, sig].
// The target runs ParseCsr and PublicKeyFromPem on `pem`, and
// EcdsaVerify / EcdsaVerifyDigest on (key, message, sig).
// Invariants: a parsed CSR or PEM key is a 65-byte SEC1 point that survives
// PublicKeyToPem -> PublicKeyFromPem; a signature by the fixed key verifies.
#include <cstdint>

#include "common/crypto/crypto.h"
#include "fuzz/fuzz_support.h"

namespace {

void CheckPoint(const std::string& point) {
  sphere::fuzz::Check(point.size() == 65 && point[0] == 0x04,
                      "parsed public key is not a SEC1 uncompressed point");
  absl::StatusOr<std::string> again =
      sphere::crypto::PublicKeyFromPem(sphere::crypto::PublicKeyToPem(point));
  sphere::fuzz::Check(again.ok() && *again == point,
                      "public key does not survive a PEM round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sphere::fuzz::RecordReader in(sphere::fuzz::Bytes(data, size));
  absl::string_view pem, key, message, sig;
  in.Next(&pem);
  in.Next(&key);
  in.Next(&message);
  in.Next(&sig);

  absl::StatusOr<sphere::crypto::ParsedCsr> csr = sphere::crypto::ParseCsr(pem);
  if (csr.ok()) CheckPoint(csr->public_key);
  absl::StatusOr<std::string> point = sphere::crypto::PublicKeyFromPem(pem);
  if (point.ok()) CheckPoint(*point);

  (void)sphere::crypto::EcdsaVerify(key, message, sig);
  (void)sphere::crypto::EcdsaVerifyDigest(key, message, sig);
  (void)sphere::crypto::PublicKeyToPem(key);

  static const auto* signer =
      new sphere::crypto::EcPrivateKey(sphere::fuzz::FuzzKey("csr"));
  absl::StatusOr<std::string> good = signer->Sign(message);
  sphere::fuzz::Check(good.ok(), "signing failed");
  sphere::fuzz::Check(
      sphere::crypto::EcdsaVerify(signer->PublicKey(), message, *good).ok(),
      "a genuine signature does not verify");
  absl::Status forged =
      sphere::crypto::EcdsaVerify(signer->PublicKey(), message, sig);
  sphere::fuzz::Check(forged.ok() ||
                          forged.code() == absl::StatusCode::kInvalidArgument ||
                          forged.code() == absl::StatusCode::kUnauthenticated,
                      "EcdsaVerify failed with an undocumented code");
  return 0;
}
