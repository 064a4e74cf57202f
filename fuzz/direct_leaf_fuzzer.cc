// direct_leaf_fuzzer: a differential target for VerifiedIssuers' direct leaf
// reader (DirectLeaf, common/crypto/verified_issuers.cc), the hand-written
// DER reader appsvc's proofs go through for a device leaf under a remembered
// tenant CA. It must only accept what OpenSSL's path accepts, with the same
// fields.
//
// Input: one flags byte, then a TBSCertificate (any bytes). The target signs
// the TBS with the fixed tenant CA key (FuzzKey("tenant-ca"), the CA of
// FuzzTenantCaPem) and wraps it as a Certificate, so mutated TBS bytes get
// past DirectLeaf's signature check and reach its DER reader. Flags:
//   bit 0     require the clientAuth EKU;
//   bits 1-2  `now`: FuzzNow(), +2 days (the seed leaves have expired),
//             -2 hours (leaf and CA not yet valid), +400 days (CA expired);
//   bit 3     signed by another key (nothing may accept it);
//   bit 4     outer signatureAlgorithm ecdsa-with-SHA384 (mismatch).
// The leaf is verified twice: by a VerifiedIssuers that remembers the tenant
// CA (DirectLeaf first, OpenSSL's partial chain when it declines), and by
// OpenSSL's full path (crypto::VerifyChain to the fuzz root, then
// crypto::ParseCertificate). Invariants: both give the same verdict; when
// both accept, every field is the same; whatever DirectLeaf accepted
// (direct_leaves() counts it), OpenSSL accepts.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/crypto/verified_issuers.h"
#include "fuzz/fuzz_support.h"

namespace sphere::fuzz {
namespace {

constexpr absl::string_view kEcdsaWithSha256(
    "\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 12);
constexpr absl::string_view kEcdsaWithSha384(
    "\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x03", 12);

struct Pki {
  std::string root_pem = FuzzRootPem();
  std::string ca_pem = FuzzTenantCaPem(root_pem);
  crypto::EcPrivateKey ca_key = FuzzKey("tenant-ca");
  crypto::EcPrivateKey other_key = FuzzKey("other-ca");
  crypto::VerifiedIssuers issuers;  // remembers the tenant CA (see Make)

  static Pki* Make() {
    auto* p = new Pki;
    const crypto::CertificateSpec dev =
        FuzzSpec("primer", "device", 9, crypto::KeyUsage::kClientAuth);
    absl::StatusOr<std::string> leaf =
        crypto::IssueCertificate(dev, p->ca_key, p->ca_pem);
    Check(leaf.ok() &&
              p->issuers
                  .VerifyChain(*leaf, p->ca_pem, p->root_pem, FuzzNow(), true)
                  .ok(),
          "the primer leaf does not verify");
    Check(p->issuers.size() == 1, "the tenant CA is not remembered");
    return p;
  }
};

absl::Time NowFor(uint8_t flags) {
  switch ((flags >> 1) & 3) {
    case 1:
      return FuzzNow() + absl::Hours(48);
    case 2:
      return FuzzNow() - absl::Hours(2);
    case 3:
      return FuzzNow() + absl::Hours(24 * 400);
    default:
      return FuzzNow();
  }
}

// SameFields: DirectLeaf's fields against OpenSSL's, the first difference
// named.
void CheckSameFields(const crypto::ParsedCertificate& a,
                     const crypto::ParsedCertificate& b) {
  auto same = [](bool eq, absl::string_view field) {
    Check(eq, absl::StrCat("remembered-CA path and OpenSSL differ in ", field));
  };
  same(a.common_name == b.common_name, "common_name");
  same(a.organization == b.organization, "organization");
  same(a.issuer_common_name == b.issuer_common_name, "issuer_common_name");
  same(a.subject_line == b.subject_line, "subject_line");
  same(a.issuer_line == b.issuer_line, "issuer_line");
  same(a.serial_hex == b.serial_hex, "serial_hex");
  same(a.public_key == b.public_key, "public_key");
  same(a.not_before == b.not_before, "not_before");
  same(a.not_after == b.not_after, "not_after");
  same(a.is_ca == b.is_ca, "is_ca");
  same(a.server_auth == b.server_auth, "server_auth");
  same(a.client_auth == b.client_auth, "client_auth");
  same(a.dns_sans == b.dns_sans, "dns_sans");
  same(a.uri_sans == b.uri_sans, "uri_sans");
  same(a.claims.device_id == b.claims.device_id, "claims.device_id");
  same(a.claims.tenant_id == b.claims.tenant_id, "claims.tenant_id");
  same(a.claims.product_id == b.claims.product_id, "claims.product_id");
  same(a.claims.device_group_id == b.claims.device_group_id,
       "claims.device_group_id");
  same(a.claims.scope == b.claims.scope, "claims.scope");
  same(a.claims.epoch == b.claims.epoch, "claims.epoch");
  same(a.der == b.der, "der");
}

}  // namespace
}  // namespace sphere::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace crypto = sphere::crypto;
  namespace fuzz = sphere::fuzz;
  static fuzz::Pki* pki = fuzz::Pki::Make();
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const absl::string_view tbs = fuzz::Bytes(data + 1, size - 1);
  const bool client_auth = flags & 1;
  const absl::Time now = fuzz::NowFor(flags);
  const crypto::EcPrivateKey& signer =
      (flags & 8) ? pki->other_key : pki->ca_key;
  absl::StatusOr<std::string> sig = signer.SignDigest(crypto::Sha256(tbs));
  fuzz::Check(sig.ok(), "cannot sign");
  const std::string leaf_pem = crypto::CertificateDerToPem(fuzz::CertificateDer(
      tbs, (flags & 16) ? fuzz::kEcdsaWithSha384 : fuzz::kEcdsaWithSha256,
      *sig));
  fuzz::Check(!leaf_pem.empty(), "cannot write the leaf's PEM");

  const uint64_t direct_before = pki->issuers.direct_leaves();
  absl::StatusOr<crypto::ParsedCertificate> remembered =
      pki->issuers.VerifyChainAndParse(leaf_pem, pki->ca_pem, pki->root_pem,
                                       now, client_auth);
  const bool direct = pki->issuers.direct_leaves() != direct_before;
  fuzz::Check(
      pki->issuers.size() == 1 && pki->issuers.full_verifications() == 1,
      "the fuzzed leaf did not go through the remembered CA");

  absl::Status openssl = crypto::VerifyChain(leaf_pem, pki->ca_pem,
                                             pki->root_pem, now, client_auth);
  absl::StatusOr<crypto::ParsedCertificate> fields =
      openssl.ok() ? crypto::ParseCertificate(leaf_pem)
                   : absl::StatusOr<crypto::ParsedCertificate>(openssl);
  if (direct) {
    fuzz::Check(openssl.ok(), "DirectLeaf accepted a leaf OpenSSL rejects");
    fuzz::Check(fields.ok(),
                "DirectLeaf accepted a leaf crypto::ParseCertificate rejects");
    fuzz::Check(remembered.ok(), "DirectLeaf accepted, the call failed");
  }
  fuzz::Check(remembered.ok() == fields.ok(),
              remembered.ok()
                  ? "the remembered-CA path accepted a leaf OpenSSL rejects"
                  : "the remembered-CA path rejected a leaf OpenSSL accepts");
  if (remembered.ok()) fuzz::CheckSameFields(*remembered, *fields);
  return 0;
}
