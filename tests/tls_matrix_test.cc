// TLS negative matrix (issue 8): one named test per bad client credential,
// each against live servers of a real local cluster (management + 1 shard,
// separate processes) or a live relying party, each asserting the specific
// gRPC code and that nothing changed.
//
// The relying party is the reference Contoso-cloud shape (DESIGN.md §4):
// a ContosoCloud server on rpc::ServerRunner with the cluster's service
// certificate, authenticating devices with auth::DeviceAuthenticator over a
// catalog it follows from the live management (CatalogFollower), and
// requiring a full-scope certificate (auth::RequireFullScope) for telemetry.
//
// Bad certificates are minted here with common/crypto: signed by the
// cluster's platform root (DIR/pki/root.key) where the test needs a
// chain gRPC accepts, or by a foreign CA / self-signed where it must not.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/contoso.grpc.pb.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/auth/device_authenticator.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_follower.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/pki/pki.h"
#include "tests/cluster_fixture.h"

namespace sphere::testing {
namespace {

// RelyingParty: ReportTelemetry only for authenticated, unrevoked devices
// with a full-scope certificate; counts what it accepted.
class RelyingParty final
    : public ::contoso::v1::DeviceGateway::CallbackService {
 public:
  explicit RelyingParty(const auth::DeviceAuthenticator* auth) : auth_(auth) {}

  grpc::ServerUnaryReactor* ReportTelemetry(
      grpc::CallbackServerContext* ctx,
      const ::contoso::v1::ReportTelemetryRequest* req,
      ::contoso::v1::ReportTelemetryResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    absl::StatusOr<auth::DeviceContext> device = auth_->FromCall(*ctx);
    absl::Status s =
        device.ok() ? auth::RequireFullScope(*device) : device.status();
    if (s.ok()) {
      absl::MutexLock l(&mu_);
      accepted_ += req->samples_size();
      resp->set_accepted(req->samples_size());
    }
    reactor->Finish(rpc::ToGrpcStatus(s));
    return reactor;
  }
  int accepted() {
    absl::MutexLock l(&mu_);
    return accepted_;
  }

 private:
  const auth::DeviceAuthenticator* const auth_;
  absl::Mutex mu_;
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
};

struct Device {
  crypto::EcPrivateKey key;
  std::string id;
  uint32_t epoch = 0;
};

class TlsMatrixTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start("tls-matrix", 1);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    auto pki = pki::Load(cluster_->dir());
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new pki::ClusterPki(*pki);
    auto tenant = cluster_->CreateTenant("Contoso");
    ASSERT_TRUE(tenant.ok()) << tenant.status();
    tenant_id_ = new std::string(tenant->id());
    good_ = new Device(NewClaimedDevice());
    revoked_ = new Device(NewClaimedDevice());
    ASSERT_TRUE(cluster_->Revoke(*tenant_id_, revoked_->id).ok());

    // The relying party follows the live catalog with the shard credential.
    catalog_ = new catalog::InMemoryCatalog(pki_->master_key);
    auto shard_tls = pki_->TlsFor("shard");
    ASSERT_TRUE(shard_tls.ok());
    follower_ = new catalog::CatalogFollower(
        rpc::NewChannel(cluster_->config().management, *shard_tls), catalog_,
        [](const v1::ShardMap&) {});
    follower_->Start();
    auto revision = cluster_->ManagementRevision();
    ASSERT_TRUE(revision.ok());
    ASSERT_TRUE(follower_->WaitForRevision(*revision, absl::Seconds(30)));
    tokens_ = new auth::SessionTokens(pki_->SessionTokenKey());
    authenticator_ =
        new auth::DeviceAuthenticator(tokens_, catalog_, Clock::Real());
    relying_party_ = new RelyingParty(authenticator_);
    rpc::ServerOptions options;
    auto server_tls = pki_->TlsFor("server");
    ASSERT_TRUE(server_tls.ok());
    options.tls = *server_tls;
    runner_ = new rpc::ServerRunner(options);
    runner_->AddService(relying_party_);
    ASSERT_TRUE(runner_->Start().ok());
  }
  static void TearDownTestSuite() {
    if (runner_) runner_->Shutdown(absl::Seconds(1));
    delete runner_;
    delete relying_party_;
    delete authenticator_;
    delete tokens_;
    if (follower_) follower_->Stop();
    delete follower_;
    delete catalog_;
    delete good_;
    delete revoked_;
    delete tenant_id_;
    delete pki_;
    delete cluster_;
  }

  static Device NewClaimedDevice() {
    Device d;
    d.key = crypto::EcPrivateKey::Generate();
    d.id = crypto::HexEncode(crypto::Sha256(d.key.PublicKey()));
    EXPECT_TRUE(cluster_->ImportDevice(d.key.PublicKey()).ok());
    EXPECT_TRUE(cluster_->Claim(*tenant_id_, d.id).ok());
    auto device = cluster_->GetDevice(*tenant_id_, d.id);
    EXPECT_TRUE(device.ok()) << device.status();
    if (device.ok()) d.epoch = device->ownership_epoch();
    return d;
  }

  // Spec for a client certificate valid now, with `claims`.
  static crypto::CertificateSpec ClientSpec(
      const crypto::EcPrivateKey& key, const crypto::DeviceClaims& claims) {
    crypto::CertificateSpec spec;
    spec.common_name = "tls-matrix client";
    spec.subject_public_key = key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(1);
    spec.usage = crypto::KeyUsage::kClientAuth;
    spec.claims = claims;
    return spec;
  }
  static crypto::DeviceClaims OperatorClaims() {
    crypto::DeviceClaims c;
    c.scope = "platform-operator";
    return c;
  }
  static crypto::DeviceClaims DeviceClaimsFor(const Device& d,
                                              const std::string& scope) {
    crypto::DeviceClaims c;
    c.device_id = d.id;
    c.tenant_id = *tenant_id_;
    c.scope = scope;
    c.epoch = absl::StrCat(d.epoch);
    return c;
  }
  // Mint signs `spec` with the platform root (a chain gRPC accepts).
  static rpc::TlsFiles Mint(const crypto::CertificateSpec& spec,
                            const crypto::EcPrivateKey& key) {
    auto pem = crypto::IssueCertificate(spec, pki_->root_key, pki_->root_pem);
    EXPECT_TRUE(pem.ok()) << pem.status();
    return {pem.ok() ? *pem : "", key.ToPem(), pki_->root_pem};
  }

  // State is what the attacks must not change: tenants and Contoso's devices.
  static std::string State() {
    std::string out;
    auto tenants = UnaryCall<v1::ListTenantsResponse>(
        [&](auto* c, auto& r, auto* o) {
          return cluster_->management()->ListTenants(c, r, o);
        },
        v1::ListTenantsRequest());
    EXPECT_TRUE(tenants.ok());
    if (tenants.ok()) absl::StrAppend(&out, tenants->SerializeAsString());
    v1::ListDevicesRequest req;
    req.set_tenant_id(*tenant_id_);
    auto devices = UnaryCall<v1::ListDevicesResponse>(
        [&](auto* c, auto& r, auto* o) {
          return cluster_->management()->ListDevices(c, r, o);
        },
        req);
    EXPECT_TRUE(devices.ok());
    if (devices.ok()) absl::StrAppend(&out, devices->SerializeAsString());
    return out;
  }

  // CreateTenant as `tls` against live management (fail fast: a refused
  // handshake is UNAVAILABLE at once).
  static grpc::Status CreateTenantAs(const rpc::TlsFiles& tls,
                                     const std::string& name) {
    auto stub = v1::ManagementService::NewStub(
        rpc::NewChannel(cluster_->config().management, tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::CreateTenantRequest req;
    req.set_name(name);
    v1::Tenant t;
    return stub->CreateTenant(&ctx, req, &t);
  }
  static grpc::Status ReportTelemetryAs(const rpc::TlsFiles& tls) {
    auto stub = ::contoso::v1::DeviceGateway::NewStub(
        rpc::NewChannel(runner_->address(), tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    ::contoso::v1::ReportTelemetryRequest req;
    req.add_samples()->set_drying_temperature_c(70);
    ::contoso::v1::ReportTelemetryResponse resp;
    return stub->ReportTelemetry(&ctx, req, &resp);
  }

  // ExpectHandshakeRefused: management refuses the TLS handshake
  // (UNAVAILABLE) and nothing changed.
  static void ExpectHandshakeRefused(const rpc::TlsFiles& tls,
                                     const std::string& tenant) {
    const std::string before = State();
    grpc::Status st = CreateTenantAs(tls, tenant);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE)
        << st.error_message();
    EXPECT_EQ(State(), before);
    // The relying party refuses it the same way, accepting nothing.
    const int accepted = relying_party_->accepted();
    grpc::Status rp = ReportTelemetryAs(tls);
    EXPECT_EQ(rp.error_code(), grpc::StatusCode::UNAVAILABLE)
        << rp.error_message();
    EXPECT_EQ(relying_party_->accepted(), accepted);
  }

  static LocalCluster* cluster_;
  static pki::ClusterPki* pki_;
  static std::string* tenant_id_;
  static Device* good_;
  static Device* revoked_;
  static catalog::InMemoryCatalog* catalog_;
  static catalog::CatalogFollower* follower_;
  static auth::SessionTokens* tokens_;
  static auth::DeviceAuthenticator* authenticator_;
  static RelyingParty* relying_party_;
  static rpc::ServerRunner* runner_;
};

LocalCluster* TlsMatrixTest::cluster_ = nullptr;
pki::ClusterPki* TlsMatrixTest::pki_ = nullptr;
std::string* TlsMatrixTest::tenant_id_ = nullptr;
Device* TlsMatrixTest::good_ = nullptr;
Device* TlsMatrixTest::revoked_ = nullptr;
catalog::InMemoryCatalog* TlsMatrixTest::catalog_ = nullptr;
catalog::CatalogFollower* TlsMatrixTest::follower_ = nullptr;
auth::SessionTokens* TlsMatrixTest::tokens_ = nullptr;
auth::DeviceAuthenticator* TlsMatrixTest::authenticator_ = nullptr;
RelyingParty* TlsMatrixTest::relying_party_ = nullptr;
rpc::ServerRunner* TlsMatrixTest::runner_ = nullptr;

// Positive controls: the minted credentials are accepted when nothing is
// wrong with them, so every refusal below is due to the one defect.
TEST_F(TlsMatrixTest, ControlValidCredentialsAreAccepted) {
  auto key = crypto::EcPrivateKey::Generate();
  grpc::Status op =
      CreateTenantAs(Mint(ClientSpec(key, OperatorClaims()), key), "Control");
  EXPECT_TRUE(op.ok()) << op.error_message();
  const int accepted = relying_party_->accepted();
  grpc::Status dev = ReportTelemetryAs(Mint(
      ClientSpec(good_->key, DeviceClaimsFor(*good_, "full")), good_->key));
  EXPECT_TRUE(dev.ok()) << dev.error_message();
  EXPECT_EQ(relying_party_->accepted(), accepted + 1);
}

TEST_F(TlsMatrixTest, Attack_ExpiredClientCertificate) {
  auto key = crypto::EcPrivateKey::Generate();
  auto spec = ClientSpec(key, OperatorClaims());
  spec.not_before = absl::Now() - absl::Hours(48);
  spec.not_after = absl::Now() - absl::Hours(24);
  ExpectHandshakeRefused(Mint(spec, key), "Evil-expired");
}

TEST_F(TlsMatrixTest, Attack_NotYetValidClientCertificate) {
  auto key = crypto::EcPrivateKey::Generate();
  auto spec = ClientSpec(key, OperatorClaims());
  spec.not_before = absl::Now() + absl::Hours(24);
  spec.not_after = absl::Now() + absl::Hours(48);
  ExpectHandshakeRefused(Mint(spec, key), "Evil-future");
}

TEST_F(TlsMatrixTest, Attack_WrongIssuerClientCertificate) {
  // A CA of the attacker's own, shaped exactly like the platform root.
  auto evil_root_key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec root;
  root.common_name = "Sphere Platform Root CA";
  root.organization = "Sphere Platform";
  root.subject_public_key = evil_root_key.PublicKey();
  root.not_before = absl::Now() - absl::Hours(1);
  root.not_after = absl::Now() + absl::Hours(24);
  root.usage = crypto::KeyUsage::kCa;
  auto evil_root = crypto::IssueCertificate(root, evil_root_key, "");
  ASSERT_TRUE(evil_root.ok());
  auto key = crypto::EcPrivateKey::Generate();
  auto pem = crypto::IssueCertificate(ClientSpec(key, OperatorClaims()),
                                      evil_root_key, *evil_root);
  ASSERT_TRUE(pem.ok());
  ExpectHandshakeRefused({*pem + *evil_root, key.ToPem(), pki_->root_pem},
                         "Evil-issuer");
}

TEST_F(TlsMatrixTest, Attack_SelfSignedClientCertificate) {
  auto key = crypto::EcPrivateKey::Generate();
  auto pem =
      crypto::IssueCertificate(ClientSpec(key, OperatorClaims()), key, "");
  ASSERT_TRUE(pem.ok());
  ExpectHandshakeRefused({*pem, key.ToPem(), pki_->root_pem},
                         "Evil-selfsigned");
}

TEST_F(TlsMatrixTest, Attack_WrongKeyUsageServerCertificateAsClient) {
  // The cluster's own service certificate (EKU serverAuth only), used as a
  // client credential: whoever steals a server key cannot call as a client.
  auto server = pki_->TlsFor("server");
  ASSERT_TRUE(server.ok());
  ExpectHandshakeRefused(*server, "Evil-serverauth");
}

TEST_F(TlsMatrixTest, Attack_WrongKeyUsageServerOnlyOperatorCertificate) {
  // Operator claims, platform-signed, but issued for serverAuth only.
  auto key = crypto::EcPrivateKey::Generate();
  auto spec = ClientSpec(key, OperatorClaims());
  spec.usage = crypto::KeyUsage::kServerAuth;
  ExpectHandshakeRefused(Mint(spec, key), "Evil-eku");
}

TEST_F(TlsMatrixTest, Attack_RevokedDeviceCertificate) {
  // The certificate itself is valid (platform-signed, in date): only the
  // revocation in the catalog stands between it and the services.
  rpc::TlsFiles tls =
      Mint(ClientSpec(revoked_->key, DeviceClaimsFor(*revoked_, "full")),
           revoked_->key);
  const std::string before = State();
  // The shard refuses it a challenge.
  auto revision = cluster_->ManagementRevision();
  ASSERT_TRUE(revision.ok());
  auto shard = cluster_->ShardStub(0, tls);
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  v1::GetChallengeRequest req;
  req.set_device_id(revoked_->id);
  req.set_min_catalog_revision(*revision);
  v1::GetChallengeResponse challenge;
  grpc::Status st = shard->GetChallenge(&ctx, req, &challenge);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "revoked"))
      << st.error_message();
  EXPECT_TRUE(challenge.nonce().empty());
  // The relying party refuses its telemetry.
  const int accepted = relying_party_->accepted();
  grpc::Status rp = ReportTelemetryAs(tls);
  EXPECT_EQ(rp.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << rp.error_message();
  EXPECT_TRUE(absl::StrContains(rp.error_message(), "revoked"));
  EXPECT_EQ(relying_party_->accepted(), accepted);
  EXPECT_EQ(State(), before);
}

TEST_F(TlsMatrixTest, Attack_UpdateOnlyCertificateOnFullScopeMethod) {
  rpc::TlsFiles tls =
      Mint(ClientSpec(good_->key, DeviceClaimsFor(*good_, "update-only")),
           good_->key);
  const int accepted = relying_party_->accepted();
  const std::string before = State();
  grpc::Status rp = ReportTelemetryAs(tls);
  EXPECT_EQ(rp.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << rp.error_message();
  EXPECT_TRUE(absl::StrContains(rp.error_message(), "update-only"))
      << rp.error_message();
  EXPECT_EQ(relying_party_->accepted(), accepted);
  EXPECT_EQ(State(), before);
}

TEST_F(TlsMatrixTest, Attack_DeviceCertificateOnManagementMethod) {
  rpc::TlsFiles tls =
      Mint(ClientSpec(good_->key, DeviceClaimsFor(*good_, "full")), good_->key);
  const std::string before = State();
  grpc::Status st = CreateTenantAs(tls, "Evil-device");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "device certificates"))
      << st.error_message();
  EXPECT_EQ(State(), before);
}

}  // namespace
}  // namespace sphere::testing
