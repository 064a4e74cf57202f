#include "appsvc/gateway_auth.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "appsvc/test_pki.h"
#include "common/crypto/crypto.h"
#include "common/crypto/verified_issuers.h"

namespace contoso::appsvc {
namespace {

namespace crypto = sphere::crypto;

// The shared test PKI (appsvc/test_pki.h) on a fake clock, under the names
// the tests below use.
class GatewayAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = Device("full");  // live events after the snapshot
    b_ = Device("full");
  }
  std::string Ca(const std::string& cn, const crypto::EcPrivateKey& key,
                 const crypto::EcPrivateKey& issuer,
                 const std::string& issuer_pem) {
    return pki_.Ca(cn, key, issuer, issuer_pem);
  }
  TestDevice Device(const std::string& scope, bool add_to_registry = true) {
    return pki_.Device(scope, add_to_registry);
  }
  void Revoke(const TestDevice& d) { pki_.Revoke(d); }

  sphere::FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  TestPki pki_{&clock_};
  DeviceRegistry& reg_ = pki_.registry();
  const std::string& root_pem_ = pki_.root_pem();
  TestDevice a_, b_;
};

// GatewayAuthRootTest: the fixture with the GatewayAuth under test (built
// once the test PKI exists).
class GatewayAuthRootTest : public GatewayAuthTest {
 protected:
  void SetUp() override {
    GatewayAuthTest::SetUp();
    gw2_ = std::make_unique<GatewayAuth>(std::string(32, 'k'), root_pem_, &reg_,
                                         &clock_);
  }
  absl::StatusOr<std::string> Login(const TestDevice& d) {
    auto nonce = gw2_->Challenge(d.id);
    if (!nonce.ok()) return nonce.status();
    auto sig = d.key.Sign(GatewayAuth::ProofMessage(d.id, *nonce));
    if (!sig.ok()) return sig.status();
    return gw2_->Prove(d.id, *nonce, d.chain, *sig);
  }
  std::unique_ptr<GatewayAuth> gw2_;
};

TEST_F(GatewayAuthRootTest, ProofThenTokenAuthenticatesTheDevice) {
  auto token = Login(a_);
  ASSERT_TRUE(token.ok()) << token.status();
  auto ctx = gw2_->Authenticate(*token, a_.id);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_EQ(ctx->device_id, a_.id);
  EXPECT_EQ(ctx->tenant_id, "t-contoso");
  EXPECT_EQ(ctx->product_id, "p-dw100");
  EXPECT_EQ(gw2_->tokens_issued(), 1u);
  EXPECT_EQ(gw2_->outstanding_nonces(), 0u);  // the nonce was used up
  // Short-lived: the token ends at token_ttl (1 h), before the 24 h cert.
  clock_.Advance(absl::Hours(1) + absl::Seconds(1));
  auto late = gw2_->Authenticate(*token, a_.id);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnauthenticated)
      << late.status();
}

TEST_F(GatewayAuthRootTest, Attack_ForgedProofSignedByAnotherKey) {
  auto nonce = gw2_->Challenge(a_.id);
  ASSERT_TRUE(nonce.ok());
  // Signed by B's key while presenting A's certificate chain.
  auto sig = b_.key.Sign(GatewayAuth::ProofMessage(a_.id, *nonce));
  ASSERT_TRUE(sig.ok());
  auto token = gw2_->Prove(a_.id, *nonce, a_.chain, *sig);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(token.status().message(), "signature"))
      << token.status();
  EXPECT_EQ(gw2_->tokens_issued(), 0u);
  // The attempt used the nonce up: the same proof cannot be retried.
  auto again = gw2_->Prove(a_.id, *nonce, a_.chain, *sig);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(gw2_->tokens_issued(), 0u);
  // Nothing else changed: the genuine device still logs in.
  EXPECT_TRUE(Login(a_).ok());
}

TEST_F(GatewayAuthRootTest, Attack_ChainFromAnotherRootRefused) {
  // A self-made "tenant CA" issues a certificate with A's claims for the
  // attacker's own key.
  crypto::EcPrivateKey evil_key = crypto::EcPrivateKey::Generate();
  const std::string evil_ca = Ca("evil", evil_key, evil_key, "");
  TestDevice forged;
  forged.id = a_.id;
  crypto::CertificateSpec s;
  s.common_name = a_.id;
  s.subject_public_key = forged.key.PublicKey();
  s.not_before = clock_.Now() - absl::Minutes(1);
  s.not_after = clock_.Now() + absl::Hours(24);
  s.claims.device_id = a_.id;
  s.claims.tenant_id = "t-contoso";
  s.claims.product_id = "p-dw100";
  s.claims.scope = "full";
  s.claims.epoch = "1";
  auto pem = crypto::IssueCertificate(s, evil_key, evil_ca);
  ASSERT_TRUE(pem.ok());
  forged.chain = *pem + evil_ca;
  auto token = Login(forged);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kUnauthenticated)
      << token.status();
  EXPECT_EQ(gw2_->tokens_issued(), 0u);
  // A CA that does not chain to the pinned root is never remembered.
  EXPECT_EQ(gw2_->remembered_cas(), 0u);
}

// DeviceCert: a device certificate with `d`'s claims for `key`, issued by
// `issuer` (certificate `issuer_pem`), valid for a day.
std::string DeviceCert(const TestDevice& d, const crypto::EcPrivateKey& key,
                       const crypto::EcPrivateKey& issuer,
                       const std::string& issuer_pem, absl::Time now) {
  crypto::CertificateSpec s;
  s.common_name = d.id;
  s.subject_public_key = key.PublicKey();
  s.not_before = now - absl::Minutes(1);
  s.not_after = now + absl::Hours(24);
  s.claims.device_id = d.id;
  s.claims.tenant_id = TestPki::kTenantId;
  s.claims.product_id = TestPki::kProductId;
  s.claims.scope = "full";
  s.claims.epoch = "1";
  auto pem = crypto::IssueCertificate(s, issuer, issuer_pem);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : "";
}

TEST_F(GatewayAuthRootTest, TheTenantCaIsVerifiedOnceThenRemembered) {
  ASSERT_TRUE(Login(a_).ok());
  EXPECT_EQ(gw2_->remembered_cas(), 1u);
  EXPECT_EQ(gw2_->chains_via_remembered_ca(), 0u);
  ASSERT_TRUE(Login(b_).ok());
  ASSERT_TRUE(Login(a_).ok());
  EXPECT_EQ(gw2_->remembered_cas(), 1u);
  EXPECT_EQ(gw2_->chains_via_remembered_ca(), 2u);
  EXPECT_EQ(gw2_->tokens_issued(), 3u);
}

TEST_F(GatewayAuthRootTest, Attack_ForgedDeviceCertUnderARememberedCaRefused) {
  ASSERT_TRUE(Login(b_).ok());  // the tenant CA is now remembered
  ASSERT_EQ(gw2_->remembered_cas(), 1u);
  // The attacker's own "Contoso tenant CA" (same name, own key) signs a
  // certificate with A's claims for the attacker's key, sent beside the
  // genuine tenant CA.
  crypto::EcPrivateKey evil_key = crypto::EcPrivateKey::Generate();
  const std::string evil_ca =
      Ca("Contoso tenant CA", evil_key, evil_key, "");
  TestDevice forged;
  forged.id = a_.id;
  forged.chain = DeviceCert(a_, forged.key, evil_key, evil_ca, clock_.Now()) +
                 pki_.tenant_pem();
  auto token = Login(forged);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kUnauthenticated)
      << token.status();
  EXPECT_EQ(gw2_->chains_via_remembered_ca(), 1u);  // refused on that path
  EXPECT_EQ(gw2_->tokens_issued(), 1u);             // only B's
  EXPECT_EQ(gw2_->remembered_cas(), 1u);
  EXPECT_EQ(gw2_->outstanding_nonces(), 0u);  // the attempt used its nonce
  // Nothing changed for the genuine device.
  EXPECT_TRUE(Login(a_).ok());
}

TEST_F(GatewayAuthRootTest,
       Attack_DirectlyReadCertificateStillBindsDeviceAndProofKey) {
  ASSERT_TRUE(Login(b_).ok());  // the tenant CA is now remembered
  ASSERT_TRUE(Login(a_).ok());  // A's certificate read without the X509 parse
  EXPECT_EQ(gw2_->leaves_read_directly(), 1u);
  // B's genuine certificate presented for A: the claims name B.
  TestDevice swapped = b_;
  swapped.id = a_.id;
  swapped.key = b_.key;
  auto other = Login(swapped);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied)
      << other.status();
  // A's genuine certificate, the proof signed by another key.
  TestDevice wrong_key = a_;
  wrong_key.key = crypto::EcPrivateKey::Generate();
  auto forged = Login(wrong_key);
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kUnauthenticated)
      << forged.status();
  EXPECT_EQ(gw2_->leaves_read_directly(), 3u);  // both read directly
  EXPECT_EQ(gw2_->tokens_issued(), 2u);         // nothing issued for them
  EXPECT_EQ(gw2_->outstanding_nonces(), 0u);
  EXPECT_EQ(gw2_->remembered_cas(), 1u);
}

TEST_F(GatewayAuthRootTest, Attack_ExpiredTenantCaRefusedEvenWhenRemembered) {
  // A tenant CA valid for two more hours; A's certificate outlives it.
  crypto::EcPrivateKey ca_key = crypto::EcPrivateKey::Generate();
  const std::string short_ca =
      pki_.Issue("short tenant CA", ca_key, crypto::KeyUsage::kCa, {},
                 pki_.root_key(), root_pem_, absl::Hours(2));
  TestDevice a2 = a_;
  a2.chain = DeviceCert(a_, a_.key, ca_key, short_ca, clock_.Now()) + short_ca;
  ASSERT_TRUE(Login(a2).ok());
  ASSERT_EQ(gw2_->remembered_cas(), 1u);
  clock_.Advance(absl::Hours(3));
  auto token = Login(a2);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kUnauthenticated)
      << token.status();
  EXPECT_TRUE(absl::StrContains(token.status().message(), "expired"))
      << token.status();
  EXPECT_EQ(gw2_->chains_via_remembered_ca(), 1u);  // refused on that path
  EXPECT_EQ(gw2_->tokens_issued(), 1u);
  EXPECT_EQ(gw2_->outstanding_nonces(), 0u);
}

TEST_F(GatewayAuthRootTest, Attack_ReplayedNonceRefused) {
  auto nonce = gw2_->Challenge(a_.id);
  ASSERT_TRUE(nonce.ok());
  auto sig = a_.key.Sign(GatewayAuth::ProofMessage(a_.id, *nonce));
  ASSERT_TRUE(sig.ok());
  ASSERT_TRUE(gw2_->Prove(a_.id, *nonce, a_.chain, *sig).ok());
  auto replay = gw2_->Prove(a_.id, *nonce, a_.chain, *sig);
  EXPECT_EQ(replay.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(gw2_->tokens_issued(), 1u);
}

TEST_F(GatewayAuthRootTest, Attack_ExpiredChallengeRefused) {
  auto nonce = gw2_->Challenge(a_.id);
  ASSERT_TRUE(nonce.ok());
  auto sig = a_.key.Sign(GatewayAuth::ProofMessage(a_.id, *nonce));
  ASSERT_TRUE(sig.ok());
  clock_.Advance(absl::Seconds(31));
  auto token = gw2_->Prove(a_.id, *nonce, a_.chain, *sig);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(absl::StrContains(token.status().message(), "expired"))
      << token.status();
  EXPECT_EQ(gw2_->tokens_issued(), 0u);
}

TEST_F(GatewayAuthRootTest, Attack_TokenOfAnotherDeviceRefused) {
  auto token_a = Login(a_);
  ASSERT_TRUE(token_a.ok()) << token_a.status();
  // A's token presented for B (a gateway mixing up or forging identities).
  auto ctx = gw2_->Authenticate(*token_a, b_.id);
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(ctx.status().message(), "another device"))
      << ctx.status();
  // A's token edited to name B: the MAC no longer verifies.
  std::string edited = *token_a;
  const size_t at = edited.find(a_.id);
  ASSERT_NE(at, std::string::npos);
  edited.replace(at, a_.id.size(), b_.id);
  auto forged = gw2_->Authenticate(edited, b_.id);
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kUnauthenticated);
  // A token made with another key (e.g. the shards') is refused too.
  GatewayAuth other(std::string(32, 'x'), root_pem_, &reg_, &clock_);
  auto n = other.Challenge(a_.id);
  ASSERT_TRUE(n.ok());
  auto sig = a_.key.Sign(GatewayAuth::ProofMessage(a_.id, *n));
  auto foreign = other.Prove(a_.id, *n, a_.chain, *sig);
  ASSERT_TRUE(foreign.ok()) << foreign.status();
  EXPECT_EQ(gw2_->Authenticate(*foreign, a_.id).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A's own token still works: nothing changed.
  EXPECT_TRUE(gw2_->Authenticate(*token_a, a_.id).ok());
}

TEST_F(GatewayAuthRootTest, Attack_RevokedDeviceRefusedAndItsTokenVoid) {
  auto token = Login(a_);
  ASSERT_TRUE(token.ok()) << token.status();
  Revoke(a_);
  auto ctx = gw2_->Authenticate(*token, a_.id);
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(ctx.status().message(), "revoked"))
      << ctx.status();
  auto again = Login(a_);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(gw2_->tokens_issued(), 1u);
  // B is unaffected.
  EXPECT_TRUE(Login(b_).ok());
}

TEST_F(GatewayAuthRootTest, Attack_UpdateOnlyCertificateRefused) {
  TestDevice c = Device("update-only");
  auto token = Login(c);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(token.status().message(), "update-only"))
      << token.status();
  EXPECT_EQ(gw2_->tokens_issued(), 0u);
}

TEST_F(GatewayAuthRootTest, Attack_OversizedInputsRefusedBeforeLookup) {
  auto nonce = gw2_->Challenge(a_.id);
  ASSERT_TRUE(nonce.ok());
  const std::string huge(64 * 1024, 'A');
  EXPECT_EQ(gw2_->Prove(a_.id, *nonce, huge, "sig").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gw2_->Prove(a_.id, *nonce, a_.chain, huge).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gw2_->Challenge(huge).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gw2_->Authenticate(huge, a_.id).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Refused before the nonce lookup: it is still outstanding and usable.
  EXPECT_EQ(gw2_->outstanding_nonces(), 1u);
  auto sig = a_.key.Sign(GatewayAuth::ProofMessage(a_.id, *nonce));
  EXPECT_TRUE(gw2_->Prove(a_.id, *nonce, a_.chain, *sig).ok());
}

// DerOf: the DER certificates of a PEM chain, in order.
std::vector<std::string> DerOf(const std::string& chain_pem) {
  std::vector<std::string> der;
  for (const std::string& pem : crypto::SplitPemChain(chain_pem)) {
    auto d = crypto::CertificatePemToDer(pem);
    EXPECT_TRUE(d.ok()) << d.status();
    der.push_back(d.ok() ? *d : "");
  }
  return der;
}

// ProveDer: one challenge and proof of `d` with `der` as its chain (and
// `pem` too when not empty).
absl::StatusOr<GatewayAuth::Proven> ProveDer(
    GatewayAuth& gw, const TestDevice& d, const std::vector<std::string>& der,
    const std::string& pem = "") {
  auto nonce = gw.Challenge(d.id);
  if (!nonce.ok()) return nonce.status();
  auto sig = d.key.Sign(GatewayAuth::ProofMessage(d.id, *nonce));
  if (!sig.ok()) return sig.status();
  std::vector<absl::string_view> views(der.begin(), der.end());
  return gw.ProveDevice(d.id, *nonce, GatewayAuth::ProofChain{pem, views},
                        *sig);
}

TEST_F(GatewayAuthRootTest, DerChainProvesAsThePemChainDoes) {
  // First through a full verification (the CA is remembered), then under
  // the remembered CA, read directly: both give a token for the device.
  auto first = ProveDer(*gw2_, a_, DerOf(a_.chain));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(gw2_->remembered_cas(), 1u);
  auto second = ProveDer(*gw2_, b_, DerOf(b_.chain));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(gw2_->chains_via_remembered_ca(), 1u);
  EXPECT_EQ(gw2_->leaves_read_directly(), 1u);
  auto ctx = gw2_->Authenticate(second->token, b_.id);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_EQ(ctx->device_id, b_.id);
  // The PEM chain of the same device still proves, through the same CA.
  ASSERT_TRUE(Login(a_).ok());
  EXPECT_EQ(gw2_->remembered_cas(), 1u);
  EXPECT_EQ(gw2_->tokens_issued(), 3u);
}

TEST_F(GatewayAuthRootTest, Attack_DerAndPemTogetherRefusedBeforeLookup) {
  // Disagreeing (A's PEM chain, B's DER chain) or agreeing: one form only.
  for (const std::string& pem : {b_.chain, a_.chain}) {
    auto proven = ProveDer(*gw2_, a_, DerOf(a_.chain), pem);
    EXPECT_EQ(proven.status().code(), absl::StatusCode::kInvalidArgument)
        << proven.status();
    EXPECT_TRUE(absl::StrContains(proven.status().message(), "not both"))
        << proven.status();
  }
  // Refused before the nonce lookup: A's nonce is still outstanding.
  EXPECT_EQ(gw2_->outstanding_nonces(), 1u);
  EXPECT_EQ(gw2_->tokens_issued(), 0u);
  EXPECT_EQ(gw2_->remembered_cas(), 0u);
  EXPECT_TRUE(Login(a_).ok());
}

TEST_F(GatewayAuthRootTest, Attack_OversizedDerChainsRefusedBeforeLookup) {
  std::vector<std::string> der = DerOf(a_.chain);
  ASSERT_EQ(der.size(), 2u);
  const std::vector<std::vector<std::string>> refused = {
      {der[0], der[1], der[1], der[1]},  // four certificates
      {der[0], std::string(8 * 1024, '\x30')},  // over 8 KiB together
      {der[0], ""},  // an empty certificate
  };
  for (const auto& chain : refused) {
    auto proven = ProveDer(*gw2_, a_, chain);
    EXPECT_EQ(proven.status().code(), absl::StatusCode::kInvalidArgument)
        << proven.status();
    // Refused before the nonce lookup: it is still outstanding.
    EXPECT_EQ(gw2_->outstanding_nonces(), 1u);
  }
  EXPECT_EQ(gw2_->tokens_issued(), 0u);
  EXPECT_EQ(gw2_->remembered_cas(), 0u);
  EXPECT_TRUE(ProveDer(*gw2_, a_, der).ok());
}

TEST_F(GatewayAuthRootTest, Attack_GarbageDerChainRefused) {
  ASSERT_TRUE(Login(b_).ok());  // the tenant CA is now remembered
  std::vector<std::string> der = DerOf(a_.chain);
  std::vector<std::string> trailing = der;
  trailing[0] += '\0';  // a byte after the certificate
  std::vector<std::string> not_der = der;
  not_der[0] = "certainly not a certificate";
  std::vector<std::string> flipped = der;
  flipped[0][flipped[0].size() - 3] ^= 1;  // the CA's signature on the leaf
  for (const auto& chain : {trailing, not_der}) {
    auto proven = ProveDer(*gw2_, a_, chain);
    EXPECT_EQ(proven.status().code(), absl::StatusCode::kInvalidArgument)
        << proven.status();
  }
  auto forged = ProveDer(*gw2_, a_, flipped);
  EXPECT_EQ(forged.status().code(), absl::StatusCode::kUnauthenticated)
      << forged.status();
  // Nothing issued, read directly or remembered; each attempt used its nonce.
  EXPECT_EQ(gw2_->tokens_issued(), 1u);
  EXPECT_EQ(gw2_->leaves_read_directly(), 0u);
  EXPECT_EQ(gw2_->remembered_cas(), 1u);
  EXPECT_EQ(gw2_->outstanding_nonces(), 0u);
  EXPECT_TRUE(ProveDer(*gw2_, a_, der).ok());
}

TEST_F(GatewayAuthRootTest, Attack_DerChainNotFromThePlatformRootRefused) {
  ASSERT_TRUE(Login(b_).ok());  // the genuine tenant CA is remembered
  // The attacker's self-made "Contoso tenant CA" (same name, own key) and
  // a certificate with A's claims for the attacker's key under it.
  crypto::EcPrivateKey evil_key = crypto::EcPrivateKey::Generate();
  const std::string evil_ca = Ca("Contoso tenant CA", evil_key, evil_key, "");
  TestDevice forged;
  forged.id = a_.id;
  const std::string leaf =
      DeviceCert(a_, forged.key, evil_key, evil_ca, clock_.Now());
  // Under its own CA, and beside the genuine (remembered) tenant CA.
  for (const std::string& issuers : {evil_ca, pki_.tenant_pem()}) {
    auto proven = ProveDer(*gw2_, forged, DerOf(leaf + issuers));
    EXPECT_EQ(proven.status().code(), absl::StatusCode::kUnauthenticated)
        << proven.status();
  }
  EXPECT_EQ(gw2_->tokens_issued(), 1u);  // only B's
  EXPECT_EQ(gw2_->remembered_cas(), 1u);  // the evil CA is not kept
  EXPECT_EQ(gw2_->leaves_read_directly(), 0u);
  EXPECT_EQ(gw2_->outstanding_nonces(), 0u);
  EXPECT_TRUE(ProveDer(*gw2_, a_, DerOf(a_.chain)).ok());
}

TEST_F(GatewayAuthRootTest, ChallengeTableIsBounded) {
  GatewayAuthOptions o;
  o.max_outstanding_nonces = 2;
  GatewayAuth small(std::string(32, 'k'), root_pem_, &reg_, &clock_, o);
  ASSERT_TRUE(small.Challenge(std::string(64, '1')).ok());
  ASSERT_TRUE(small.Challenge(std::string(64, '2')).ok());
  EXPECT_EQ(small.Challenge(std::string(64, '3')).status().code(),
            absl::StatusCode::kResourceExhausted);
  // A device with a nonce may replace it; expired nonces make room.
  EXPECT_TRUE(small.Challenge(std::string(64, '2')).ok());
  clock_.Advance(absl::Seconds(31));
  EXPECT_TRUE(small.Challenge(std::string(64, '3')).ok());
  EXPECT_LE(small.outstanding_nonces(), 2u);
}

}  // namespace
}  // namespace contoso::appsvc
