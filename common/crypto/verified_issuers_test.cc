#include "common/crypto/verified_issuers.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"

namespace sphere::crypto {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

// Issue: a certificate of `usage` for `key` by `issuer` (self-signed when
// issuer_pem is empty), valid [from, to).
std::string Issue(const std::string& cn, const EcPrivateKey& key,
                  KeyUsage usage, const EcPrivateKey& issuer,
                  const std::string& issuer_pem, absl::Time from,
                  absl::Time to) {
  CertificateSpec s;
  s.common_name = cn;
  s.subject_public_key = key.PublicKey();
  s.not_before = from;
  s.not_after = to;
  s.usage = usage;
  auto pem = IssueCertificate(s, issuer, issuer_pem);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : "";
}

class VerifiedIssuersTest : public ::testing::Test {
 protected:
  std::string Leaf(const EcPrivateKey& issuer, const std::string& issuer_pem,
                   KeyUsage usage = KeyUsage::kClientAuth) {
    return Issue("device", EcPrivateKey::Generate(), usage, issuer, issuer_pem,
                 kNow - absl::Hours(1), kNow + absl::Hours(24));
  }
  absl::Status Verify(const std::string& leaf, const std::string& ca,
                      absl::Time at = kNow) {
    return issuers_.VerifyChain(leaf, ca, root_pem_, at, true);
  }

  EcPrivateKey root_key_ = EcPrivateKey::Generate();
  EcPrivateKey ca_key_ = EcPrivateKey::Generate();
  std::string root_pem_ =
      Issue("root", root_key_, KeyUsage::kCa, root_key_, "",
            kNow - absl::Hours(2), kNow + absl::Hours(24 * 365));
  std::string ca_pem_ =
      Issue("tenant CA", ca_key_, KeyUsage::kCa, root_key_, root_pem_,
            kNow - absl::Hours(2), kNow + absl::Hours(24 * 365));
  VerifiedIssuers issuers_{4};
};

TEST_F(VerifiedIssuersTest, RemembersTheCaAfterOneFullVerification) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(Verify(Leaf(ca_key_, ca_pem_), ca_pem_).ok());
  }
  EXPECT_EQ(issuers_.size(), 1u);
  EXPECT_EQ(issuers_.full_verifications(), 1u);
  EXPECT_EQ(issuers_.hits(), 2u);
}

TEST_F(VerifiedIssuersTest, Attack_ForgedLeafUnderARememberedCaIsRefused) {
  ASSERT_TRUE(Verify(Leaf(ca_key_, ca_pem_), ca_pem_).ok());
  ASSERT_EQ(issuers_.size(), 1u);
  // Same issuer name as the tenant CA, signed by the attacker's key.
  EcPrivateKey evil = EcPrivateKey::Generate();
  const std::string fake_ca =
      Issue("tenant CA", evil, KeyUsage::kCa, evil, "", kNow - absl::Hours(2),
            kNow + absl::Hours(24));
  const std::string forged = Leaf(evil, fake_ca);
  absl::Status s = Verify(forged, ca_pem_);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_EQ(issuers_.hits(), 1u);  // refused on the remembered path
  // The CA itself presented as a leaf is refused too (no EKU, and never
  // its own anchor).
  EXPECT_EQ(Verify(ca_pem_, ca_pem_).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(issuers_.size(), 1u);  // nothing else remembered
}

TEST_F(VerifiedIssuersTest, Attack_CaNotChainingToThePinnedRootIsNeverKept) {
  EcPrivateKey evil = EcPrivateKey::Generate();
  const std::string evil_ca =
      Issue("tenant CA", evil, KeyUsage::kCa, evil, "", kNow - absl::Hours(2),
            kNow + absl::Hours(24));
  for (int i = 0; i < 2; ++i) {
    absl::Status s = Verify(Leaf(evil, evil_ca), evil_ca);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  }
  EXPECT_EQ(issuers_.size(), 0u);
  EXPECT_EQ(issuers_.hits(), 0u);
  // A leaf the root signed itself verifies, but the unused intermediate
  // beside it is not on its chain: not kept either.
  EcPrivateKey other = EcPrivateKey::Generate();
  const std::string unused =
      Issue("unused CA", other, KeyUsage::kCa, root_key_, root_pem_,
            kNow - absl::Hours(2), kNow + absl::Hours(24));
  EXPECT_TRUE(Verify(Leaf(root_key_, root_pem_), unused).ok());
  EXPECT_EQ(issuers_.size(), 0u);
}

TEST_F(VerifiedIssuersTest, Attack_ExpiredCaIsRefusedEvenWhenRemembered) {
  EcPrivateKey short_key = EcPrivateKey::Generate();
  const std::string short_ca =
      Issue("short CA", short_key, KeyUsage::kCa, root_key_, root_pem_,
            kNow - absl::Hours(2), kNow + absl::Hours(2));
  // The leaf outlives its CA.
  const std::string leaf = Leaf(short_key, short_ca);
  ASSERT_TRUE(Verify(leaf, short_ca).ok());
  ASSERT_EQ(issuers_.size(), 1u);
  absl::Status s = Verify(leaf, short_ca, kNow + absl::Hours(3));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(issuers_.hits(), 1u);  // the remembered path refused it
  // Not yet valid either.
  EXPECT_EQ(Verify(leaf, short_ca, kNow - absl::Hours(3)).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(VerifiedIssuersTest, ExpiredRootIsRefusedEvenWhenItsCaIsRemembered) {
  EcPrivateKey rk = EcPrivateKey::Generate();
  const std::string root = Issue("short root", rk, KeyUsage::kCa, rk, "",
                                 kNow - absl::Hours(2), kNow + absl::Hours(2));
  EcPrivateKey ck = EcPrivateKey::Generate();
  const std::string ca = Issue("ca", ck, KeyUsage::kCa, rk, root,
                               kNow - absl::Hours(2), kNow + absl::Hours(48));
  const std::string leaf = Leaf(ck, ca);
  ASSERT_TRUE(issuers_.VerifyChain(leaf, ca, root, kNow, true).ok());
  ASSERT_EQ(issuers_.size(), 1u);
  absl::Status s =
      issuers_.VerifyChain(leaf, ca, root, kNow + absl::Hours(3), true);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  // The same CA under other roots is not the remembered one.
  EXPECT_EQ(issuers_.VerifyChain(leaf, ca, root_pem_, kNow, true).code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(VerifiedIssuersTest, AnswersAsVerifyChainDoesOnBothPaths) {
  const std::string server = Leaf(ca_key_, ca_pem_, KeyUsage::kServerAuth);
  const std::string expired =
      Issue("old", EcPrivateKey::Generate(), KeyUsage::kClientAuth, ca_key_,
            ca_pem_, kNow - absl::Hours(5), kNow - absl::Hours(1));
  for (int pass = 0; pass < 2; ++pass) {  // 0: full, 1: remembered
    if (pass == 1) {
      ASSERT_TRUE(Verify(Leaf(ca_key_, ca_pem_), ca_pem_).ok());
    }
    for (const std::string& leaf : {server, expired, std::string("junk")}) {
      EXPECT_EQ(Verify(leaf, ca_pem_).code(),
                VerifyChain(leaf, ca_pem_, root_pem_, kNow, true).code())
          << "pass " << pass;
    }
  }
  EXPECT_GE(issuers_.hits(), 2u);
}

TEST_F(VerifiedIssuersTest, BoundedOldestDroppedAndZeroRemembersNothing) {
  for (int i = 0; i < 6; ++i) {
    EcPrivateKey k = EcPrivateKey::Generate();
    const std::string ca =
        Issue("ca" + std::to_string(i), k, KeyUsage::kCa, root_key_, root_pem_,
              kNow - absl::Hours(2), kNow + absl::Hours(24));
    ASSERT_TRUE(Verify(Leaf(k, ca), ca).ok());
  }
  EXPECT_EQ(issuers_.size(), 4u);
  VerifiedIssuers off(0);
  EXPECT_TRUE(
      off.VerifyChain(Leaf(ca_key_, ca_pem_), ca_pem_, root_pem_, kNow, true)
          .ok());
  EXPECT_EQ(off.size(), 0u);
}

// A device leaf as Sphere issues it: claims and a DNS name in its SANs.
std::string DeviceLeaf(const EcPrivateKey& issuer,
                       const std::string& issuer_pem,
                       absl::Time from = kNow - absl::Hours(1),
                       absl::Time to = kNow + absl::Hours(24)) {
  CertificateSpec s;
  s.common_name = std::string(64, 'a');
  s.subject_public_key = EcPrivateKey::Generate().PublicKey();
  s.not_before = from;
  s.not_after = to;
  s.usage = KeyUsage::kClientAuth;
  s.dns_sans = {"device.example"};
  s.claims.device_id = std::string(64, 'a');
  s.claims.tenant_id = "tenant-1";
  s.claims.product_id = "DW100";
  s.claims.scope = "full";
  s.claims.epoch = "3";
  auto pem = IssueCertificate(s, issuer, issuer_pem);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : "";
}

// Resigned: `leaf_pem` with `edit` applied to its parsed form, signed again
// by `key` (OpenSSL's encoder), as PEM.
template <typename Edit>
std::string Resigned(const std::string& leaf_pem, const EcPrivateKey& key,
                     Edit edit) {
  const std::string key_pem = key.ToPem();
  BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  BIO* cb = BIO_new_mem_buf(leaf_pem.data(), static_cast<int>(leaf_pem.size()));
  X509* x = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  BIO_free(cb);
  std::string out;
  if (pkey != nullptr && x != nullptr) {
    edit(x);
    BIO* ob = BIO_new(BIO_s_mem());
    if (X509_sign(x, pkey, EVP_sha256()) > 0 &&
        PEM_write_bio_X509(ob, x) == 1) {
      char* data = nullptr;
      long n = BIO_get_mem_data(ob, &data);
      out.assign(data, n);
    }
    BIO_free(ob);
  }
  X509_free(x);
  EVP_PKEY_free(pkey);
  EXPECT_FALSE(out.empty());
  return out;
}

void AddExtension(X509* x, int nid, bool critical, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, nid, value);
  ASSERT_NE(ext, nullptr);
  X509_EXTENSION_set_critical(ext, critical ? 1 : 0);
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
}

TEST_F(VerifiedIssuersTest, DirectLeafGivesWhatParseCertificateGives) {
  ASSERT_TRUE(Verify(DeviceLeaf(ca_key_, ca_pem_), ca_pem_).ok());
  ASSERT_EQ(issuers_.size(), 1u);
  const std::string leaf = DeviceLeaf(ca_key_, ca_pem_);
  auto direct = issuers_.VerifyChainAndParse(leaf, ca_pem_, root_pem_, kNow,
                                             /*require_client_auth=*/true);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(issuers_.direct_leaves(), 1u);
  auto parsed = ParseCertificate(leaf);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(direct->common_name, parsed->common_name);
  EXPECT_EQ(direct->organization, parsed->organization);
  EXPECT_EQ(direct->issuer_common_name, parsed->issuer_common_name);
  EXPECT_EQ(direct->subject_line, parsed->subject_line);
  EXPECT_EQ(direct->issuer_line, parsed->issuer_line);
  EXPECT_EQ(direct->serial_hex, parsed->serial_hex);
  EXPECT_EQ(direct->public_key, parsed->public_key);
  EXPECT_EQ(direct->not_before, parsed->not_before);
  EXPECT_EQ(direct->not_after, parsed->not_after);
  EXPECT_EQ(direct->is_ca, parsed->is_ca);
  EXPECT_EQ(direct->server_auth, parsed->server_auth);
  EXPECT_EQ(direct->client_auth, parsed->client_auth);
  EXPECT_EQ(direct->dns_sans, parsed->dns_sans);
  EXPECT_EQ(direct->uri_sans, parsed->uri_sans);
  EXPECT_EQ(direct->claims.device_id, parsed->claims.device_id);
  EXPECT_EQ(direct->claims.tenant_id, parsed->claims.tenant_id);
  EXPECT_EQ(direct->claims.scope, parsed->claims.scope);
  EXPECT_EQ(direct->claims.epoch, parsed->claims.epoch);
  EXPECT_EQ(direct->der, parsed->der);
  // The full path's answer for the first leaf is the same kind of answer.
  auto full = VerifiedIssuers(0).VerifyChainAndParse(leaf, ca_pem_, root_pem_,
                                                     kNow, true);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->der, direct->der);
  EXPECT_EQ(full->claims.device_id, direct->claims.device_id);
}

TEST_F(VerifiedIssuersTest, Attack_TamperedLeafUnderARememberedCaIsRefused) {
  ASSERT_TRUE(Verify(DeviceLeaf(ca_key_, ca_pem_), ca_pem_).ok());
  auto der = CertificatePemToDer(DeviceLeaf(ca_key_, ca_pem_));
  ASSERT_TRUE(der.ok());
  // Another device id in the claims (same length), and a flipped signature
  // byte: neither verifies, on either path.
  std::string claims = *der;
  const size_t at = claims.find("urn:sphere:device:");
  ASSERT_NE(at, std::string::npos);
  claims[at + 18] = 'b';
  std::string sig = *der;
  sig[sig.size() - 3] ^= 0x01;
  for (const std::string& bad : {claims, sig}) {
    const std::string pem = CertificateDerToPem(bad);
    absl::Status s = Verify(pem, ca_pem_);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
    EXPECT_EQ(s.code(),
              VerifyChain(pem, ca_pem_, root_pem_, kNow, true).code());
  }
  EXPECT_EQ(issuers_.direct_leaves(), 0u);
  EXPECT_EQ(issuers_.size(), 1u);  // nothing else remembered
}

TEST_F(VerifiedIssuersTest, Attack_ExpiredOrServerOnlyLeafIsRefusedAsBefore) {
  ASSERT_TRUE(Verify(DeviceLeaf(ca_key_, ca_pem_), ca_pem_).ok());
  const std::string expired = DeviceLeaf(
      ca_key_, ca_pem_, kNow - absl::Hours(2), kNow - absl::Seconds(1));
  const std::string early = DeviceLeaf(ca_key_, ca_pem_, kNow + absl::Hours(1),
                                       kNow + absl::Hours(2));
  const std::string server = Leaf(ca_key_, ca_pem_, KeyUsage::kServerAuth);
  EXPECT_EQ(Verify(expired, ca_pem_).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Verify(early, ca_pem_).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Verify(server, ca_pem_).code(), absl::StatusCode::kUnauthenticated);
  // A server-only leaf is fine where client auth is not asked for.
  EXPECT_TRUE(
      issuers_.VerifyChain(server, ca_pem_, root_pem_, kNow, false).ok());
  EXPECT_EQ(issuers_.direct_leaves(), 1u);  // only the last one
  EXPECT_EQ(issuers_.size(), 1u);
}

TEST_F(VerifiedIssuersTest, Attack_LeafOfAnotherShapeGetsOpenSslsVerdict) {
  ASSERT_TRUE(Verify(DeviceLeaf(ca_key_, ca_pem_), ca_pem_).ok());
  const std::string leaf = DeviceLeaf(ca_key_, ca_pem_);
  // An extension Sphere never issues: non-critical, OpenSSL accepts it;
  // critical, OpenSSL refuses it. Critical SKID: refused as well.
  const std::string comment = Resigned(leaf, ca_key_, [](X509* x) {
    AddExtension(x, NID_netscape_comment, false, "hello");
  });
  const std::string critical = Resigned(leaf, ca_key_, [](X509* x) {
    AddExtension(x, NID_netscape_comment, true, "hello");
  });
  const std::string critical_skid = Resigned(leaf, ca_key_, [](X509* x) {
    int i = X509_get_ext_by_NID(x, NID_subject_key_identifier, -1);
    X509_EXTENSION_set_critical(X509_get_ext(x, i), 1);
  });
  // A CA leaf (basicConstraints CA:TRUE) under the tenant CA.
  const std::string ca_leaf = Resigned(leaf, ca_key_, [](X509* x) {
    X509_delete_ext(x, X509_get_ext_by_NID(x, NID_basic_constraints, -1));
    AddExtension(x, NID_basic_constraints, true, "CA:TRUE");
  });
  EXPECT_TRUE(Verify(comment, ca_pem_).ok());
  for (const std::string& pem : {critical, critical_skid, ca_leaf}) {
    EXPECT_EQ(Verify(pem, ca_pem_).code(),
              VerifyChain(pem, ca_pem_, root_pem_, kNow, true).code());
  }
  EXPECT_EQ(Verify(critical, ca_pem_).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Verify(critical_skid, ca_pem_).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(issuers_.direct_leaves(), 0u);  // all went through OpenSSL
  EXPECT_EQ(issuers_.hits(), 6u);
  EXPECT_EQ(issuers_.size(), 1u);
}

// Found by fuzz/direct_leaf_fuzzer: a keyUsage with none of its first 16
// bits set (empty, bits only in unused padding, or only past bit 15) decodes,
// but OpenSSL 3 marks such a certificate invalid (RFC 5280 4.2.1.3) and
// refuses it; DirectLeaf accepted it.
TEST_F(VerifiedIssuersTest,
       Attack_LeafWithNoKeyUsageBitIsRefusedAsOpenSslDoes) {
  ASSERT_TRUE(Verify(DeviceLeaf(ca_key_, ca_pem_), ca_pem_).ok());
  const std::string leaf = DeviceLeaf(ca_key_, ca_pem_);
  auto with_key_usage = [&](int bit) {
    return Resigned(leaf, ca_key_, [bit](X509* x) {
      ASN1_BIT_STRING* ku = ASN1_BIT_STRING_new();
      ASSERT_NE(ku, nullptr);
      if (bit >= 0) ASSERT_EQ(ASN1_BIT_STRING_set_bit(ku, bit, 1), 1);
      ASSERT_EQ(X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_REPLACE),
                1);
      ASN1_BIT_STRING_free(ku);
    });
  };
  const std::string empty = with_key_usage(-1);
  const std::string past_bit_15 = with_key_usage(16);
  // Padding bits set: the fuzzer's input, BIT STRING 07 28 (7 unused bits,
  // 0x28 in them), which OpenSSL's decoder masks to no bit at all.
  auto der = CertificatePemToDer(Resigned(leaf, ca_key_, [](X509*) {}));
  ASSERT_TRUE(der.ok());
  const std::string ku_digital_signature("\x03\x02\x07\x80", 4);
  const size_t at = der->find(ku_digital_signature);
  ASSERT_NE(at, std::string::npos);
  std::string padded = *der;
  padded[at + 3] = '\x28';
  const std::string padded_pem =
      Resigned(CertificateDerToPem(padded), ca_key_, [](X509*) {});
  for (const std::string& pem : {empty, past_bit_15, padded_pem}) {
    const uint64_t direct = issuers_.direct_leaves();
    absl::Status openssl = VerifyChain(pem, ca_pem_, root_pem_, kNow, true);
    EXPECT_FALSE(openssl.ok());
    absl::Status s = Verify(pem, ca_pem_);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
    EXPECT_EQ(issuers_.direct_leaves(), direct);  // left to OpenSSL
  }
  // A keyUsage with a bit set is still read directly.
  EXPECT_TRUE(Verify(with_key_usage(0), ca_pem_).ok());
  EXPECT_EQ(issuers_.direct_leaves(), 1u);
  EXPECT_EQ(issuers_.size(), 1u);  // nothing else remembered
}

// DerOf: the DER certificates of PEM certificates, in order.
std::vector<std::string> DerOf(const std::vector<std::string>& pems) {
  std::vector<std::string> der;
  for (const std::string& pem : pems) {
    auto d = CertificatePemToDer(pem);
    EXPECT_TRUE(d.ok()) << d.status();
    der.push_back(d.ok() ? *d : "");
  }
  return der;
}

absl::StatusOr<ParsedCertificate> VerifyDer(VerifiedIssuers& issuers,
                                            const std::vector<std::string>& der,
                                            const std::string& roots_pem) {
  std::vector<absl::string_view> views(der.begin(), der.end());
  return issuers.VerifyDerChainAndParse(views, roots_pem, kNow,
                                        /*require_client_auth=*/true);
}

TEST_F(VerifiedIssuersTest, DerChainGetsWhatThePemChainGets) {
  // Not remembered yet: a full verification, and the CA is remembered.
  const std::string first = DeviceLeaf(ca_key_, ca_pem_);
  auto full = VerifyDer(issuers_, DerOf({first, ca_pem_}), root_pem_);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(issuers_.size(), 1u);
  EXPECT_EQ(issuers_.full_verifications(), 1u);
  EXPECT_EQ(full->der, *CertificatePemToDer(first));
  // Under the remembered CA: read directly, the fields the PEM path gives.
  const std::string leaf = DeviceLeaf(ca_key_, ca_pem_);
  auto direct = VerifyDer(issuers_, DerOf({leaf, ca_pem_}), root_pem_);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(issuers_.hits(), 1u);
  EXPECT_EQ(issuers_.direct_leaves(), 1u);
  auto pem = issuers_.VerifyChainAndParse(leaf, ca_pem_, root_pem_, kNow,
                                          /*require_client_auth=*/true);
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_EQ(direct->der, pem->der);
  EXPECT_EQ(direct->public_key, pem->public_key);
  EXPECT_EQ(direct->not_after, pem->not_after);
  EXPECT_EQ(direct->client_auth, pem->client_auth);
  EXPECT_EQ(direct->claims.device_id, pem->claims.device_id);
  EXPECT_EQ(direct->claims.tenant_id, pem->claims.tenant_id);
  // A leaf of another shape (an extension Sphere never issues) is accepted
  // through OpenSSL under the remembered CA, as its PEM would be.
  const std::string comment = Resigned(leaf, ca_key_, [](X509* x) {
    AddExtension(x, NID_netscape_comment, false, "hello");
  });
  auto via_openssl = VerifyDer(issuers_, DerOf({comment, ca_pem_}), root_pem_);
  ASSERT_TRUE(via_openssl.ok()) << via_openssl.status();
  EXPECT_EQ(via_openssl->der, *CertificatePemToDer(comment));
  EXPECT_EQ(issuers_.direct_leaves(), 2u);  // not this one
  EXPECT_EQ(issuers_.hits(), 3u);
  EXPECT_EQ(issuers_.size(), 1u);
}

TEST_F(VerifiedIssuersTest, Attack_MalformedDerChainIsRefusedUnread) {
  ASSERT_TRUE(Verify(DeviceLeaf(ca_key_, ca_pem_), ca_pem_).ok());
  const std::vector<std::string> good = DerOf({Leaf(ca_key_, ca_pem_), ca_pem_});
  std::vector<std::string> trailing_leaf = good;
  trailing_leaf[0] += '\0';
  std::vector<std::string> trailing_ca = good;
  trailing_ca[1] += "\x30\x00";
  std::vector<std::string> indefinite = good;
  indefinite[0] = std::string("\x30\x80", 2) + good[0] + std::string(2, '\0');
  const std::vector<std::vector<std::string>> refused = {
      {}, {"garbage"}, {good[0], ""}, trailing_leaf, trailing_ca, indefinite};
  for (const auto& chain : refused) {
    EXPECT_EQ(VerifyDer(issuers_, chain, root_pem_).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  // Refused before any lookup: nothing counted, read or remembered.
  EXPECT_EQ(issuers_.hits(), 0u);
  EXPECT_EQ(issuers_.full_verifications(), 1u);
  EXPECT_EQ(issuers_.direct_leaves(), 0u);
  EXPECT_EQ(issuers_.size(), 1u);
}

TEST_F(VerifiedIssuersTest, Attack_DerChainGetsThePemPathsVerdict) {
  // Two VerifiedIssuers with the tenant CA remembered: one answers the DER
  // chains, the other the same chains as PEM.
  VerifiedIssuers pem_issuers(4);
  const std::string first = DeviceLeaf(ca_key_, ca_pem_);
  ASSERT_TRUE(Verify(first, ca_pem_).ok());
  ASSERT_TRUE(pem_issuers.VerifyChain(first, ca_pem_, root_pem_, kNow, true)
                  .ok());
  auto der = CertificatePemToDer(DeviceLeaf(ca_key_, ca_pem_));
  ASSERT_TRUE(der.ok());
  std::string claims = *der;
  claims[claims.find("urn:sphere:device:") + 18] = 'b';
  std::string sig = *der;
  sig[sig.size() - 3] ^= 0x01;
  // A self-made "tenant CA" (same name, own key), not from the root.
  EcPrivateKey evil_key = EcPrivateKey::Generate();
  const std::string evil_ca =
      Issue("tenant CA", evil_key, KeyUsage::kCa, evil_key, "",
            kNow - absl::Hours(2), kNow + absl::Hours(24 * 365));
  const std::string evil_leaf = DeviceLeaf(evil_key, evil_ca);
  const std::vector<std::vector<std::string>> chains = {
      {CertificateDerToPem(claims), ca_pem_},
      {CertificateDerToPem(sig), ca_pem_},
      {DeviceLeaf(ca_key_, ca_pem_, kNow - absl::Hours(2),
                  kNow - absl::Seconds(1)),
       ca_pem_},
      {Leaf(ca_key_, ca_pem_, KeyUsage::kServerAuth), ca_pem_},
      {evil_leaf, evil_ca},
      {evil_leaf, ca_pem_},
      {evil_leaf, evil_ca, ca_pem_},
      {ca_pem_, ca_pem_},
      {DeviceLeaf(ca_key_, ca_pem_)},
  };
  for (const auto& chain : chains) {
    std::string intermediates;
    for (size_t i = 1; i < chain.size(); ++i) intermediates += chain[i];
    const absl::Status want =
        pem_issuers.VerifyChain(chain[0], intermediates, root_pem_, kNow, true);
    const absl::Status got = VerifyDer(issuers_, DerOf(chain), root_pem_)
                                 .status();
    EXPECT_FALSE(got.ok());
    EXPECT_EQ(got.code(), want.code()) << got << " vs " << want;
  }
  EXPECT_EQ(issuers_.direct_leaves(), 0u);
  EXPECT_EQ(issuers_.size(), 1u);  // the self-made CA is never kept
  EXPECT_EQ(issuers_.hits(), pem_issuers.hits());
}

TEST(CertificateDerTest, PemAndDerRoundTrip) {
  EcPrivateKey k = EcPrivateKey::Generate();
  const std::string pem = Issue("x", k, KeyUsage::kCa, k, "",
                                kNow - absl::Hours(1), kNow + absl::Hours(1));
  auto der = CertificatePemToDer(pem);
  ASSERT_TRUE(der.ok()) << der.status();
  auto parsed = ParseCertificate(pem);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*der, parsed->der);
  EXPECT_EQ(CertificateDerToPem(*der), pem);
  EXPECT_EQ(CertificatePemToDer("not pem").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sphere::crypto
