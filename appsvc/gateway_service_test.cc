// ContosoGatewayService over real gRPC + mTLS on 127.0.0.1:0: a gateway
// certificate carries several devices, each proving itself once; attacks
// assert the specific error and that nothing was stored.
#include "appsvc/gateway_service.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "appsvc/test_pki.h"
#include "common/crypto/crypto.h"
#include "common/crypto/verified_issuers.h"
#include "common/rpc/rpc.h"
#include "common/store/group_commit.h"
#include "common/store/memory_store.h"
#include "common/util/file.h"

namespace contoso::appsvc {
namespace {

namespace crypto = sphere::crypto;

class GatewayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        ::testing::TempDir(), "/gw-",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(sphere::util::MakeDirs(dir_, 0700).ok());
    a_ = Device();
    b_ = Device();

    store_ = *sphere::store::MemoryStore::Create(ColumnFamilies());
    group_ = std::make_unique<sphere::store::GroupCommitWriter>(store_.get());
    writer_ = std::make_unique<SharedGroupCommit>(group_.get());
    cloud_ = std::make_unique<ContosoCloud>(store_.get(), writer_.get(),
                                            sphere::Clock::Real());
    auto key = LoadOrCreateGatewayKey(dir_ + "/gateway_token.key");
    ASSERT_TRUE(key.ok()) << key.status();
    auth_ = std::make_unique<GatewayAuth>(*key, root_pem_, &registry_,
                                          sphere::Clock::Real());
    pool_ = std::make_unique<sphere::WorkerPool>(2, 64, 8);
    service_ = std::make_unique<ContosoGatewayService>(
        auth_.get(), cloud_.get(), pool_.get());
    sphere::rpc::ServerOptions o;
    o.tls = Credential("sphere-services", crypto::KeyUsage::kServerAuth, {});
    runner_ = std::make_unique<sphere::rpc::ServerRunner>(o);
    runner_->AddService(service_.get());
    ASSERT_TRUE(runner_->Start().ok());
    gateway_ = Stub("gateway");
  }

  void TearDown() override {
    if (runner_) runner_->Shutdown(absl::Seconds(1));
  }

  // Stub: a channel presenting a root-issued client credential of `scope`.
  std::unique_ptr<v1::ContosoGateway::Stub> Stub(const std::string& scope) {
    crypto::DeviceClaims claims;
    claims.scope = scope;
    return v1::ContosoGateway::NewStub(sphere::rpc::NewChannel(
        absl::StrCat("127.0.0.1:", runner_->port()),
        Credential(scope, crypto::KeyUsage::kClientAuth, claims)));
  }

  // Credential: cert, key and CA of a new root-issued credential.
  sphere::rpc::TlsFiles Credential(const std::string& cn,
                                   crypto::KeyUsage usage,
                                   const crypto::DeviceClaims& claims) {
    crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
    sphere::rpc::TlsFiles tls;
    tls.cert_pem = pki_.Issue(cn, key, usage, claims, pki_.root_key(),
                              root_pem_, absl::Hours(24 * 30));
    tls.key_pem = key.ToPem();
    tls.ca_pem = root_pem_;
    return tls;
  }

  TestDevice Device() { return pki_.Device("full"); }

  // Prove: the full challenge/prove exchange; the device's session token.
  std::string Prove(const TestDevice& d) {
    grpc::ClientContext c1;
    v1::GatewayChallengeRequest creq;
    creq.set_device_id(d.id);
    v1::GatewayChallengeResponse cresp;
    grpc::Status s = gateway_->GetChallenge(&c1, creq, &cresp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    grpc::ClientContext c2;
    const v1::GatewayProveRequest preq = Proof(d, cresp.nonce());
    v1::GatewayProveResponse presp;
    s = gateway_->Prove(&c2, preq, &presp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(presp.expires_unix_ms(), absl::ToUnixMillis(absl::Now()));
    return presp.session_token();
  }

  static v1::ReportTelemetryRequest Batch(int n, uint64_t first_seq) {
    v1::ReportTelemetryRequest req;
    for (int i = 0; i < n; ++i) {
      v1::Telemetry* s = req.add_samples();
      s->set_time_unix_ms(absl::ToUnixMillis(absl::Now()) + i);
      s->set_water_temperature_c(55);
      s->set_drying_temperature_c(65);
      s->set_rinse_agent_level_pct(80);
      s->set_cycle_state(v1::Telemetry::WASHING);
      s->set_cycle_id(1);
      s->set_sequence(first_seq + i);
    }
    return req;
  }

  grpc::Status Report(const std::string& device_id, const std::string& token,
                      const v1::ReportTelemetryRequest& req,
                      v1::ReportTelemetryResponse* resp) {
    grpc::ClientContext ctx;
    if (!device_id.empty()) ctx.AddMetadata(kGatewayDeviceMetadata, device_id);
    if (!token.empty()) ctx.AddMetadata(kGatewaySessionMetadata, token);
    return gateway_->ReportTelemetry(&ctx, req, resp);
  }

  // AddItem: `d`'s `batch` under `token` as the next item of `req`.
  static void AddItem(v1::GatewayTelemetryBatchRequest* req,
                      const TestDevice& d, const std::string& token,
                      const v1::ReportTelemetryRequest& batch) {
    v1::GatewayTelemetry* item = req->add_items();
    item->set_device_id(d.id);
    item->set_session_token(token);
    *item->mutable_batch() = batch;
  }

  // ReportBatch: the many-device call (the batch form of Report) on
  // `stub` (default: the gateway's channel).
  grpc::Status ReportBatch(const v1::GatewayTelemetryBatchRequest& req,
                           v1::GatewayTelemetryBatchResponse* resp,
                           v1::ContosoGateway::Stub* stub = nullptr) {
    grpc::ClientContext ctx;
    return (stub ? stub : gateway_.get())->ReportTelemetryBatch(&ctx, req, resp);
  }

  uint64_t Stored(const TestDevice& d) { return *cloud_->CountSamples(d.id); }

  // Challenges: GetChallenges for `devices`; the nonces, in order (empty for
  // a device refused a challenge).
  std::vector<std::string> Challenges(
      const std::vector<const TestDevice*>& devices) {
    grpc::ClientContext ctx;
    v1::GatewayChallengesRequest req;
    for (const TestDevice* d : devices) req.add_device_ids(d->id);
    v1::GatewayChallengesResponse resp;
    grpc::Status s = gateway_->GetChallenges(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> nonces;
    for (const auto& r : resp.results()) nonces.push_back(r.nonce());
    EXPECT_EQ(nonces.size(), devices.size());
    return nonces;
  }

  // Proof: `d`'s proof for `nonce`, signed with `d`'s key.
  static v1::GatewayProveRequest Proof(const TestDevice& d,
                                       const std::string& nonce) {
    v1::GatewayProveRequest p;
    p.set_device_id(d.id);
    p.set_nonce(nonce);
    p.set_chain_pem(d.chain);
    p.set_signature(*d.key.Sign(GatewayAuth::ProofMessage(d.id, nonce)));
    return p;
  }

  // DerProof: Proof with the chain as DER certificates (chain_der).
  static v1::GatewayProveRequest DerProof(const TestDevice& d,
                                          const std::string& nonce) {
    v1::GatewayProveRequest p = Proof(d, nonce);
    p.clear_chain_pem();
    for (const std::string& pem : sphere::crypto::SplitPemChain(d.chain)) {
      p.add_chain_der(*sphere::crypto::CertificatePemToDer(pem));
    }
    return p;
  }

  // ProveBatch: the batch form of Prove on `stub` (default: the gateway's).
  grpc::Status ProveBatch(const v1::GatewayProveBatchRequest& req,
                          v1::GatewayProveBatchResponse* resp,
                          v1::ContosoGateway::Stub* stub = nullptr) {
    grpc::ClientContext ctx;
    return (stub ? stub : gateway_.get())->ProveBatch(&ctx, req, resp);
  }

  std::string dir_;
  TestPki pki_{sphere::Clock::Real()};
  DeviceRegistry& registry_ = pki_.registry();
  const std::string& root_pem_ = pki_.root_pem();
  TestDevice a_, b_;
  std::unique_ptr<sphere::store::MemoryStore> store_;
  std::unique_ptr<sphere::store::GroupCommitWriter> group_;
  std::unique_ptr<SharedGroupCommit> writer_;
  std::unique_ptr<ContosoCloud> cloud_;
  std::unique_ptr<GatewayAuth> auth_;
  std::unique_ptr<sphere::WorkerPool> pool_;
  std::unique_ptr<ContosoGatewayService> service_;
  std::unique_ptr<sphere::rpc::ServerRunner> runner_;
  std::unique_ptr<v1::ContosoGateway::Stub> gateway_;
};

TEST_F(GatewayServiceTest, TwoDevicesOneChannelProveReportAndCount) {
  const std::string ta = Prove(a_);
  const std::string tb = Prove(b_);
  ASSERT_FALSE(ta.empty());
  ASSERT_FALSE(tb.empty());
  v1::ReportTelemetryResponse r;
  ASSERT_TRUE(Report(a_.id, ta, Batch(100, 1), &r).ok());
  EXPECT_EQ(r.accepted(), 100u);
  ASSERT_TRUE(Report(b_.id, tb, Batch(7, 1), &r).ok());
  EXPECT_EQ(r.accepted(), 7u);
  // A resent batch is acknowledged as duplicates and stores nothing new.
  ASSERT_TRUE(Report(a_.id, ta, Batch(100, 1), &r).ok());
  EXPECT_EQ(r.accepted(), 0u);
  EXPECT_EQ(r.duplicates(), 100u);

  grpc::ClientContext ctx;
  v1::CountTelemetryRequest creq;
  for (auto [d, t] : {std::pair{&a_, ta}, std::pair{&b_, tb}}) {
    auto* g = creq.add_devices();
    g->set_device_id(d->id);
    g->set_session_token(t);
  }
  v1::CountTelemetryResponse cresp;
  ASSERT_TRUE(gateway_->CountTelemetry(&ctx, creq, &cresp).ok());
  ASSERT_EQ(cresp.stored_samples_size(), 2);
  EXPECT_EQ(cresp.stored_samples(0), 100u);
  EXPECT_EQ(cresp.stored_samples(1), 7u);
}

TEST_F(GatewayServiceTest, Attack_DeviceOrOperatorCertificateIsNotAGateway) {
  auto op = Stub("platform-operator");
  grpc::ClientContext ctx;
  v1::GatewayChallengeRequest req;
  req.set_device_id(a_.id);
  v1::GatewayChallengeResponse resp;
  grpc::Status s = op->GetChallenge(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(resp.nonce().empty());
  EXPECT_EQ(auth_->outstanding_nonces(), 0u);
}

TEST_F(GatewayServiceTest, Attack_TokenOfAnotherDeviceStoresNothing) {
  const std::string ta = Prove(a_);
  v1::ReportTelemetryResponse r;
  grpc::Status s = Report(b_.id, ta, Batch(5, 1), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << s.error_message();
  EXPECT_EQ(Stored(a_), 0u);
  EXPECT_EQ(Stored(b_), 0u);
}

TEST_F(GatewayServiceTest, Attack_NoTokenOrForgedTokenStoresNothing) {
  v1::ReportTelemetryResponse r;
  grpc::Status s = Report(a_.id, "", Batch(5, 1), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  std::string forged = Prove(a_);
  forged[forged.size() / 2] ^= 1;
  s = Report(a_.id, forged, Batch(5, 1), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << s.error_message();
  EXPECT_EQ(Stored(a_), 0u);
}

TEST_F(GatewayServiceTest, Attack_OversizedTokenRefusedBeforeChecking) {
  v1::ReportTelemetryResponse r;
  grpc::Status s = Report(a_.id, std::string(4096, 'x'), Batch(5, 1), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Stored(a_), 0u);
}

TEST_F(GatewayServiceTest, Attack_RevokedDeviceTokenStopsWorking) {
  const std::string ta = Prove(a_);
  v1::ReportTelemetryResponse r;
  ASSERT_TRUE(Report(a_.id, ta, Batch(3, 1), &r).ok());
  pki_.Revoke(a_);
  grpc::Status s = Report(a_.id, ta, Batch(3, 10), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << s.error_message();
  EXPECT_EQ(Stored(a_), 3u);
}

TEST_F(GatewayServiceTest, Attack_CountOfTooManyDevicesOrWithoutTokens) {
  const std::string ta = Prove(a_);
  v1::CountTelemetryRequest req;
  for (int i = 0; i <= kMaxCountDevices; ++i) {
    auto* g = req.add_devices();
    g->set_device_id(a_.id);
    g->set_session_token(ta);
  }
  grpc::ClientContext c1;
  v1::CountTelemetryResponse resp;
  EXPECT_EQ(gateway_->CountTelemetry(&c1, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.stored_samples_size(), 0);
  req.clear_devices();
  req.add_devices()->set_device_id(b_.id);  // no token for b
  grpc::ClientContext c2;
  EXPECT_EQ(gateway_->CountTelemetry(&c2, req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(resp.stored_samples_size(), 0);
}

TEST_F(GatewayServiceTest, BatchProveGivesEachDeviceItsOwnToken) {
  const std::vector<std::string> nonces = Challenges({&a_, &b_});
  ASSERT_EQ(nonces.size(), 2u);
  EXPECT_EQ(nonces[0].size(), GatewayAuth::kNonceBytes);
  EXPECT_NE(nonces[0], nonces[1]);
  EXPECT_EQ(auth_->outstanding_nonces(), 2u);
  v1::GatewayProveBatchRequest req;
  *req.add_proofs() = Proof(a_, nonces[0]);
  *req.add_proofs() = Proof(b_, nonces[1]);
  v1::GatewayProveBatchResponse resp;
  ASSERT_TRUE(ProveBatch(req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  for (const auto& r : resp.results()) {
    EXPECT_EQ(r.code(), 0) << r.error();
    EXPECT_FALSE(r.session_token().empty());
    EXPECT_GT(r.expires_unix_ms(), absl::ToUnixMillis(absl::Now()));
  }
  EXPECT_EQ(auth_->tokens_issued(), 2u);
  EXPECT_EQ(auth_->outstanding_nonces(), 0u);
  // Each token is its own device's: it works for that device only.
  v1::ReportTelemetryResponse r;
  ASSERT_TRUE(Report(a_.id, resp.results(0).session_token(), Batch(4, 1), &r)
                  .ok());
  ASSERT_TRUE(Report(b_.id, resp.results(1).session_token(), Batch(2, 1), &r)
                  .ok());
  EXPECT_EQ(Report(a_.id, resp.results(1).session_token(), Batch(1, 9), &r)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Stored(a_), 4u);
  EXPECT_EQ(Stored(b_), 2u);
}

TEST_F(GatewayServiceTest, BatchProveTakesDerChainsBesidePemChains) {
  const std::vector<std::string> nonces = Challenges({&a_, &b_});
  ASSERT_EQ(nonces.size(), 2u);
  v1::GatewayProveBatchRequest req;
  *req.add_proofs() = DerProof(a_, nonces[0]);
  *req.add_proofs() = Proof(b_, nonces[1]);
  v1::GatewayProveBatchResponse resp;
  ASSERT_TRUE(ProveBatch(req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  for (const auto& r : resp.results()) {
    EXPECT_EQ(r.code(), 0) << r.error();
    EXPECT_FALSE(r.session_token().empty());
  }
  EXPECT_EQ(auth_->tokens_issued(), 2u);
  v1::ReportTelemetryResponse r;
  ASSERT_TRUE(Report(a_.id, resp.results(0).session_token(), Batch(3, 1), &r)
                  .ok());
  EXPECT_EQ(Stored(a_), 3u);
}

TEST_F(GatewayServiceTest, Attack_DerChainsThatDisagreeOrOverflowAreRefused) {
  const std::vector<std::string> nonces = Challenges({&a_, &b_});
  ASSERT_EQ(nonces.size(), 2u);
  v1::GatewayProveBatchRequest req;
  // a: its DER chain beside b's PEM chain (they disagree).
  v1::GatewayProveRequest both = DerProof(a_, nonces[0]);
  both.set_chain_pem(b_.chain);
  *req.add_proofs() = both;
  // b: five DER certificates (the service passes at most four on).
  v1::GatewayProveRequest many = DerProof(b_, nonces[1]);
  for (int i = 0; i < 3; ++i) many.add_chain_der(many.chain_der(1));
  *req.add_proofs() = many;
  v1::GatewayProveBatchResponse resp;
  ASSERT_TRUE(ProveBatch(req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  for (const auto& r : resp.results()) {
    EXPECT_EQ(r.code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT))
        << r.error();
    EXPECT_TRUE(r.session_token().empty());
  }
  // Refused before the nonce lookup: nothing issued, both nonces usable.
  EXPECT_EQ(auth_->tokens_issued(), 0u);
  EXPECT_EQ(auth_->outstanding_nonces(), 2u);
  v1::GatewayProveBatchRequest good;
  *good.add_proofs() = DerProof(a_, nonces[0]);
  *good.add_proofs() = DerProof(b_, nonces[1]);
  v1::GatewayProveBatchResponse proven;
  ASSERT_TRUE(ProveBatch(good, &proven).ok());
  ASSERT_EQ(proven.results_size(), 2);
  EXPECT_EQ(proven.results(0).code(), 0) << proven.results(0).error();
  EXPECT_EQ(proven.results(1).code(), 0) << proven.results(1).error();
}

TEST_F(GatewayServiceTest, Attack_ForgedProofInABatchRefusesThatItemOnly) {
  const std::vector<std::string> nonces = Challenges({&a_, &b_});
  v1::GatewayProveBatchRequest req;
  *req.add_proofs() = Proof(a_, nonces[0]);
  // b's proof signed by another key (a's): b's certificate key did not sign.
  v1::GatewayProveRequest forged = Proof(b_, nonces[1]);
  forged.set_signature(*a_.key.Sign(GatewayAuth::ProofMessage(b_.id, nonces[1])));
  *req.add_proofs() = forged;
  v1::GatewayProveBatchResponse resp;
  ASSERT_TRUE(ProveBatch(req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).error();
  EXPECT_FALSE(resp.results(0).session_token().empty());
  EXPECT_EQ(resp.results(1).code(),
            static_cast<int>(absl::StatusCode::kUnauthenticated));
  EXPECT_NE(resp.results(1).error().find("proof signature"), std::string::npos)
      << resp.results(1).error();
  EXPECT_TRUE(resp.results(1).session_token().empty());
  EXPECT_EQ(resp.results(1).expires_unix_ms(), 0);
  // Nothing recorded for b: one token issued (a's), b's nonce is used up.
  EXPECT_EQ(auth_->tokens_issued(), 1u);
  EXPECT_EQ(auth_->outstanding_nonces(), 0u);
  EXPECT_EQ(Stored(b_), 0u);
}

TEST_F(GatewayServiceTest, Attack_ReplayedChallengeInABatchIsRefused) {
  const std::vector<std::string> nonces = Challenges({&a_});
  v1::GatewayProveBatchRequest req;
  *req.add_proofs() = Proof(a_, nonces[0]);
  *req.add_proofs() = Proof(a_, nonces[0]);  // the same proof twice
  v1::GatewayProveBatchResponse resp;
  ASSERT_TRUE(ProveBatch(req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).error();
  EXPECT_EQ(resp.results(1).code(),
            static_cast<int>(absl::StatusCode::kUnauthenticated));
  EXPECT_TRUE(resp.results(1).session_token().empty());
  // The whole batch replayed later: refused, nothing new issued.
  v1::GatewayProveBatchResponse again;
  ASSERT_TRUE(ProveBatch(req, &again).ok());
  ASSERT_EQ(again.results_size(), 2);
  for (const auto& r : again.results()) {
    EXPECT_EQ(r.code(), static_cast<int>(absl::StatusCode::kUnauthenticated));
    EXPECT_TRUE(r.session_token().empty());
  }
  EXPECT_EQ(auth_->tokens_issued(), 1u);
  EXPECT_EQ(auth_->outstanding_nonces(), 0u);
}

TEST_F(GatewayServiceTest, Attack_RevokedDeviceInABatchIsRefusedOthersProve) {
  const std::vector<std::string> nonces = Challenges({&a_, &b_});
  pki_.Revoke(b_);
  v1::GatewayProveBatchRequest req;
  *req.add_proofs() = Proof(a_, nonces[0]);
  *req.add_proofs() = Proof(b_, nonces[1]);
  v1::GatewayProveBatchResponse resp;
  ASSERT_TRUE(ProveBatch(req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).error();
  EXPECT_EQ(resp.results(1).code(),
            static_cast<int>(absl::StatusCode::kPermissionDenied))
      << resp.results(1).error();
  EXPECT_TRUE(resp.results(1).session_token().empty());
  EXPECT_EQ(auth_->tokens_issued(), 1u);
}

TEST_F(GatewayServiceTest, Attack_BatchOverItsLimitsIsRefusedWhole) {
  // Too many devices: refused before any nonce is made or used.
  v1::GatewayChallengesRequest creq;
  for (int i = 0; i <= kMaxProveBatch; ++i) creq.add_device_ids(a_.id);
  grpc::ClientContext c1;
  v1::GatewayChallengesResponse cresp;
  EXPECT_EQ(gateway_->GetChallenges(&c1, creq, &cresp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(cresp.results_size(), 0);
  EXPECT_EQ(auth_->outstanding_nonces(), 0u);

  const std::vector<std::string> nonces = Challenges({&a_});
  v1::GatewayProveBatchRequest req;
  for (int i = 0; i <= kMaxProveBatch; ++i) {
    *req.add_proofs() = Proof(a_, nonces[0]);
  }
  v1::GatewayProveBatchResponse resp;
  EXPECT_EQ(ProveBatch(req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.results_size(), 0);
  EXPECT_EQ(auth_->outstanding_nonces(), 1u);  // a's nonce is still unused
  // An empty batch is malformed too.
  v1::GatewayProveBatchRequest empty;
  EXPECT_EQ(ProveBatch(empty, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // One oversized chain refuses that item before its nonce is touched.
  v1::GatewayProveBatchRequest big;
  v1::GatewayProveRequest p = Proof(a_, nonces[0]);
  p.set_chain_pem(std::string(9 * 1024, 'x'));
  *big.add_proofs() = p;
  ASSERT_TRUE(ProveBatch(big, &resp).ok());
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(auth_->outstanding_nonces(), 1u);
  // A request over the batch byte limit: refused whole, nonce untouched.
  v1::GatewayProveBatchRequest huge;
  for (int i = 0; i < 80; ++i) {
    v1::GatewayProveRequest q = Proof(a_, nonces[0]);
    q.set_chain_pem(std::string(8 * 1024, 'x'));
    *huge.add_proofs() = q;
  }
  v1::GatewayProveBatchResponse hresp;
  EXPECT_EQ(ProveBatch(huge, &hresp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(hresp.results_size(), 0);
  EXPECT_EQ(auth_->outstanding_nonces(), 1u);
  EXPECT_EQ(auth_->tokens_issued(), 0u);
}

TEST_F(GatewayServiceTest, Attack_BatchFormsNeedAGatewayCertificate) {
  auto op = Stub("platform-operator");
  grpc::ClientContext c1;
  v1::GatewayChallengesRequest creq;
  creq.add_device_ids(a_.id);
  v1::GatewayChallengesResponse cresp;
  EXPECT_EQ(op->GetChallenges(&c1, creq, &cresp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(auth_->outstanding_nonces(), 0u);
  const std::vector<std::string> nonces = Challenges({&a_});
  v1::GatewayProveBatchRequest req;
  *req.add_proofs() = Proof(a_, nonces[0]);
  v1::GatewayProveBatchResponse resp;
  EXPECT_EQ(ProveBatch(req, &resp, op.get()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(resp.results_size(), 0);
  EXPECT_EQ(auth_->outstanding_nonces(), 1u);
  EXPECT_EQ(auth_->tokens_issued(), 0u);
}

TEST_F(GatewayServiceTest, TelemetryBatchStoresEachDeviceUnderItsOwnToken) {
  const std::string ta = Prove(a_);
  const std::string tb = Prove(b_);
  v1::GatewayTelemetryBatchRequest req;
  AddItem(&req, a_, ta, Batch(100, 1));
  AddItem(&req, b_, tb, Batch(7, 1));
  v1::GatewayTelemetryBatchResponse resp;
  ASSERT_TRUE(ReportBatch(req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).error();
  EXPECT_EQ(resp.results(0).response().accepted(), 100u);
  EXPECT_EQ(resp.results(1).response().accepted(), 7u);
  EXPECT_EQ(Stored(a_), 100u);
  EXPECT_EQ(Stored(b_), 7u);
}

TEST_F(GatewayServiceTest, Attack_ForgedTokenInATelemetryBatchStoresNothingForIt) {
  const std::string ta = Prove(a_);
  std::string forged = Prove(b_);
  forged[forged.size() / 2] ^= 1;
  v1::GatewayTelemetryBatchRequest req;
  AddItem(&req, a_, ta, Batch(5, 1));
  AddItem(&req, b_, forged, Batch(5, 1));  // b's id with a forged token
  AddItem(&req, b_, ta, Batch(5, 1));      // b's id under a's genuine token
  v1::GatewayTelemetryBatchResponse resp;
  ASSERT_TRUE(ReportBatch(req, &resp).ok());
  ASSERT_EQ(resp.results_size(), 3);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).error();
  EXPECT_EQ(resp.results(1).code(),
            static_cast<int>(absl::StatusCode::kUnauthenticated))
      << resp.results(1).error();
  EXPECT_EQ(resp.results(2).code(),
            static_cast<int>(absl::StatusCode::kPermissionDenied))
      << resp.results(2).error();
  EXPECT_FALSE(resp.results(1).has_response());
  EXPECT_EQ(Stored(a_), 5u);
  EXPECT_EQ(Stored(b_), 0u);
}

TEST_F(GatewayServiceTest, Attack_TelemetryBatchOverItsLimitsIsRefusedWhole) {
  const std::string ta = Prove(a_);
  v1::GatewayTelemetryBatchRequest req;
  for (int i = 0; i <= kMaxTelemetryBatchDevices; ++i) {
    AddItem(&req, a_, ta, Batch(1, i + 1));
  }
  v1::GatewayTelemetryBatchResponse resp;
  EXPECT_EQ(ReportBatch(req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.results_size(), 0);
  // Over the byte limit (16 devices x 1000 samples): refused whole.
  v1::GatewayTelemetryBatchRequest big;
  for (int i = 0; i < 16; ++i) AddItem(&big, a_, ta, Batch(1000, 1 + 1000 * i));
  ASSERT_GT(big.ByteSizeLong(), kMaxTelemetryBatchBytes);
  EXPECT_EQ(ReportBatch(big, &resp).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // A gateway certificate is required.
  auto op = Stub("platform-operator");
  req.mutable_items()->DeleteSubrange(1, req.items_size() - 1);
  EXPECT_EQ(ReportBatch(req, &resp, op.get()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Stored(a_), 0u);
}

TEST(GatewayKeyFile, CreatedOnce0600ThenReused) {
  const std::string path = ::testing::TempDir() + "/gw-key-file";
  ::unlink(path.c_str());
  auto k1 = LoadOrCreateGatewayKey(path);
  ASSERT_TRUE(k1.ok()) << k1.status();
  EXPECT_EQ(k1->size(), 32u);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto k2 = LoadOrCreateGatewayKey(path);
  ASSERT_TRUE(k2.ok());
  EXPECT_EQ(*k1, *k2);
}

TEST(GatewayKeyFile, Fault_WrongSizeRefusedNotReplaced) {
  const std::string path = ::testing::TempDir() + "/gw-key-short";
  ASSERT_TRUE(sphere::util::WriteFile(path, "short", 0600).ok());
  auto k = LoadOrCreateGatewayKey(path);
  EXPECT_EQ(k.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*sphere::util::ReadFile(path), "short");
}

}  // namespace
}  // namespace contoso::appsvc
