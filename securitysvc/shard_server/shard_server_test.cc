// A whole shard in-process: ShardServer over a memory store and an in-memory
// catalog, serving on port 0 with mutual TLS, hosting the attestation
// plug-in. Devices (mcu-model) attest through a gateway credential and
// through their own manufacturing credential.
#include "securitysvc/shard_server/shard_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "mcu-model/device.h"
#include "protos/attestation.grpc.pb.h"
#include "securitysvc/attestation/attestation_plugin.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/shard_server/test_platform.h"

namespace sphere::shard {
namespace {

constexpr char kTenant[] = "tenant-contoso";
constexpr int kDevices = 8;
constexpr double kChallengeBurst = 5;

// Platform: one in-process shard and its devices, shared by the tests; each
// test uses its own devices.
struct Platform {
  void Build() {
    TestPlatform::Options o;
    o.attestation.challenge_rate.burst = kChallengeBurst;
    o.attestation.challenge_rate.rate_per_second = 1;
    o.revision_gate.max_wait = absl::Seconds(60);
    absl::Status s = platform.Start(o);
    ASSERT_TRUE(s.ok()) << s;
    for (int i = 0; i < kDevices; ++i) {
      auto d = platform.NewDevice(absl::StrCat("shard-server-test-device-", i));
      ASSERT_TRUE(d.ok()) << d.status();
      devices.push_back(*std::move(d));
    }
    server = &platform.server();
    catalog = &platform.catalog();
    attestation = &platform.attestation();
    gateway_tls = platform.gateway_tls();
  }
  rpc::TlsFiles Issue(const std::string& cn, crypto::KeyUsage usage,
                      const crypto::DeviceClaims& claims) {
    return platform.Issue(cn, usage, claims);
  }
  rpc::TlsFiles ManufacturingTls(const mcu::Device& d) {
    return platform.ManufacturingTls(d);
  }
  std::unique_ptr<v1::AttestationService::Stub> Stub(const rpc::TlsFiles& tls) {
    return platform.Stub(tls);
  }

  TestPlatform platform;
  std::vector<std::unique_ptr<mcu::Device>> devices;
  ShardServer* server = nullptr;
  catalog::InMemoryCatalog* catalog = nullptr;
  attestation::AttestationPlugin* attestation = nullptr;
  rpc::TlsFiles gateway_tls;
  FakeClock& clock = platform.clock();
};

Platform* g_platform = nullptr;

class ShardServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g_platform = new Platform;
    g_platform->Build();
  }
  static void TearDownTestSuite() {
    delete g_platform;
    g_platform = nullptr;
  }
  Platform& p() { return *g_platform; }
  mcu::Device& Dev(int i) { return *p().devices[i]; }

  grpc::Status Challenge(v1::AttestationService::Stub* stub,
                         const std::string& device_id, int64_t min_revision,
                         v1::GetChallengeResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    v1::GetChallengeRequest req;
    req.set_device_id(device_id);
    req.set_min_catalog_revision(min_revision);
    return stub->GetChallenge(&ctx, req, resp);
  }
  grpc::Status Attest(v1::AttestationService::Stub* stub, mcu::Device& dev,
                      const std::string& device_id, const std::string& nonce,
                      v1::AttestResponse* resp) {
    auto quote = dev.Quote(nonce);
    EXPECT_TRUE(quote.ok()) << quote.status();
    v1::AttestRequest req;
    req.set_device_id(device_id);
    *req.mutable_quote() = *quote;
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    return stub->Attest(&ctx, req, resp);
  }
  // GroupEventAt: a catalog change at `revision` (the platform's device
  // group, unchanged) that moves the catalog on.
  static v1::WatchEvent GroupEventAt(int64_t revision) {
    v1::WatchEvent ev;
    ev.set_revision(revision);
    ev.mutable_device_group()->set_id(TestPlatform::kGroup);
    ev.mutable_device_group()->set_tenant_id(kTenant);
    ev.mutable_device_group()->set_os_feed(v1::RETAIL);
    return ev;
  }
  // FullAttestation through `stub`, naming the device in the requests.
  grpc::Status FullAttestation(v1::AttestationService::Stub* stub,
                               mcu::Device& dev, v1::AttestResponse* resp) {
    v1::GetChallengeResponse c;
    grpc::Status st = Challenge(stub, dev.device_id(), 0, &c);
    if (!st.ok()) return st;
    return Attest(stub, dev, dev.device_id(), c.nonce(), resp);
  }
};

TEST_F(ShardServerTest, AttestsThroughTheGatewayPath) {
  auto stub = p().Stub(p().gateway_tls);
  v1::AttestResponse resp;
  grpc::Status st = FullAttestation(stub.get(), Dev(0), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.outcome(), v1::UP_TO_DATE);
  EXPECT_EQ(resp.tenant_id(), kTenant);
  EXPECT_FALSE(resp.certificate_chain_pem().empty());
  EXPECT_FALSE(resp.session_token().empty());
  auto record = p().attestation->attestor()->LastRecord(Dev(0).device_id());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_GE(p().attestation->DeviceCount(), 1u);
}

TEST_F(ShardServerTest, DeviceCredentialNamesTheDeviceSoDeviceIdIsOptional) {
  auto stub = p().Stub(p().ManufacturingTls(Dev(1)));
  v1::GetChallengeResponse c;
  grpc::Status st = Challenge(stub.get(), /*device_id=*/"", 0, &c);
  ASSERT_TRUE(st.ok()) << st.error_message();
  v1::AttestResponse resp;
  st = Attest(stub.get(), Dev(1), /*device_id=*/"", c.nonce(), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.outcome(), v1::UP_TO_DATE);
  // Naming itself explicitly is the same.
  st = FullAttestation(stub.get(), Dev(1), &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(ShardServerTest, Attack_DeviceCannotActForAnotherDevice) {
  auto stub = p().Stub(p().ManufacturingTls(Dev(1)));
  const std::string victim = Dev(2).device_id();
  v1::GetChallengeResponse c;
  grpc::Status st = Challenge(stub.get(), victim, 0, &c);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(
      absl::StrContains(st.error_message(), "a device attests only for itself"))
      << st.error_message();
  EXPECT_TRUE(c.nonce().empty());
  // Nothing recorded for the victim.
  EXPECT_FALSE(p().attestation->attestor()->LastRecord(victim).ok());
}

TEST_F(ShardServerTest, Attack_GatewayMustNameAWellFormedDevice) {
  auto stub = p().Stub(p().gateway_tls);
  v1::GetChallengeResponse c;
  grpc::Status st = Challenge(stub.get(), "", 0, &c);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  st = Challenge(stub.get(), std::string(1 << 20, 'a'), 0, &c);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(st.error_message().size(), 200u);  // the id is not echoed
  EXPECT_TRUE(c.nonce().empty());
}

TEST_F(ShardServerTest, Attack_OperatorCredentialCannotAttest) {
  crypto::DeviceClaims op;
  op.scope = "platform-operator";
  auto stub =
      p().Stub(p().Issue("operator", crypto::KeyUsage::kClientAuth, op));
  v1::GetChallengeResponse c;
  grpc::Status st = Challenge(stub.get(), Dev(2).device_id(), 0, &c);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "may not attest devices"))
      << st.error_message();
  EXPECT_TRUE(c.nonce().empty());
}

// Hole 4: 100 concurrent challenges with a huge min_catalog_revision are
// answered at once and do not delay another device's attestation.
TEST_F(ShardServerTest, Attack_ChallengeFloodWithFutureRevision) {
  auto stub = p().Stub(p().gateway_tls);
  const std::string flooder = Dev(3).device_id();
  constexpr int kFlood = 100;
  struct Call {
    grpc::ClientContext ctx;
    v1::GetChallengeRequest req;
    v1::GetChallengeResponse resp;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  absl::Mutex mu;
  int finished = 0;
  for (int i = 0; i < kFlood; ++i) {
    auto c = std::make_unique<Call>();
    c->ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    c->req.set_device_id(flooder);
    c->req.set_min_catalog_revision(std::numeric_limits<int64_t>::max());
    Call* raw = c.get();
    calls.push_back(std::move(c));
    stub->async()->GetChallenge(&raw->ctx, &raw->req, &raw->resp,
                                [raw, &mu, &finished](grpc::Status s) {
                                  absl::MutexLock l(&mu);
                                  raw->status = std::move(s);
                                  ++finished;
                                });
  }
  // Another device attests meanwhile (generous deadline, no timing claim).
  v1::AttestResponse resp;
  grpc::Status st = FullAttestation(stub.get(), Dev(4), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.outcome(), v1::UP_TO_DATE);

  {
    absl::MutexLock l(&mu);
    auto all = [&finished]() { return finished == kFlood; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60)));
  }
  int behind = 0, limited = 0;
  for (const auto& c : calls) {
    EXPECT_TRUE(c->resp.nonce().empty());
    if (c->status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      EXPECT_TRUE(absl::StrContains(
          c->status.error_message(),
          "catalog at revision 1, requested 9223372036854775807"))
          << c->status.error_message();
      ++behind;
    } else {
      EXPECT_EQ(c->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << c->status.error_message();
      ++limited;
    }
  }
  EXPECT_EQ(behind, static_cast<int>(kChallengeBurst));
  EXPECT_EQ(limited, kFlood - static_cast<int>(kChallengeBurst));
  // Nothing parked, nothing recorded for the flooder.
  EXPECT_EQ(p().server->context().revision_gate->parked(), 0u);
  EXPECT_FALSE(p().attestation->attestor()->LastRecord(flooder).ok());
}

// Calls for a revision the catalog has not reached yet wait off the callback
// threads: while they wait, other devices attest; when the catalog catches
// up they are answered.
TEST_F(ShardServerTest, WaitingChallengesDoNotStallOtherDevices) {
  auto stub = p().Stub(p().gateway_tls);
  const int64_t next = p().catalog->revision() + 1;
  struct Call {
    grpc::ClientContext ctx;
    v1::GetChallengeRequest req;
    v1::GetChallengeResponse resp;
    grpc::Status status;
    absl::Notification done;
  };
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < 2; ++i) {  // max_per_key, within the rate burst
    auto c = std::make_unique<Call>();
    c->ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    c->req.set_device_id(Dev(5).device_id());
    c->req.set_min_catalog_revision(next);
    Call* raw = c.get();
    calls.push_back(std::move(c));
    stub->async()->GetChallenge(&raw->ctx, &raw->req, &raw->resp,
                                [raw](grpc::Status s) {
                                  raw->status = std::move(s);
                                  raw->done.Notify();
                                });
  }
  v1::AttestResponse resp;
  grpc::Status st = FullAttestation(stub.get(), Dev(6), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // The catalog catches up: the waiting calls get their nonces.
  v1::WatchEvent ev = GroupEventAt(next);
  ASSERT_TRUE(p().catalog->Apply(ev).ok());
  p().server->context().revision_gate->Notify();
  for (auto& c : calls) {
    ASSERT_TRUE(c->done.WaitForNotificationWithTimeout(absl::Seconds(60)));
    EXPECT_TRUE(c->status.ok()) << c->status.error_message();
    EXPECT_EQ(c->resp.nonce().size(), 32u);
  }
}

// A device claimed a moment ago is not in the shard's catalog yet; a caller
// that names the revision holding the claim waits for it (off the callback
// threads) instead of being told at once that the device is not claimed.
// Found when management restarted and the follower was still reconnecting.
TEST_F(ShardServerTest, Fault_JustClaimedDeviceWaitsForItsRevision) {
  auto stub = p().Stub(p().gateway_tls);
  const std::string id = crypto::HexEncode(crypto::Sha256("claimed just now"));
  v1::GetChallengeResponse refused;
  grpc::Status now = Challenge(stub.get(), id, 0, &refused);
  EXPECT_EQ(now.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(absl::StrContains(now.error_message(), "is not claimed"))
      << now.error_message();
  EXPECT_TRUE(refused.nonce().empty());

  const int64_t next = p().catalog->revision() + 1;
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
  v1::GetChallengeRequest req;
  req.set_device_id(id);
  req.set_min_catalog_revision(next);
  v1::GetChallengeResponse resp;
  grpc::Status status;
  absl::Notification done;
  stub->async()->GetChallenge(&ctx, &req, &resp, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  v1::WatchEvent ev;
  ev.set_revision(next);
  ev.mutable_device()->set_id(id);
  ev.mutable_device()->set_tenant_id(kTenant);
  ev.mutable_device()->set_state(v1::CLAIMED);
  ASSERT_TRUE(p().catalog->Apply(ev).ok());
  p().server->context().revision_gate->Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.nonce().size(), 32u);
}

// Ownership is decided by the shard map of the revision a call asks for: a
// shard whose catalog is behind gets a call at the newer revision for a
// device that moved to it at that revision; it waits for the revision (off
// the callback thread) and answers, instead of redirecting the call by its
// old map.
TEST_F(ShardServerTest, CallAtANewerRevisionIsRoutedByThatRevisionsMap) {
  sharding::ShardRouter& router = p().server->router();
  const std::string self = router.self_id();
  const int64_t now_rev = p().catalog->revision();
  v1::ShardMap old_map;
  old_map.set_revision(now_rev);
  auto* a = old_map.add_shards();
  a->set_id(self);
  a->set_address(p().server->address());
  auto* b = old_map.add_shards();
  b->set_id("shard-elsewhere");
  b->set_address("127.0.0.1:1");
  router.Update(old_map);
  // A device the old map gives to the other shard.
  std::unique_ptr<mcu::Device> dev;
  for (int i = 0; i < 64 && dev == nullptr; ++i) {
    auto d = p().platform.NewDevice(absl::StrCat("moved-device-", i));
    ASSERT_TRUE(d.ok()) << d.status();
    if (router.OtherOwner((*d)->device_id()).has_value()) dev = *std::move(d);
  }
  ASSERT_NE(dev, nullptr) << "no device of 64 hashed to the other shard";
  const int64_t next = p().catalog->revision() + 1;
  auto stub = p().Stub(p().gateway_tls);
  {  // Without a revision the old map decides: a redirect.
    v1::GetChallengeResponse c;
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    v1::GetChallengeRequest req;
    req.set_device_id(dev->device_id());
    grpc::Status st = stub->GetChallenge(&ctx, req, &c);
    ASSERT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
        << st.error_message();
    ASSERT_TRUE(sharding::RedirectFrom(ctx, st).has_value());
    EXPECT_TRUE(c.nonce().empty());
  }
  // The call at the next revision is parked, not redirected.
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
  v1::GetChallengeRequest req;
  req.set_device_id(dev->device_id());
  req.set_min_catalog_revision(next);
  v1::GetChallengeResponse resp;
  grpc::Status status;
  absl::Notification done;
  stub->async()->GetChallenge(&ctx, &req, &resp, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  RevisionGate* gate = p().server->context().revision_gate;
  const absl::Time limit = absl::Now() + absl::Seconds(60);
  while (gate->parked() == 0 && !done.HasBeenNotified() &&
         absl::Now() < limit) {
    absl::SleepFor(absl::Milliseconds(1));  // poll of a condition, bounded
  }
  ASSERT_FALSE(done.HasBeenNotified())
      << "answered before the catalog reached revision " << next << ": "
      << status.error_code() << " " << status.error_message();
  ASSERT_EQ(gate->parked(), 1u);
  // Revision `next` moves the device here: the map first (as the follower
  // updates the router before it reports the revision applied), then the
  // catalog.
  v1::ShardMap new_map;
  new_map.set_revision(next);
  *new_map.add_shards() = *a;
  router.Update(new_map);
  v1::WatchEvent ev = GroupEventAt(next);
  *ev.mutable_shard_map() = new_map;
  ASSERT_TRUE(p().catalog->Apply(ev).ok());
  gate->Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_FALSE(sharding::RedirectFrom(ctx, status).has_value());
  EXPECT_EQ(resp.nonce().size(), 32u);
  EXPECT_EQ(gate->parked(), 0u);
}

TEST_F(ShardServerTest, Attack_ChallengeRateLimit) {
  auto stub = p().Stub(p().gateway_tls);
  const std::string id = Dev(7).device_id();
  static auto* limited =
      metrics::Counter("sphere_challenge_rate_limited_total", "");
  for (int i = 0; i < static_cast<int>(kChallengeBurst); ++i) {
    v1::GetChallengeResponse c;
    grpc::Status st = Challenge(stub.get(), id, 0, &c);
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_message();
  }
  const uint64_t limited_before = limited->Value();
  v1::GetChallengeResponse refused;
  grpc::Status st = Challenge(stub.get(), id, 0, &refused);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "faster than its limit"))
      << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "retry in 1s"))
      << st.error_message();
  EXPECT_TRUE(refused.nonce().empty());
  EXPECT_EQ(limited->Value(), limited_before + 1);
  // Another device is unaffected.
  v1::GetChallengeResponse other;
  EXPECT_TRUE(Challenge(stub.get(), Dev(0).device_id(), 0, &other).ok());
  // The budget comes back with time.
  p().clock.Advance(absl::Seconds(1));
  v1::GetChallengeResponse again;
  st = Challenge(stub.get(), id, 0, &again);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(ShardServerTest, Attack_RevokedDeviceIsRefusedBeforeAnyWait) {
  mcu::Device& dev = Dev(2);
  auto rec = p().catalog->GetDevice(dev.device_id());
  ASSERT_TRUE(rec.ok());
  v1::Device revoked = *rec;
  revoked.set_state(v1::REVOKED);
  p().catalog->PutDevice(revoked);
  auto stub = p().Stub(p().gateway_tls);
  v1::GetChallengeResponse c;
  grpc::Status st =
      Challenge(stub.get(), dev.device_id(), p().catalog->revision() + 1, &c);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "revoked"))
      << st.error_message();
  EXPECT_TRUE(c.nonce().empty());
  EXPECT_EQ(p().server->context().revision_gate->parked(), 0u);
  p().catalog->PutDevice(*rec);
}

TEST(ShardServerStartTest, Fault_ColumnFamilyClaimedTwiceIsRefused) {
  ShardServerOptions o;
  o.open_store = [](const std::vector<std::string>& cfs)
      -> absl::StatusOr<std::unique_ptr<store::Store>> {
    ADD_FAILURE() << "the store must not open";
    return absl::InternalError("unreachable");
  };
  std::vector<std::unique_ptr<ShardPlugin>> plugins;
  plugins.push_back(std::make_unique<attestation::AttestationPlugin>());
  plugins.push_back(std::make_unique<attestation::AttestationPlugin>());
  ShardServer server(std::move(o), std::move(plugins));
  absl::Status s = server.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "claimed by two plug-ins")) << s;
  EXPECT_EQ(server.port(), 0);  // never served
}

// --- DeviceStatusService: operators read the shard's attestation records.

// StatusFixture helpers: an operator credential and one call.
rpc::TlsFiles OperatorTls(Platform& p, const std::string& tenant) {
  crypto::DeviceClaims c;
  if (tenant.empty()) {
    c.scope = "platform-operator";
  } else {
    c.tenant_id = tenant;
  }
  return p.Issue(tenant.empty() ? "platform-op" : "tenant-op",
                 crypto::KeyUsage::kClientAuth, c);
}

grpc::Status GetStatus(Platform& p, const rpc::TlsFiles& tls,
                       const std::vector<std::string>& ids,
                       v1::GetDeviceStatusResponse* resp) {
  auto stub = p.platform.StatusStub(tls);
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::GetDeviceStatusRequest req;
  for (const auto& id : ids) req.add_device_ids(id);
  return stub->GetDeviceStatus(&ctx, req, resp);
}

TEST_F(ShardServerTest, DeviceStatusShowsLastAttestation) {
  auto dev = p().platform.NewDevice("device-status-attested");
  ASSERT_TRUE(dev.ok()) << dev.status();
  auto never = p().platform.NewDevice("device-status-never-attested");
  ASSERT_TRUE(never.ok()) << never.status();
  auto stub = p().Stub(p().gateway_tls);
  v1::AttestResponse a;
  grpc::Status st = FullAttestation(stub.get(), **dev, &a);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(a.outcome(), v1::UP_TO_DATE);
  const std::string unknown_id(64, 'a');

  for (const std::string& tenant : {std::string(), std::string(kTenant)}) {
    v1::GetDeviceStatusResponse resp;
    st = GetStatus(p(), OperatorTls(p(), tenant),
                   {(*dev)->device_id(), (*never)->device_id(), unknown_id,
                    (*dev)->device_id()},
                   &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(resp.devices_size(), 2) << resp.DebugString();
    const v1::DeviceStatus& d = resp.devices(0);
    EXPECT_EQ(d.device_id(), (*dev)->device_id());
    EXPECT_EQ(d.last_attestation_outcome(), "UP_TO_DATE");
    EXPECT_EQ(d.last_attested_unix_ms(), absl::ToUnixMillis(p().clock.Now()));
    EXPECT_EQ(d.os_version(), "24.10");
    EXPECT_EQ(d.certificate_not_after_unix_ms(), a.not_after_unix_ms());
    EXPECT_FALSE(d.component_versions().empty());
    EXPECT_EQ(d.component_versions().at("kernel"), 1u);
    // Known but never attested: listed, empty.
    EXPECT_EQ(resp.devices(1).device_id(), (*never)->device_id());
    EXPECT_EQ(resp.devices(1).last_attested_unix_ms(), 0);
    EXPECT_TRUE(resp.devices(1).last_attestation_outcome().empty());
    ASSERT_EQ(resp.unknown_size(), 1);
    EXPECT_EQ(resp.unknown(0), unknown_id);
    EXPECT_EQ(resp.not_here_size(), 0);  // standalone: owns every device
  }
}

TEST_F(ShardServerTest, Attack_TenantCannotReadAnotherTenantsDeviceStatus) {
  auto dev = p().platform.NewDevice("device-status-other-tenant");
  ASSERT_TRUE(dev.ok()) << dev.status();
  auto stub = p().Stub(p().gateway_tls);
  v1::AttestResponse a;
  grpc::Status st = FullAttestation(stub.get(), **dev, &a);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const std::string unknown_id(64, 'b');
  // Fabrikam's operator asks for Contoso's (attested) device and an id
  // nobody registered: both answers are the same, nothing else is said.
  v1::GetDeviceStatusResponse resp;
  st = GetStatus(p(), OperatorTls(p(), "tenant-fabrikam"),
                 {(*dev)->device_id(), unknown_id}, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.devices_size(), 0);
  EXPECT_EQ(resp.not_here_size(), 0);
  ASSERT_EQ(resp.unknown_size(), 2);
  EXPECT_EQ(resp.unknown(0), (*dev)->device_id());
  EXPECT_EQ(resp.unknown(1), unknown_id);
  const std::string bytes = resp.SerializeAsString();
  EXPECT_FALSE(absl::StrContains(bytes, "UP_TO_DATE"));
  EXPECT_FALSE(absl::StrContains(bytes, kTenant));
  // Asking for the device alone: same shape as asking for an unknown id.
  v1::GetDeviceStatusResponse one, other;
  ASSERT_TRUE(GetStatus(p(), OperatorTls(p(), "tenant-fabrikam"),
                        {(*dev)->device_id()}, &one)
                  .ok());
  ASSERT_TRUE(
      GetStatus(p(), OperatorTls(p(), "tenant-fabrikam"), {unknown_id}, &other)
          .ok());
  EXPECT_EQ(one.ByteSizeLong(), other.ByteSizeLong());
  EXPECT_EQ(one.devices_size() + one.not_here_size(), 0);
}

TEST_F(ShardServerTest, Attack_DeviceCredentialCannotReadStatus) {
  auto dev = p().platform.NewDevice("device-status-device-cred");
  ASSERT_TRUE(dev.ok()) << dev.status();
  // The device's own manufacturing identity, a device certificate issued at
  // attestation (tenant CA), a gateway and a shard credential: all refused.
  std::vector<rpc::TlsFiles> creds;
  creds.push_back(p().ManufacturingTls(**dev));
  creds.push_back(p().gateway_tls);
  crypto::DeviceClaims shard;
  shard.scope = "shard";
  creds.push_back(p().Issue("shard", crypto::KeyUsage::kClientAuth, shard));
  crypto::DeviceClaims full;  // a device claim with a tenant: still a device
  full.device_id = (*dev)->device_id();
  full.tenant_id = kTenant;
  full.scope = "full";
  creds.push_back(
      p().Issue((*dev)->device_id(), crypto::KeyUsage::kClientAuth, full));
  {
    // A real device certificate from an attestation, chained to the tenant
    // CA: its key is the one the quote named.
    auto stub = p().Stub(p().gateway_tls);
    v1::AttestResponse a;
    grpc::Status st = FullAttestation(stub.get(), **dev, &a);
    ASSERT_TRUE(st.ok()) << st.error_message();
    creds.push_back({a.certificate_chain_pem(),
                     (*dev)->ExportCertificateKeyForTls(),
                     p().platform.server_tls().ca_pem});
  }
  for (const auto& tls : creds) {
    v1::GetDeviceStatusResponse resp;
    grpc::Status st = GetStatus(p(), tls, {(*dev)->device_id()}, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << st.error_message();
    EXPECT_EQ(resp.devices_size(), 0);
  }
}

TEST_F(ShardServerTest, Attack_TooManyIdsRefused) {
  std::vector<std::string> ids;
  for (int i = 0; i < 501; ++i) {
    ids.push_back(crypto::HexEncode(crypto::Sha256(absl::StrCat(i))));
  }
  v1::GetDeviceStatusResponse resp;
  grpc::Status st = GetStatus(p(), OperatorTls(p(), ""), ids, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "at most 500"))
      << st.error_message();
  ids.pop_back();  // 500 is fine
  st = GetStatus(p(), OperatorTls(p(), ""), ids, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.unknown_size(), 500);
  st = GetStatus(p(), OperatorTls(p(), ""), {}, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  st = GetStatus(p(), OperatorTls(p(), ""), {"NOT-HEX"}, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace sphere::shard
