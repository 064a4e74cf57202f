#include "securitysvc/auth/device_authenticator.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::auth {
namespace {

constexpr char kDevice[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

class DeviceAuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    v1::Device d;
    d.set_id(kDevice);
    d.set_tenant_id("tenant-a");
    d.set_state(v1::CLAIMED);
    catalog_.PutDevice(d);
  }

  crypto::ParsedCertificate DeviceCert(const std::string& tenant,
                                       const std::string& scope,
                                       absl::Duration lifetime) {
    crypto::ParsedCertificate c;
    c.claims.device_id = kDevice;
    c.claims.tenant_id = tenant;
    c.claims.scope = scope;
    c.serial_hex = "01";
    c.not_after = clock_.Now() + lifetime;
    return c;
  }
  crypto::ParsedCertificate GatewayCert() {
    crypto::ParsedCertificate c;
    c.claims.scope = "gateway";
    c.not_after = clock_.Now() + absl::Hours(1);
    return c;
  }
  DeviceContext Ctx(const std::string& tenant) {
    DeviceContext ctx;
    ctx.device_id = kDevice;
    ctx.tenant_id = tenant;
    ctx.scope = Scope::kFull;
    ctx.certificate_serial = "01";
    ctx.not_after = clock_.Now() + absl::Hours(24);
    return ctx;
  }

  FakeClock clock_;
  catalog::InMemoryCatalog catalog_{std::string(32, 'k')};
  SessionTokens tokens_{std::string(32, 't')};
  DeviceAuthenticator auth_{&tokens_, &catalog_, &clock_};
};

TEST_F(DeviceAuthenticatorTest, DirectAndGatewayPathsYieldTheSameContext) {
  auto cert = DeviceCert("tenant-a", "full", absl::Hours(24));
  auto direct = auth_.Authenticate(&cert, "");
  ASSERT_TRUE(direct.ok()) << direct.status();
  auto gw = GatewayCert();
  auto via_gateway = auth_.Authenticate(&gw, tokens_.Issue(Ctx("tenant-a")));
  ASSERT_TRUE(via_gateway.ok()) << via_gateway.status();
  EXPECT_EQ(direct->device_id, via_gateway->device_id);
  EXPECT_EQ(direct->tenant_id, via_gateway->tenant_id);
  EXPECT_EQ(direct->scope, via_gateway->scope);
}

TEST_F(DeviceAuthenticatorTest, Attack_GatewayWithoutTokenIsRefused) {
  auto gw = GatewayCert();
  auto r = auth_.Authenticate(&gw, "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(r.status().message().find("session token"), std::string::npos);
}

TEST_F(DeviceAuthenticatorTest, Attack_ForgedSessionTokenIsRefused) {
  SessionTokens other(std::string(32, 'x'));
  auto gw = GatewayCert();
  auto r = auth_.Authenticate(&gw, other.Issue(Ctx("tenant-a")));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(r.status().message().find("forged"), std::string::npos);
}

TEST_F(DeviceAuthenticatorTest, Attack_ExpiredCredentialsAreRefused) {
  auto cert = DeviceCert("tenant-a", "full", absl::Hours(1));
  std::string token = tokens_.Issue(Ctx("tenant-a"));
  clock_.Advance(absl::Hours(25));
  EXPECT_EQ(auth_.Authenticate(&cert, "").status().code(),
            absl::StatusCode::kUnauthenticated);
  auto gw = GatewayCert();
  EXPECT_EQ(auth_.Authenticate(&gw, token).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(DeviceAuthenticatorTest, Attack_RevokedDeviceCredentialsAreVoid) {
  auto cert = DeviceCert("tenant-a", "full", absl::Hours(24));
  v1::WatchEvent ev;
  ev.set_revision(5);
  ev.set_revoked_device_id(kDevice);
  ASSERT_TRUE(catalog_.Apply(ev).ok());
  auto r = auth_.Authenticate(&cert, "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("revoked"), std::string::npos);
}

// Verified session tokens are remembered (kVerifiedTokenSlots); the
// catalog checks still run on every call, so revocation refuses the very
// next call made with a token that verified a moment before.
TEST_F(DeviceAuthenticatorTest,
       Attack_RememberedTokenIsRefusedAtOnceAfterRevocation) {
  auto gw = GatewayCert();
  const std::string token = tokens_.Issue(Ctx("tenant-a"));
  ASSERT_TRUE(auth_.Authenticate(&gw, token).ok());
  ASSERT_TRUE(auth_.Authenticate(&gw, token).ok());  // served remembered
  v1::WatchEvent ev;
  ev.set_revision(5);
  ev.set_revoked_device_id(kDevice);
  ASSERT_TRUE(catalog_.Apply(ev).ok());
  auto r = auth_.Authenticate(&gw, token);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("revoked"), std::string::npos);
  // Nothing changed: the device stays revoked for every later call.
  EXPECT_EQ(catalog_.GetDevice(kDevice)->state(), v1::REVOKED);
  EXPECT_EQ(auth_.Authenticate(&gw, token).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(DeviceAuthenticatorTest, Attack_RememberedTokenIsRefusedOnceExpired) {
  auto gw = GatewayCert();
  const std::string token = tokens_.Issue(Ctx("tenant-a"));  // 24 h
  ASSERT_TRUE(auth_.Authenticate(&gw, token).ok());
  clock_.Advance(absl::Hours(24) + absl::Seconds(1));
  auto r = auth_.Authenticate(&gw, token);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(r.status().message().find("expired"), std::string::npos);
}

TEST_F(DeviceAuthenticatorTest,
       Attack_TamperedCopyOfARememberedTokenIsRefused) {
  auto gw = GatewayCert();
  const std::string token = tokens_.Issue(Ctx("tenant-a"));
  ASSERT_TRUE(auth_.Authenticate(&gw, token).ok());
  // Same MAC, another tenant in the body: the table is keyed by the whole
  // token, so this is verified afresh and refused.
  std::string tampered = token;
  const size_t at = tampered.find("tenant-a");
  ASSERT_NE(at, std::string::npos);
  tampered.replace(at, 8, "tenant-b");
  auto r = auth_.Authenticate(&gw, tampered);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(r.status().message().find("forged"), std::string::npos);
  EXPECT_TRUE(auth_.Authenticate(&gw, token).ok());  // the original still is
}

TEST_F(DeviceAuthenticatorTest, MoreTokensThanTheTableHoldsAllStillVerify) {
  auto gw = GatewayCert();
  std::vector<std::string> tokens;
  for (size_t i = 0; i < kVerifiedTokenSlots + 500; ++i) {
    DeviceContext ctx = Ctx("tenant-a");
    ctx.certificate_serial = absl::StrCat(i);
    tokens.push_back(tokens_.Issue(ctx));
  }
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto r = auth_.Authenticate(&gw, tokens[i]);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->certificate_serial, absl::StrCat(i));
    }
  }
}

// The table's size comes from the shard (--session_token_slots): a small
// one evicts more often but every token still verifies as itself, and a
// token is still refused once revoked.
TEST_F(DeviceAuthenticatorTest, TableSizeSetByTheShardKeepsEveryCheck) {
  DeviceAuthenticator small(&tokens_, &catalog_, &clock_, 4);
  EXPECT_EQ(small.token_slots(), 4u);
  EXPECT_EQ(auth_.token_slots(), kVerifiedTokenSlots);  // default unchanged
  auto gw = GatewayCert();
  std::vector<std::string> tokens;
  for (int i = 0; i < 40; ++i) {
    DeviceContext ctx = Ctx("tenant-a");
    ctx.certificate_serial = absl::StrCat(i);
    tokens.push_back(tokens_.Issue(ctx));
  }
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto r = small.Authenticate(&gw, tokens[i]);
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->certificate_serial, absl::StrCat(i));
    }
  }
  v1::WatchEvent ev;
  ev.set_revision(5);
  ev.set_revoked_device_id(kDevice);
  ASSERT_TRUE(catalog_.Apply(ev).ok());
  EXPECT_EQ(small.Authenticate(&gw, tokens.back()).status().code(),
            absl::StatusCode::kPermissionDenied);
  // Out-of-range sizes are clamped, never a zero-slot table.
  EXPECT_EQ(DeviceAuthenticator(&tokens_, &catalog_, &clock_, 0).token_slots(),
            1u);
  EXPECT_EQ(DeviceAuthenticator(&tokens_, &catalog_, &clock_,
                                kMaxVerifiedTokenSlots + 1)
                .token_slots(),
            kMaxVerifiedTokenSlots);
}

// The record the checks read is handed back (read once per call).
TEST_F(DeviceAuthenticatorTest, HandsBackTheDeviceRecordItChecked) {
  auto cert = DeviceCert("tenant-a", "full", absl::Hours(24));
  v1::Device record;
  ASSERT_TRUE(auth_.Authenticate(&cert, "", &record).ok());
  EXPECT_EQ(record.id(), kDevice);
  EXPECT_EQ(record.tenant_id(), "tenant-a");
  EXPECT_EQ(record.state(), v1::CLAIMED);
}

TEST_F(DeviceAuthenticatorTest, Attack_CredentialFromPreviousOwnerIsVoid) {
  auto old_cert = DeviceCert("tenant-a", "full", absl::Hours(24));
  std::string old_token = tokens_.Issue(Ctx("tenant-a"));
  v1::Device moved;
  moved.set_id(kDevice);
  moved.set_tenant_id("tenant-b");
  moved.set_state(v1::CLAIMED);
  moved.set_ownership_epoch(1);
  catalog_.PutDevice(moved);
  EXPECT_EQ(auth_.Authenticate(&old_cert, "").status().code(),
            absl::StatusCode::kPermissionDenied);
  auto gw = GatewayCert();
  EXPECT_EQ(auth_.Authenticate(&gw, old_token).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto new_cert = DeviceCert("tenant-b", "full", absl::Hours(24));
  new_cert.claims.epoch = "1";
  EXPECT_TRUE(auth_.Authenticate(&new_cert, "").ok());
}

TEST_F(DeviceAuthenticatorTest,
       Attack_CredentialFromEarlierOwnershipOfSameTenantIsVoid) {
  // A -> B -> A within a credential's lifetime: the tenant matches again,
  // but the ownership epoch moved on, so A's old credentials stay void.
  auto old_cert = DeviceCert("tenant-a", "full", absl::Hours(24));
  std::string old_token = tokens_.Issue(Ctx("tenant-a"));
  v1::Device back;
  back.set_id(kDevice);
  back.set_tenant_id("tenant-a");
  back.set_state(v1::CLAIMED);
  back.set_ownership_epoch(2);
  catalog_.PutDevice(back);
  auto r = auth_.Authenticate(&old_cert, "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("previous ownership"), std::string::npos);
  auto gw = GatewayCert();
  EXPECT_EQ(auth_.Authenticate(&gw, old_token).status().code(),
            absl::StatusCode::kPermissionDenied);
  auto fresh = DeviceCert("tenant-a", "full", absl::Hours(24));
  fresh.claims.epoch = "2";
  EXPECT_TRUE(auth_.Authenticate(&fresh, "").ok());
  DeviceContext ctx = Ctx("tenant-a");
  ctx.ownership_epoch = 2;
  EXPECT_TRUE(auth_.Authenticate(&gw, tokens_.Issue(ctx)).ok());
}

TEST_F(DeviceAuthenticatorTest, Attack_NonDeviceCertificateIsRefused) {
  crypto::ParsedCertificate operator_cert;
  operator_cert.claims.scope = "platform-operator";
  operator_cert.not_after = clock_.Now() + absl::Hours(1);
  EXPECT_EQ(auth_.Authenticate(&operator_cert, "").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth_.Authenticate(nullptr, "").status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(DeviceAuthenticatorTest, UpdateOnlyScopeIsCarriedThrough) {
  auto cert = DeviceCert("tenant-a", "update-only", absl::Hours(24));
  auto r = auth_.Authenticate(&cert, "");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->update_only());
  EXPECT_EQ(RequireFullScope(*r).code(), absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace sphere::auth

namespace sphere::auth {
namespace {

TEST(MayAttestForTest, DevicesForThemselvesAndGatewaysOnly) {
  crypto::DeviceClaims gateway;
  gateway.scope = "gateway";
  EXPECT_TRUE(MayAttestFor(gateway, kDevice).ok());
  for (const char* scope : {"manufacturing", "full", "update-only"}) {
    crypto::DeviceClaims self;
    self.device_id = kDevice;
    self.scope = scope;
    EXPECT_TRUE(MayAttestFor(self, kDevice).ok()) << scope;
  }
}

TEST(MayAttestForTest, Attack_OtherCallersAreRefused) {
  crypto::DeviceClaims other;
  other.device_id = std::string(64, 'f');
  other.scope = "manufacturing";
  auto s = MayAttestFor(other, kDevice);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(s.message().find("only for itself"), std::string::npos);
  for (const char* scope : {"platform-operator", "shard", ""}) {
    crypto::DeviceClaims op;
    op.scope = scope;
    op.tenant_id = "tenant-a";
    EXPECT_EQ(MayAttestFor(op, kDevice).code(),
              absl::StatusCode::kPermissionDenied)
        << scope;
  }
  // A device claim without a device scope (e.g. forged into an operator
  // certificate) does not count.
  crypto::DeviceClaims odd;
  odd.device_id = kDevice;
  odd.scope = "platform-operator";
  EXPECT_EQ(MayAttestFor(odd, kDevice).code(),
            absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace sphere::auth
