#include "common/crypto/verified_issuers.h"

#include <gtest/gtest.h>

#include <string>

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
  std::string ca_pem_ = Issue("tenant CA", ca_key_, KeyUsage::kCa, root_key_,
                              root_pem_, kNow - absl::Hours(2),
                              kNow + absl::Hours(24 * 365));
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
  EXPECT_EQ(Verify(ca_pem_, ca_pem_).code(), absl::StatusCode::kUnauthenticated);
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
  const std::string unused = Issue("unused CA", other, KeyUsage::kCa,
                                   root_key_, root_pem_, kNow - absl::Hours(2),
                                   kNow + absl::Hours(24));
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
    const std::string ca = Issue("ca" + std::to_string(i), k, KeyUsage::kCa,
                                 root_key_, root_pem_, kNow - absl::Hours(2),
                                 kNow + absl::Hours(24));
    ASSERT_TRUE(Verify(Leaf(k, ca), ca).ok());
  }
  EXPECT_EQ(issuers_.size(), 4u);
  VerifiedIssuers off(0);
  EXPECT_TRUE(
      off.VerifyChain(Leaf(ca_key_, ca_pem_), ca_pem_, root_pem_, kNow, true)
          .ok());
  EXPECT_EQ(off.size(), 0u);
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
