// DeviceCallHandler over real mTLS: a probe service (the AttestationService
// proto, answering GetChallenge with the authenticated device id) uses the
// in-process shard's handler with each DeviceAccess, and callers come by
// every path: device certificate, gateway + session token, and the wrong
// credentials.
#include "securitysvc/shard_server/device_call.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "protos/attestation.grpc.pb.h"
#include "securitysvc/shard_server/test_platform.h"

namespace sphere::shard {
namespace {

// ProbeService: GetChallenge answers with the device id the handler
// established (in `nonce`); the request's min_catalog_revision picks the
// access (0 kDevice, 1 kFullScope, 2 kAttest).
class ProbeService final : public v1::AttestationService::CallbackService {
 public:
  explicit ProbeService(const DeviceCallHandler* calls) : calls_(calls) {}
  grpc::ServerUnaryReactor* GetChallenge(
      grpc::CallbackServerContext* ctx, const v1::GetChallengeRequest* req,
      v1::GetChallengeResponse* resp) override {
    static const DeviceMethod* device =
        new DeviceMethod("probe_device", DeviceAccess::kDevice,
                         "sphere_test_probe_device_seconds");
    static const DeviceMethod* full =
        new DeviceMethod("probe_full", DeviceAccess::kFullScope,
                         "sphere_test_probe_full_seconds");
    static const DeviceMethod* attest =
        new DeviceMethod("probe_attest", DeviceAccess::kAttest,
                         "sphere_test_probe_attest_seconds");
    const DeviceMethod* m = req->min_catalog_revision() == 0   ? device
                            : req->min_catalog_revision() == 1 ? full
                                                               : attest;
    return calls_->Unary(ctx, *m, req->device_id(),
                         [&](const DeviceCall& call) {
                           resp->set_nonce(call.device_id);
                           return absl::OkStatus();
                         });
  }

 private:
  const DeviceCallHandler* const calls_;
};

class DeviceCallTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto* s = new Shared;
    g_ = s;
    ASSERT_TRUE(s->platform.Start({}).ok());
    auto d = s->platform.NewDevice("device-call-test-device");
    ASSERT_TRUE(d.ok()) << d.status();
    s->device = *std::move(d);
    auto other = s->platform.NewDevice("device-call-test-other");
    ASSERT_TRUE(other.ok()) << other.status();
    s->other = *std::move(other);
    s->probe = std::make_unique<ProbeService>(
        s->platform.server().context().device_calls);
    rpc::ServerOptions o;
    o.tls = s->platform.server_tls();
    s->runner = std::make_unique<rpc::ServerRunner>(o);
    s->runner->AddService(s->probe.get());
    ASSERT_TRUE(s->runner->Start().ok());
  }
  static void TearDownTestSuite() {
    g_->runner->Shutdown(absl::Seconds(5));
    delete g_;
    g_ = nullptr;
  }

  // DeviceCert: a device certificate as attestation issues it.
  rpc::TlsFiles DeviceCert(const mcu::Device& d, const std::string& scope) {
    return g_->platform.DeviceTls(d, scope);
  }
  std::string SessionToken(const mcu::Device& d, auth::Scope scope) {
    return g_->platform.SessionToken(d, scope);
  }
  // Probe calls the probe with `access` (0 device, 1 full, 2 attest).
  grpc::Status Probe(const rpc::TlsFiles& tls, int access,
                     const std::string& device_id, const std::string& token,
                     std::string* who) {
    auto stub = v1::AttestationService::NewStub(
        rpc::NewChannel(g_->runner->address(), tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    if (!token.empty()) ctx.AddMetadata(auth::kSessionTokenMetadata, token);
    v1::GetChallengeRequest req;
    req.set_device_id(device_id);
    req.set_min_catalog_revision(access);
    v1::GetChallengeResponse resp;
    grpc::Status st = stub->GetChallenge(&ctx, req, &resp);
    *who = resp.nonce();
    return st;
  }

  struct Shared {
    TestPlatform platform;
    std::unique_ptr<mcu::Device> device, other;
    std::unique_ptr<ProbeService> probe;
    std::unique_ptr<rpc::ServerRunner> runner;
  };
  static Shared* g_;
};
DeviceCallTest::Shared* DeviceCallTest::g_ = nullptr;

TEST_F(DeviceCallTest, DeviceCertificateIdentifiesTheDevice) {
  std::string who;
  grpc::Status st = Probe(DeviceCert(*g_->device, "full"), 1, "", "", &who);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(who, g_->device->device_id());
  st = Probe(DeviceCert(*g_->device, "full"), 1, g_->device->device_id(), "",
             &who);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(who, g_->device->device_id());
}

TEST_F(DeviceCallTest, GatewayWithSessionTokenIsTheSameIdentity) {
  std::string who;
  grpc::Status st = Probe(g_->platform.gateway_tls(), 1, "",
                          SessionToken(*g_->device, auth::Scope::kFull), &who);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(who, g_->device->device_id());
}

TEST_F(DeviceCallTest, Attack_GatewayWithoutSessionTokenIsRefused) {
  std::string who;
  grpc::Status st =
      Probe(g_->platform.gateway_tls(), 0, g_->device->device_id(), "", &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "session token"))
      << st.error_message();
  EXPECT_TRUE(who.empty());
}

TEST_F(DeviceCallTest, Attack_RequestNamingAnotherDeviceIsRefused) {
  std::string who;
  grpc::Status st = Probe(DeviceCert(*g_->device, "full"), 0,
                          g_->other->device_id(), "", &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "acts only for itself"))
      << st.error_message();
  EXPECT_TRUE(who.empty());
  // The same through a gateway: the token decides, not the field.
  st = Probe(g_->platform.gateway_tls(), 0, g_->other->device_id(),
             SessionToken(*g_->device, auth::Scope::kFull), &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(who.empty());
}

TEST_F(DeviceCallTest, Attack_UpdateOnlyCertificateOnFullScopeMethod) {
  std::string who;
  grpc::Status st =
      Probe(DeviceCert(*g_->device, "update-only"), 1, "", "", &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "update-only"))
      << st.error_message();
  EXPECT_TRUE(who.empty());
  // The update-only scope is enough where the method accepts it.
  st = Probe(DeviceCert(*g_->device, "update-only"), 0, "", "", &who);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(who, g_->device->device_id());
}

TEST_F(DeviceCallTest, Attack_ManufacturingCertificateOnlyAttests) {
  std::string who;
  auto mfg = g_->platform.ManufacturingTls(*g_->device);
  grpc::Status st = Probe(mfg, 0, "", "", &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(who.empty());
  st = Probe(mfg, 2, "", "", &who);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(who, g_->device->device_id());
}

TEST_F(DeviceCallTest, Attack_OversizedDeviceIdIsRefusedUnechoed) {
  std::string who;
  grpc::Status st = Probe(DeviceCert(*g_->device, "full"), 0,
                          std::string(100000, 'f'), "", &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(st.error_message().size(), 200u);
  EXPECT_TRUE(who.empty());
}

TEST_F(DeviceCallTest, Attack_RevokedDeviceCredentialIsRefused) {
  auto rec = g_->platform.catalog().GetDevice(g_->other->device_id());
  ASSERT_TRUE(rec.ok());
  v1::Device revoked = *rec;
  revoked.set_state(v1::REVOKED);
  g_->platform.catalog().PutDevice(revoked);
  std::string who;
  grpc::Status st = Probe(DeviceCert(*g_->other, "full"), 0, "", "", &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "revoked"))
      << st.error_message();
  EXPECT_TRUE(who.empty());
  g_->platform.catalog().PutDevice(*rec);
}

// The parsed peer certificate is cached per certificate; what the credential
// is worth is not: a certificate accepted a moment ago (its parse cached) is
// refused on the very next call once the device is revoked or changes
// owner, and nothing about the device changed on the refusal.
TEST_F(DeviceCallTest, Attack_CachedCertificateIsRefusedAtOnceAfterRevocation) {
  const rpc::TlsFiles tls = DeviceCert(*g_->other, "full");
  std::string who;
  grpc::Status st = Probe(tls, 0, "", "", &who);
  ASSERT_TRUE(st.ok()) << st.error_message();
  st = Probe(tls, 0, "", "", &who);  // served from the cache
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(who, g_->other->device_id());
  auto rec = g_->platform.catalog().GetDevice(g_->other->device_id());
  ASSERT_TRUE(rec.ok());
  v1::Device revoked = *rec;
  revoked.set_state(v1::REVOKED);
  g_->platform.catalog().PutDevice(revoked);
  who.clear();
  st = Probe(tls, 0, "", "", &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "revoked"))
      << st.error_message();
  EXPECT_TRUE(who.empty());
  auto after = g_->platform.catalog().GetDevice(g_->other->device_id());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->SerializeAsString(), revoked.SerializeAsString());
  // A new owner epoch voids the cached certificate too.
  v1::Device moved = *rec;
  moved.set_ownership_epoch(rec->ownership_epoch() + 1);
  g_->platform.catalog().PutDevice(moved);
  st = Probe(tls, 0, "", "", &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(who.empty());
  g_->platform.catalog().PutDevice(*rec);
  st = Probe(tls, 0, "", "", &who);  // restored: accepted again
  EXPECT_TRUE(st.ok()) << st.error_message();
}

}  // namespace
}  // namespace sphere::shard
