// x509_fuzzer: certificates and chains from outside (TLS peers, uploaded CA
// material, device chains relying parties verify).
//
// Input: concatenated PEM (any bytes). The target runs SplitPemChain,
// ParseCertificate on the whole input and on each piece, the claims checks a
// shard applies to a peer certificate (auth::FromCertificate, MayAttestFor),
// and VerifyChain of the first certificate through the rest up to
//  * the fixed fuzz root (FuzzRootPem: the seeds chain to it), and
//  * the last certificate of the input itself taken as a root.
// Invariants: a chain that verifies has a leaf that parses; a certificate
// that parses has a 65-byte public key or none.
#include <cstdint>

#include "absl/strings/str_join.h"
#include "common/crypto/crypto.h"
#include "fuzz/fuzz_support.h"
#include "securitysvc/auth/device_context.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input = sphere::fuzz::Bytes(data, size);
  static const std::string* root = new std::string(sphere::fuzz::FuzzRootPem());
  const absl::Time now = sphere::fuzz::FuzzNow();

  (void)sphere::crypto::ParseCertificate(input);
  std::vector<std::string> chain = sphere::crypto::SplitPemChain(input);
  for (const std::string& pem : chain) {
    absl::StatusOr<sphere::crypto::ParsedCertificate> cert =
        sphere::crypto::ParseCertificate(pem);
    if (!cert.ok()) continue;
    sphere::fuzz::Check(
        cert->public_key.empty() || cert->public_key.size() == 65,
        "parsed certificate key is neither absent nor a P-256 point");
    absl::StatusOr<sphere::auth::DeviceContext> ctx =
        sphere::auth::FromCertificate(*cert, now);
    if (ctx.ok()) {
      sphere::fuzz::Check(
          !ctx->device_id.empty() && sphere::auth::IsDeviceScope(ctx->scope),
          "device context without device id or device scope");
    }
    (void)sphere::auth::MayAttestFor(cert->claims, cert->claims.device_id);
  }
  if (chain.empty()) return 0;
  const std::string leaf = chain.front();
  const std::string rest = absl::StrJoin(chain.begin() + 1, chain.end(), "");
  for (bool client_auth : {false, true}) {
    absl::Status s =
        sphere::crypto::VerifyChain(leaf, rest, *root, now, client_auth);
    if (s.ok()) {
      sphere::fuzz::Check(sphere::crypto::ParseCertificate(leaf).ok(),
                          "a verified leaf does not parse");
    }
  }
  (void)sphere::crypto::VerifyChain(leaf, rest, chain.back(), now, false);
  return 0;
}
