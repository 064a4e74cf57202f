// Twin state machine and TwinDriver against a fake transport that plays the
// Security Service (issues real chains under a test root), no gRPC.
#include "twin/twin.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/crypto/verified_issuers.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"
#include "common/util/clock.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "twin/driver.h"

namespace sphere::twin {
namespace {

using Phase = Twin::Phase;

// Pki: a throw-away root (//common/testing:test_pki) and a tenant CA under
// it, issuing device certificates like a shard.
struct Pki {
  test_support::TestPki root;
  rpc::TlsFiles tenant = root.Leaf("Test Tenant CA", crypto::KeyUsage::kCa, {});
  crypto::EcPrivateKey tenant_key =
      *crypto::EcPrivateKey::FromPem(tenant.key_pem);
  std::string root_pem = root.root_pem;
  std::string tenant_pem = tenant.cert_pem;

  v1::AttestResponse Issue(const std::string& cert_key, absl::Time now,
                           absl::Duration lifetime = absl::Hours(24)) const {
    crypto::CertificateSpec leaf;
    leaf.common_name = "device";
    leaf.subject_public_key = cert_key;
    leaf.not_before = now - absl::Minutes(1);
    leaf.not_after = now + lifetime;
    leaf.usage = crypto::KeyUsage::kClientAuth;
    leaf.claims.scope = "full";
    v1::AttestResponse r;
    r.set_outcome(v1::UP_TO_DATE);
    r.set_certificate_chain_pem(
        *crypto::IssueCertificate(leaf, tenant_key, tenant_pem) + tenant_pem);
    r.set_session_token("token-bytes");
    r.set_not_after_unix_ms(absl::ToUnixMillis(now + lifetime));
    return r;
  }
};

class TwinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.root_ca_pem = pki_.root_pem;
    config_.backoff = {absl::Milliseconds(100), 1.6, 0.2, absl::Seconds(1)};
  }

  std::unique_ptr<Twin> NewTwin(const std::string& seed) {
    auto dev = mcu::Device::Manufacture(
        mcu::DeviceType::Mt3620(), signing_key_->PublicKey(), {.seed = seed});
    EXPECT_TRUE(dev.ok()) << dev.status();
    EXPECT_TRUE((*dev)->InstallFactoryImages(*images_).ok());
    return std::make_unique<Twin>(std::move(*dev), &config_);
  }

  // Drive a twin to kAwaitingAttest and return the AttestRequest.
  v1::AttestRequest ToAttest(Twin& twin, absl::Time now) {
    auto r = twin.OnTimer(now);
    EXPECT_TRUE(std::holds_alternative<v1::GetChallengeRequest>(r));
    v1::GetChallengeResponse c;
    c.set_nonce(std::string(32, 'n'));
    r = twin.OnChallenge(now, c);
    EXPECT_TRUE(std::holds_alternative<v1::AttestRequest>(r));
    EXPECT_EQ(twin.phase(), Phase::kAwaitingAttest);
    return std::get<v1::AttestRequest>(r);
  }

  // AddTwins: `n` new twins ("<prefix>-<i>") added to `driver` (indices
  // 0..n-1), their certificate keys recorded in `keys` for the service.
  std::vector<std::unique_ptr<Twin>> AddTwins(
      TwinDriver& driver, std::map<std::string, std::string>& keys, int n,
      const std::string& prefix) {
    std::vector<std::unique_ptr<Twin>> twins;
    for (int i = 0; i < n; ++i) {
      twins.push_back(NewTwin(absl::StrCat(prefix, "-", i)));
      keys[twins.back()->device().device_id()] =
          twins.back()->device().CertificatePublicKey();
      EXPECT_EQ(driver.Add(twins.back().get()), static_cast<uint32_t>(i));
    }
    return twins;
  }

  static void SetUpTestSuite() {
    signing_key_ = new crypto::EcPrivateKey(crypto::EcPrivateKey::Generate());
    auto images = mcu::BuildFactoryImages(*signing_key_, 1);
    ASSERT_TRUE(images.ok()) << images.status();
    images_ = new std::vector<v1::StoredImage>();
    for (const auto& p : *images) images_->push_back(mcu::ToStoredImage(p));
  }
  static inline crypto::EcPrivateKey* signing_key_ = nullptr;
  static inline std::vector<v1::StoredImage>* images_ = nullptr;
  Pki pki_;
  TwinConfig config_;
  absl::Time now_ = absl::Now();
};

TEST_F(TwinTest, AttestsAndSchedulesRenewalBeforeExpiry) {
  auto twin = NewTwin("happy");
  EXPECT_EQ(twin->phase(), Phase::kManufactured);
  EXPECT_EQ(twin->next_wakeup(), absl::InfinitePast());
  config_.min_catalog_revision = 42;
  auto r = twin->OnTimer(now_);
  ASSERT_TRUE(std::holds_alternative<v1::GetChallengeRequest>(r));
  EXPECT_EQ(std::get<v1::GetChallengeRequest>(r).device_id(),
            twin->device().device_id());
  EXPECT_EQ(std::get<v1::GetChallengeRequest>(r).min_catalog_revision(), 42);
  EXPECT_EQ(twin->device().boot_state(), mcu::BootState::kRunning);
  EXPECT_EQ(twin->next_wakeup(), absl::InfiniteFuture());

  v1::GetChallengeResponse c;
  c.set_nonce(std::string(32, 'x'));
  r = twin->OnChallenge(now_, c);
  ASSERT_TRUE(std::holds_alternative<v1::AttestRequest>(r));
  const auto& req = std::get<v1::AttestRequest>(r);
  EXPECT_EQ(req.device_id(), twin->device().device_id());
  v1::QuoteBody body;
  ASSERT_TRUE(body.ParseFromString(req.quote().body()));
  EXPECT_EQ(body.nonce(), c.nonce());
  EXPECT_EQ(body.device_id(), twin->device().device_id());

  r = twin->OnAttest(now_, pki_.Issue(twin->device().CertificatePublicKey(),
                                      now_, absl::Hours(10)));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(twin->phase(), Phase::kCertified);
  EXPECT_TRUE(twin->certified());
  EXPECT_EQ(twin->session_token(), "token-bytes");
  EXPECT_EQ(twin->outcome(), v1::UP_TO_DATE);
  // Renewal at 80 % of the lifetime: 8 h.
  EXPECT_NEAR(absl::ToDoubleHours(twin->next_wakeup() - now_), 8.0, 0.001);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(
      twin->OnTimer(now_ + absl::Hours(7))));
  r = twin->OnTimer(now_ + absl::Hours(8));
  EXPECT_TRUE(std::holds_alternative<v1::GetChallengeRequest>(r));
  EXPECT_EQ(twin->phase(), Phase::kAwaitingChallenge);
  EXPECT_TRUE(twin->certified());  // the old certificate is still valid
}

TEST_F(TwinTest, TransientFailuresBackOffWithGrowingJitteredDelays) {
  auto twin = NewTwin("transient");
  absl::Time now = now_;
  const double expected[] = {0.1, 0.16, 0.256, 0.4096};
  for (int i = 0; i < 4; ++i) {
    twin->OnTimer(now);
    const absl::StatusCode code = i % 2 ? absl::StatusCode::kDeadlineExceeded
                                        : absl::StatusCode::kUnavailable;
    auto r = twin->OnChallenge(now, absl::Status(code, "shard down"));
    EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
    EXPECT_EQ(twin->phase(), Phase::kBackoff);
    EXPECT_EQ(twin->retries(), i + 1);
    const double delay = absl::ToDoubleSeconds(twin->next_wakeup() - now);
    EXPECT_GE(delay, expected[i] * 0.8 - 0.002) << i;
    EXPECT_LE(delay, expected[i] * 1.2 + 0.002) << i;
    // Not before its time.
    EXPECT_TRUE(std::holds_alternative<std::monostate>(
        twin->OnTimer(twin->next_wakeup() - absl::Milliseconds(1))));
    now = twin->next_wakeup();
  }
  // Overloaded at Attest is transient too; the delay stays capped.
  auto req = ToAttest(*twin, now);
  twin->OnAttest(now, absl::ResourceExhaustedError("window full"));
  EXPECT_EQ(twin->phase(), Phase::kBackoff);
  // Success resets the retry count.
  now = twin->next_wakeup();
  ToAttest(*twin, now);
  twin->OnAttest(now, pki_.Issue(twin->device().CertificatePublicKey(), now));
  EXPECT_EQ(twin->phase(), Phase::kCertified);
  EXPECT_EQ(twin->retries(), 0);
  EXPECT_TRUE(twin->last_error().ok());
}

TEST_F(TwinTest, RefusalsAreNeverRetried) {
  for (auto code :
       {absl::StatusCode::kFailedPrecondition, absl::StatusCode::kNotFound,
        absl::StatusCode::kPermissionDenied,
        absl::StatusCode::kUnauthenticated}) {
    auto twin = NewTwin(absl::StrCat("refused-", code));
    twin->OnTimer(now_);
    twin->device().DrainErrorEvents();  // whatever boot recorded
    twin->OnChallenge(now_, absl::Status(code, "no"));
    EXPECT_EQ(twin->phase(), Phase::kRefused) << code;
    // The refusal is one ATTESTATION_FAILED event in the error ring.
    std::vector<v1::ErrorEvent> ev = twin->device().DrainErrorEvents();
    ASSERT_EQ(ev.size(), 1u) << code;
    EXPECT_EQ(ev[0].kind(), v1::ErrorEvent::ATTESTATION_FAILED);
    EXPECT_EQ(ev[0].detail(), "no");
    EXPECT_EQ(twin->last_error().code(), code);
    EXPECT_EQ(twin->next_wakeup(), absl::InfiniteFuture());
    EXPECT_TRUE(std::holds_alternative<std::monostate>(
        twin->OnTimer(now_ + absl::Hours(1000))));
    EXPECT_FALSE(twin->certified());
    // An operator fixed the cause: Retry starts over.
    twin->Retry(now_);
    EXPECT_TRUE(
        std::holds_alternative<v1::GetChallengeRequest>(twin->OnTimer(now_)));
  }
}

TEST_F(TwinTest, Attack_CertificateForAnotherKeyIsRefusedAndNothingChanges) {
  auto twin = NewTwin("wrong-key");
  ToAttest(*twin, now_);
  auto other = crypto::EcPrivateKey::Generate();
  twin->OnAttest(now_, pki_.Issue(other.PublicKey(), now_));
  EXPECT_EQ(twin->phase(), Phase::kRefused);
  EXPECT_EQ(twin->last_error().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(twin->last_error().message(), "not for device"))
      << twin->last_error();
  EXPECT_FALSE(twin->certified());
  EXPECT_TRUE(twin->session_token().empty());
}

TEST_F(TwinTest, Attack_ChainFromAnotherRootIsRefusedAndNothingChanges) {
  auto twin = NewTwin("wrong-root");
  ToAttest(*twin, now_);
  Pki rogue;
  twin->OnAttest(now_,
                 rogue.Issue(twin->device().CertificatePublicKey(), now_));
  EXPECT_EQ(twin->phase(), Phase::kRefused);
  EXPECT_EQ(twin->last_error().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(
      absl::StrContains(twin->last_error().message(), "does not verify"))
      << twin->last_error();
  EXPECT_FALSE(twin->certified());
  EXPECT_TRUE(twin->session_token().empty());
}

TEST_F(TwinTest, Attack_ExpiredCertificateIsRefused) {
  auto twin = NewTwin("expired");
  ToAttest(*twin, now_);
  v1::AttestResponse r =
      pki_.Issue(twin->device().CertificatePublicKey(), now_);
  r.set_not_after_unix_ms(absl::ToUnixMillis(now_ - absl::Seconds(1)));
  twin->OnAttest(now_, r);
  EXPECT_EQ(twin->phase(), Phase::kRefused);
  EXPECT_FALSE(twin->certified());
}

TEST_F(TwinTest, Attack_OversizedSessionTokenIsRefusedNotStored) {
  auto twin = NewTwin("big-token");
  ToAttest(*twin, now_);
  v1::AttestResponse r =
      pki_.Issue(twin->device().CertificatePublicKey(), now_);
  r.set_session_token(std::string(kMaxSessionTokenBytes + 1, 't'));
  twin->OnAttest(now_, r);
  EXPECT_EQ(twin->phase(), Phase::kRefused);
  EXPECT_EQ(twin->last_error().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(twin->session_token().empty());
  EXPECT_FALSE(twin->certified());
}

TEST_F(TwinTest, KeepsItsCertificateToProveWithoutAttestingAgain) {
  IssuerPool pool;
  config_.keep_certificate = &pool;
  auto twin = NewTwin("keeps");
  auto other = NewTwin("keeps-too");
  // Never issued: nothing to prove with, attest first.
  EXPECT_EQ(twin->CertificateChainPem(now_).status().code(),
            absl::StatusCode::kNotFound);
  const v1::AttestResponse r =
      pki_.Issue(twin->device().CertificatePublicKey(), now_, absl::Hours(10));
  ToAttest(*twin, now_);
  twin->OnAttest(now_, r);
  ToAttest(*other, now_);
  other->OnAttest(now_,
                  pki_.Issue(other->device().CertificatePublicKey(), now_));
  ASSERT_EQ(twin->phase(), Phase::kCertified);
  ASSERT_TRUE(twin->keeps_certificate());
  auto chain = twin->CertificateChainPem(now_ + absl::Hours(9));
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(*chain, r.certificate_chain_pem());  // the issued chain exactly
  // The same chain as DER: the device certificate, then the interned
  // issuers, each the DER of its PEM block.
  auto der = twin->CertificateChainDer(now_ + absl::Hours(9));
  ASSERT_TRUE(der.ok()) << der.status();
  const std::vector<std::string> pems = crypto::SplitPemChain(*chain);
  ASSERT_EQ(pems.size(), 1 + der->issuers->size());
  EXPECT_EQ(der->certificate, *crypto::CertificatePemToDer(pems[0]));
  for (size_t i = 1; i < pems.size(); ++i) {
    EXPECT_EQ((*der->issuers)[i - 1], *crypto::CertificatePemToDer(pems[i]));
  }
  auto other_der = other->CertificateChainDer(now_);
  ASSERT_TRUE(other_der.ok()) << other_der.status();
  EXPECT_EQ(other_der->issuers, der->issuers);  // one copy per process
  // The tenant CA is held once for both twins; each twin holds its leaf.
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_TRUE(other->CertificateChainPem(now_).ok());
  EXPECT_LT(twin->FootprintBytes() - other->FootprintBytes() + 1024, 2048u);
  // Expired: attest again first.
  EXPECT_EQ(twin->CertificateChainPem(now_ + absl::Hours(10)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(twin->CertificateChainDer(now_ + absl::Hours(10)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Renewal replaces it.
  twin->RequestAttestation(now_ + absl::Hours(10));
  ToAttest(*twin, now_ + absl::Hours(10));
  const v1::AttestResponse r2 = pki_.Issue(
      twin->device().CertificatePublicKey(), now_ + absl::Hours(10));
  twin->OnAttest(now_ + absl::Hours(10), r2);
  auto renewed = twin->CertificateChainPem(now_ + absl::Hours(11));
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(*renewed, r2.certificate_chain_pem());
  // Dropped: the twin stays certified but must attest to prove again.
  twin->DropKeptCertificate();
  EXPECT_TRUE(twin->certified());
  EXPECT_EQ(twin->CertificateChainPem(now_).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(twin->CertificateChainDer(now_).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TwinTest, KeepsNothingWhenNotAskedOrWhenTheIssuersAreTooLarge) {
  auto plain = NewTwin("keeps-nothing");
  ToAttest(*plain, now_);
  plain->OnAttest(now_,
                  pki_.Issue(plain->device().CertificatePublicKey(), now_));
  EXPECT_TRUE(plain->certified());
  EXPECT_FALSE(plain->keeps_certificate());
  EXPECT_EQ(plain->CertificateChainPem(now_).status().code(),
            absl::StatusCode::kNotFound);

  IssuerPool pool(1);
  config_.keep_certificate = &pool;
  config_.verify_chain = false;  // the oversized tail is not checked here
  auto big = NewTwin("big-issuers");
  ToAttest(*big, now_);
  v1::AttestResponse r = pki_.Issue(big->device().CertificatePublicKey(), now_);
  r.set_certificate_chain_pem(r.certificate_chain_pem() +
                              std::string(IssuerPool::kMaxIssuersBytes, 'x'));
  big->OnAttest(now_, r);
  EXPECT_TRUE(big->certified());  // certified, just not kept
  EXPECT_FALSE(big->keeps_certificate());
  EXPECT_EQ(pool.size(), 0u);
}

TEST_F(TwinTest, AnswersOutOfPhaseAreIgnored) {
  auto twin = NewTwin("stale");
  // An Attest answer nobody asked for does not certify the twin.
  auto r = twin->OnAttest(
      now_, pki_.Issue(twin->device().CertificatePublicKey(), now_));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(twin->phase(), Phase::kManufactured);
  EXPECT_FALSE(twin->certified());
  v1::GetChallengeResponse c;
  c.set_nonce("n");
  EXPECT_TRUE(
      std::holds_alternative<std::monostate>(twin->OnChallenge(now_, c)));
  EXPECT_EQ(twin->phase(), Phase::kManufactured);
}

// FakeService answers inline (the driver must cope with re-entrant
// delivery); the first `unavailable` calls of each device fail.
class FakeService : public client::AttestationTransport {
 public:
  FakeService(const Pki* pki, int unavailable)
      : pki_(pki), unavailable_(unavailable) {}
  void GetChallenge(v1::GetChallengeRequest req,
                    ChallengeCallback done) override {
    ++challenges;
    if (failures_[req.device_id()]++ < unavailable_) {
      done(absl::UnavailableError("restarting"));
      return;
    }
    v1::GetChallengeResponse r;
    r.set_nonce(std::string(32, 'z'));
    done(r);
  }
  void Attest(v1::AttestRequest req, AttestCallback done) override {
    ++attests;
    done(pki_->Issue(keys.at(req.device_id()), absl::Now()));
  }
  std::map<std::string, std::string> keys;  // device id -> cert key
  int challenges = 0, attests = 0;

 private:
  const Pki* pki_;
  int unavailable_;
  std::map<std::string, int> failures_;
};

TEST_F(TwinTest, DriverRunsManyTwinsThroughRetriesToCertificates) {
  FakeService service(&pki_, /*unavailable=*/2);
  config_.backoff = {absl::Milliseconds(1), 1.6, 0.2, absl::Milliseconds(5)};
  TwinDriver driver(&service, Clock::Real());
  int observed = 0;
  driver.set_attest_observer(
      [&](uint32_t, Twin& t, const v1::AttestResponse& r) {
        ++observed;
        EXPECT_EQ(r.session_token(), t.session_token());
      });
  auto twins = AddTwins(driver, service.keys, 50, "fleet");
  ASSERT_TRUE(driver.RunUntil([&] { return driver.certified() == 50; },
                              absl::Now() + absl::Seconds(30)));
  EXPECT_EQ(observed, 50);
  EXPECT_EQ(driver.refused(), 0u);
  EXPECT_EQ(driver.outstanding(), 0);
  EXPECT_EQ(service.challenges, 50 * 3);  // two failures, then success
  EXPECT_EQ(service.attests, 50);
  for (const auto& t : twins) {
    EXPECT_EQ(t->phase(), Phase::kCertified);
    EXPECT_GT(t->next_wakeup(), absl::Now() + absl::Hours(19));
  }
}

TEST_F(TwinTest, DriverCountsRefusedTwinsAndStops) {
  auto twin = NewTwin("unknown-to-service");
  class Refusing : public client::AttestationTransport {
   public:
    void GetChallenge(v1::GetChallengeRequest,
                      ChallengeCallback done) override {
      ++calls;
      done(absl::NotFoundError("device not registered"));
    }
    void Attest(v1::AttestRequest, AttestCallback done) override {
      ++calls;
      done(absl::NotFoundError("device not registered"));
    }
    int calls = 0;
  } refusing;
  TwinDriver refused_driver(&refusing, Clock::Real());
  refused_driver.Add(twin.get());
  ASSERT_TRUE(
      refused_driver.RunUntil([&] { return refused_driver.refused() == 1; },
                              absl::Now() + absl::Seconds(10)));
  // Never retried: one call, then nothing more is scheduled.
  EXPECT_FALSE(refused_driver.RunUntil([] { return false; },
                                       absl::Now() + absl::Milliseconds(20)));
  EXPECT_EQ(refusing.calls, 1);
  EXPECT_EQ(twin->phase(), Phase::kRefused);
  EXPECT_EQ(twin->last_error().code(), absl::StatusCode::kNotFound);
}

// DeferredService holds every call until the test answers it, so the test
// sees how many twins the driver let start at once.
class DeferredService : public client::AttestationTransport {
 public:
  explicit DeferredService(const Pki* pki) : pki_(pki) {}
  void GetChallenge(v1::GetChallengeRequest, ChallengeCallback done) override {
    challenges_.push_back(std::move(done));
  }
  void Attest(v1::AttestRequest req, AttestCallback done) override {
    attests_.push_back({req.device_id(), std::move(done)});
  }
  size_t held() const { return challenges_.size() + attests_.size(); }
  // AnswerAll answers everything pending; returns how many were pending.
  size_t AnswerAll() {
    size_t n = held();
    auto challenges = std::move(challenges_);
    auto attests = std::move(attests_);
    challenges_.clear();
    attests_.clear();
    for (auto& done : challenges) {
      v1::GetChallengeResponse r;
      r.set_nonce(std::string(32, 'q'));
      done(r);
    }
    for (auto& [id, done] : attests)
      done(pki_->Issue(keys.at(id), absl::Now()));
    return n;
  }
  std::map<std::string, std::string> keys;

 private:
  const Pki* pki_;
  std::vector<ChallengeCallback> challenges_;
  std::vector<std::pair<std::string, AttestCallback>> attests_;
};

TEST_F(TwinTest, DriverAdmitsAtMostMaxActiveTwinsAtOnce) {
  DeferredService service(&pki_);
  TwinDriver driver(&service, Clock::Real(), {.max_active = 3});
  auto twins = AddTwins(driver, service.keys, 10, "admit");
  size_t most_pending = 0, most_active = 0;
  ASSERT_TRUE(driver.RunUntil(
      [&] {
        most_active = std::max(most_active, driver.active());
        most_pending = std::max(most_pending, service.AnswerAll());
        return driver.certified() == 10;
      },
      absl::Now() + absl::Seconds(30)));
  EXPECT_EQ(most_active, 3u);
  EXPECT_EQ(most_pending, 3u);  // never more than 3 twins' requests at once
  EXPECT_EQ(driver.active(), 0u);
  EXPECT_EQ(driver.outstanding(), 0);
}

// HoldingService holds every call until Flush, like a gateway transport
// that batches (client::AsyncAttestationClient with max_batch > 1), and
// answers the held calls inline then.
class HoldingService : public DeferredService {
 public:
  using DeferredService::DeferredService;
  void Flush() override {
    ++flushes;
    most_held = std::max(most_held, held());
    AnswerAll();
  }
  int flushes = 0;
  size_t most_held = 0;
};

TEST_F(TwinTest, DriverFlushesTheTransportSoOnePassSharesABatch) {
  HoldingService service(&pki_);
  TwinDriver driver(&service, Clock::Real());
  auto twins = AddTwins(driver, service.keys, 40, "batch");
  // Without the driver's Flush nothing would ever be answered.
  ASSERT_TRUE(driver.RunUntil([&] { return driver.certified() == 40; },
                              absl::Now() + absl::Seconds(30)));
  // All 40 are due at once: their challenges go out in one flush, their
  // Attest requests (made while applying those answers) in the next.
  EXPECT_EQ(service.most_held, 40u);
  EXPECT_LE(service.flushes, 4);
  EXPECT_EQ(driver.outstanding(), 0);
  for (const auto& t : twins) EXPECT_EQ(t->phase(), Phase::kCertified);
}

TEST_F(TwinTest, CertifiedTwinUploadsItsErrorRing) {
  ErrorUploadPolicy policy;
  policy.batch_delay = absl::Seconds(5);
  policy.poll_interval = absl::Seconds(60);
  config_.error_upload = &policy;
  auto twin = NewTwin("error-upload");
  const absl::Time now_ms = absl::FromUnixMillis(absl::ToUnixMillis(now_));
  ToAttest(*twin, now_ms);
  auto r =
      twin->OnAttest(now_ms, pki_.Issue(twin->device().CertificatePublicKey(),
                                        now_ms, absl::Hours(10)));
  ASSERT_EQ(twin->phase(), Phase::kCertified);
  twin->device().DrainErrorEvents();  // whatever boot recorded
  // Idle: the uploader looks at the ring every poll interval; renewal later.
  EXPECT_LE(twin->next_wakeup(), now_ms);  // due: first look at the ring
  r = twin->OnTimer(now_ms);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(twin->next_wakeup(), now_ms + absl::Seconds(60));
  twin->device().TriggerTamper("probe");
  twin->device().TriggerTamper("probe");
  absl::Time t = now_ms + absl::Seconds(60);
  r = twin->OnTimer(t);  // found two events: wait the batch delay
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(twin->next_wakeup(), t + absl::Seconds(5));
  r = twin->OnTimer(t + absl::Seconds(5));
  ASSERT_TRUE(std::holds_alternative<v1::UploadErrorsRequest>(r));
  EXPECT_EQ(std::get<v1::UploadErrorsRequest>(r).events_size(), 2);
  EXPECT_EQ(twin->phase(), Phase::kCertified);  // attestation unaffected
  // Transient failure: the same batch after a backoff.
  twin->OnErrorsUploaded(t + absl::Seconds(5),
                         absl::UnavailableError("shard restarting"));
  absl::Time retry = twin->next_wakeup();
  EXPECT_GT(retry, t + absl::Seconds(5));
  r = twin->OnTimer(retry);
  ASSERT_TRUE(std::holds_alternative<v1::UploadErrorsRequest>(r));
  twin->OnErrorsUploaded(retry, v1::UploadErrorsResponse());
  EXPECT_EQ(twin->error_uploader()->uploaded(), 2u);
  EXPECT_EQ(twin->error_uploader()->pending(), 0u);
  // Renewal still comes first when due.
  r = twin->OnTimer(now_ms + absl::Hours(9));
  EXPECT_TRUE(std::holds_alternative<v1::GetChallengeRequest>(r));
}

TEST_F(TwinTest, DriverDestructorReturnsWhenAnswersArriveAfterRunUntilGaveUp) {
  DeferredService service(&pki_);
  auto twin = NewTwin("late-answer");
  {
    TwinDriver driver(&service, Clock::Real());
    driver.Add(twin.get());
    // The deadline has passed: RunUntil sends the challenge and gives up.
    EXPECT_FALSE(driver.RunUntil([] { return false; }, absl::Now()));
    EXPECT_EQ(driver.outstanding(), 1);
    // The answer arrives after RunUntil returned; nobody applies it.
    EXPECT_EQ(service.AnswerAll(), 1u);
  }  // the destructor must not wait for it to be applied
  EXPECT_EQ(twin->phase(), Twin::Phase::kAwaitingChallenge);
}

}  // namespace
}  // namespace sphere::twin
