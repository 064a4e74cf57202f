// Cross-process revocation tests against a real local cluster (management +
// 2 shards, shard heartbeat every 100 ms):
//  - a genuine device that boots a kernel the platform never signed is
//    refused, revoked automatically by its shard, and refused from then on;
//  - a genuine device whose Pluton latched a tamper event (its signed quote
//    reports it) is revoked automatically the same way, exactly once;
//  - 'spherectl device revoke' reaches Watch clients (revoked_device_id) and
//    the shards;
//  - shard heartbeats carry the attested device count to management's shard
//    map and 'spherectl cluster status' (a cluster of its own, one shard,
//    so the count is exact).
// All waiting is on events (Watch streams, min_catalog_revision), no sleeps.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"
#include "tests/twin_helpers.h"
#include "tests/watch_client.h"

namespace sphere::testing {
namespace {

// StartWithContoso: a local cluster of `shards` shards (heartbeat every
// 100 ms) with tenant Contoso and its product DW100.
void StartWithContoso(const std::string &name, int shards,
                      LocalCluster **cluster, v1::Tenant **tenant) {
  auto c =
      LocalCluster::Start(name, shards, {"--shard_heartbeat_interval=100ms"});
  ASSERT_TRUE(c.ok()) << c.status();
  *cluster = c->release();
  auto t = (*cluster)->CreateTenant("Contoso");
  ASSERT_TRUE(t.ok()) << t.status();
  *tenant = new v1::Tenant(*t);
  ASSERT_TRUE((*cluster)->CreateProduct((*tenant)->id(), "DW100").ok());
}

class RevocationE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    StartWithContoso("revocation", 2, &cluster_, &tenant_);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete tenant_;
  }

  // Manufacture boots a device whose ROM trusts `rom_key` with `images`,
  // then registers and claims it into Contoso.
  std::unique_ptr<mcu::Device> Manufacture(
      const std::string &seed, const std::string &rom_key,
      const std::vector<v1::ImagePackage> &images) {
    auto dev = ManufactureBooted(seed, rom_key, images);
    if (dev == nullptr) return nullptr;
    EXPECT_EQ(dev->boot_state(), mcu::BootState::kRunning);
    RegisterAndClaim(cluster_, tenant_->id(), *dev);
    return dev;
  }

  std::unique_ptr<mcu::Device> GenuineDevice(const std::string &seed) {
    return Manufacture(seed, PlatformSigningKey(*cluster_),
                       FactoryImages(*cluster_));
  }

  int64_t Revision() { return CatalogRevision(cluster_); }

  grpc::Status GetChallenge(int shard, const std::string &device_id,
                            v1::GetChallengeResponse *resp) {
    return sphere::testing::GetChallenge(cluster_, shard, device_id, resp);
  }

  // Owner returns the index of the shard that owns the device (the one that
  // does not redirect).
  int Owner(const std::string &device_id) {
    return OwnerShard(cluster_, device_id);
  }

  grpc::Status Attest(int shard, mcu::Device &dev, const std::string &nonce,
                      v1::AttestResponse *resp) {
    return AttestWithNonce(*cluster_, shard, dev, nonce, resp);
  }

  absl::StatusOr<v1::Device> GetDevice(const std::string &id) {
    return cluster_->GetDevice(tenant_->id(), id);
  }

  std::pair<int, std::string> Ctl(std::vector<std::string> args) {
    return Spherectl(cluster_->cluster_file(), args);
  }

  static LocalCluster *cluster_;
  static v1::Tenant *tenant_;
};

LocalCluster *RevocationE2ETest::cluster_ = nullptr;
v1::Tenant *RevocationE2ETest::tenant_ = nullptr;

auto RevokedIs(const std::string &id) {
  return [id](const v1::WatchEvent &e) { return e.revoked_device_id() == id; };
}

TEST_F(RevocationE2ETest,
       Attack_DeviceBootingUnsignedKernelIsRevokedAutomatically) {
  // A chip whose ROM trusts a rogue key boots a backdoored kernel the
  // platform never signed. Its Pluton key is genuine and registered, so its
  // quote verifies: the evidence proves this very device compromised.
  crypto::EcPrivateKey rogue_key = crypto::EcPrivateKey::Generate();
  auto rogue_images = mcu::BuildFactoryImages(rogue_key, 1);
  ASSERT_TRUE(rogue_images.ok());
  for (auto &pkg : *rogue_images) {
    v1::ImageHeader h;
    ASSERT_TRUE(h.ParseFromString(pkg.header()));
    if (h.component() != mcu::kKernel) continue;
    pkg =
        *mcu::SignImage(h, absl::StrCat("backdoor", pkg.payload()), rogue_key);
  }
  auto dev = Manufacture("rogue-kernel", rogue_key.PublicKey(), *rogue_images);
  const std::string id = dev->device_id();
  int owner = Owner(id);
  ASSERT_GE(owner, 0);
  WatchClient watch(cluster_->management(), Revision() + 1);

  v1::GetChallengeResponse challenge;
  ASSERT_TRUE(GetChallenge(owner, id, &challenge).ok());
  v1::AttestResponse resp;
  grpc::Status st = Attest(owner, *dev, challenge.nonce(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(),
                                "runs an image the platform never signed"))
      << st.error_message();
  EXPECT_TRUE(resp.certificate_chain_pem().empty());
  EXPECT_TRUE(resp.session_token().empty());

  // The shard asked management to revoke it; management published that.
  auto revoked = watch.WaitFor(RevokedIs(id), absl::Seconds(30));
  ASSERT_TRUE(revoked.has_value()) << "no revoked_device_id event for " << id;
  auto d = GetDevice(id);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->state(), v1::REVOKED);
  EXPECT_TRUE(absl::StartsWith(d->revocation_reason(),
                               "automatic: unsigned image: component kernel"))
      << d->revocation_reason();

  // From now on the shard refuses it (reading a catalog that has the
  // revocation: min_catalog_revision).
  v1::GetChallengeResponse again;
  st = GetChallenge(owner, id, &again);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "revoked"))
      << st.error_message();
  EXPECT_TRUE(again.nonce().empty());
}

TEST_F(RevocationE2ETest, Attack_TamperedDeviceIsRevokedAutomaticallyOnce) {
  // Someone opens a genuine, attested device: Pluton latches the tamper and
  // reports it in every quote it signs from then on.
  auto dev = GenuineDevice("tampered-enclosure");
  ASSERT_NE(dev, nullptr);
  const std::string id = dev->device_id();
  int owner = Owner(id);
  ASSERT_GE(owner, 0);
  v1::GetChallengeResponse challenge;
  ASSERT_TRUE(GetChallenge(owner, id, &challenge).ok());
  v1::AttestResponse good;
  ASSERT_TRUE(Attest(owner, *dev, challenge.nonce(), &good).ok());
  auto other = GenuineDevice("tamper-bystander");
  ASSERT_NE(other, nullptr);
  const int64_t start = Revision();
  WatchClient watch(cluster_->management(), start + 1);

  dev->TriggerTamper("enclosure opened");
  v1::GetChallengeResponse c1, c2;
  ASSERT_TRUE(GetChallenge(owner, id, &c1).ok());
  ASSERT_TRUE(GetChallenge(owner, id, &c2).ok());  // outstanding when revoked
  v1::AttestResponse resp;
  grpc::Status st = Attest(owner, *dev, c1.nonce(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "1 tamper event(s)"))
      << st.error_message();
  EXPECT_TRUE(resp.certificate_chain_pem().empty());
  EXPECT_TRUE(resp.session_token().empty());

  // Nobody acts: the shard asks management, management records and
  // publishes the revocation on Watch.
  auto revoked = watch.WaitFor(RevokedIs(id), absl::Seconds(30));
  ASSERT_TRUE(revoked.has_value()) << "no revoked_device_id event for " << id;
  auto d = GetDevice(id);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->state(), v1::REVOKED);
  EXPECT_TRUE(absl::StartsWith(d->revocation_reason(), "automatic: tamper: "))
      << d->revocation_reason();

  // Refused from then on (the outstanding challenge too), and the second
  // refusal does not revoke again: the catalog moved exactly once for it.
  // Attest carries no min_catalog_revision: wait until the owner applied
  // the revocation (this Watch can see it before the shard's follower does;
  // the shard would then refuse the quote as tampered, not as revoked).
  ASSERT_TRUE(WaitForShardRevision(*cluster_, owner, revoked->revision()).ok());
  st = Attest(owner, *dev, c2.nonce(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "revoked"))
      << st.error_message();
  v1::GetChallengeResponse again;
  st = GetChallenge(owner, id, &again);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(again.nonce().empty());
  // A marker event after everything above: every event for this device up
  // to it has been seen once it arrives.
  auto bystander = GenuineDevice("tamper-marker");
  ASSERT_NE(bystander, nullptr);
  const std::string marker = bystander->device_id();
  auto seen_marker = watch.WaitFor(
      [&](const v1::WatchEvent &e) { return e.device().id() == marker; },
      absl::Seconds(30));
  ASSERT_TRUE(seen_marker.has_value());
  const int64_t first_revocation = revoked->revision();
  auto twice = watch.WaitFor(
      [&](const v1::WatchEvent &e) {
        return e.revoked_device_id() == id && e.revision() != first_revocation;
      },
      absl::ZeroDuration());
  EXPECT_FALSE(twice.has_value())
      << "revoked again at revision " << twice->revision();

  // Nothing else changed: the bystander is still claimed and attests.
  auto o = GetDevice(other->device_id());
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->state(), v1::CLAIMED);
  int other_owner = Owner(other->device_id());
  ASSERT_GE(other_owner, 0);
  v1::GetChallengeResponse oc;
  ASSERT_TRUE(GetChallenge(other_owner, other->device_id(), &oc).ok());
  v1::AttestResponse ok;
  EXPECT_TRUE(Attest(other_owner, *other, oc.nonce(), &ok).ok());
}

TEST_F(RevocationE2ETest, GenuineDeviceAttestingIsNotRevoked) {
  auto dev = GenuineDevice("genuine-not-revoked");
  int owner = Owner(dev->device_id());
  ASSERT_GE(owner, 0);
  v1::GetChallengeResponse challenge;
  ASSERT_TRUE(GetChallenge(owner, dev->device_id(), &challenge).ok());
  v1::AttestResponse resp;
  ASSERT_TRUE(Attest(owner, *dev, challenge.nonce(), &resp).ok());
  auto d = GetDevice(dev->device_id());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->state(), v1::CLAIMED);
}

TEST_F(RevocationE2ETest, RevokeViaSpherectlReachesWatchersAndShards) {
  auto dev = GenuineDevice("revoked-by-operator");
  const std::string id = dev->device_id();
  int owner = Owner(id);
  ASSERT_GE(owner, 0);
  // A challenge issued before the revocation must not survive it either.
  v1::GetChallengeResponse before;
  ASSERT_TRUE(GetChallenge(owner, id, &before).ok());
  WatchClient watch(cluster_->management(), Revision() + 1);

  auto [rc, out] = Ctl({"--tenant", "Contoso", "--output", "json", "device",
                        "revoke", "--device", id, "--reason", "stolen"});
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["state"], "REVOKED");
  EXPECT_EQ(j["revocation_reason"], "stolen");

  // A relying party following Watch (platform operator) sees the id.
  ASSERT_TRUE(watch.WaitFor(RevokedIs(id), absl::Seconds(30)).has_value());

  // The shard refuses the device: no new challenge, and the old one is dead.
  v1::GetChallengeResponse after;
  grpc::Status st = GetChallenge(owner, id, &after);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "revoked"))
      << st.error_message();
  v1::AttestResponse resp;
  st = Attest(owner, *dev, before.nonce(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "revoked"))
      << st.error_message();
  EXPECT_TRUE(resp.certificate_chain_pem().empty());
}

// Heartbeats carry the shard's count of attested devices. This runs on a
// cluster of its own (one shard, no other test's devices): on the shared
// cluster an earlier test's attestation, whose heartbeat was still on its
// way, could raise the count and pass the test without this test's device
// being counted. Here the count is known exactly at every step: 0, then 1
// after one device attested, then 2 once another did (the first device
// attesting again does not count twice).
class ShardHeartbeatE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    StartWithContoso("heartbeat", 1, &cluster_, &tenant_);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete tenant_;
  }

  std::unique_ptr<mcu::Device> Genuine(const std::string &seed) {
    auto dev = ManufactureBooted(seed, PlatformSigningKey(*cluster_),
                                 FactoryImages(*cluster_));
    if (dev == nullptr) return nullptr;
    RegisterAndClaim(cluster_, tenant_->id(), *dev);
    return dev;
  }
  // AttestOn0: a full attestation on the one shard.
  void AttestOn0(mcu::Device &dev) {
    v1::GetChallengeResponse challenge;
    grpc::Status st = sphere::testing::GetChallenge(cluster_, 0,
                                                    dev.device_id(), &challenge);
    ASSERT_TRUE(st.ok()) << st.error_message();
    v1::AttestResponse resp;
    st = AttestWithNonce(*cluster_, 0, dev, challenge.nonce(), &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_FALSE(resp.certificate_chain_pem().empty());
  }
  // Count: the shard's device_count in management's shard map now.
  uint64_t Count(const std::string &shard_id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::ShardMap map;
    grpc::Status st =
        cluster_->management()->GetShardMap(&ctx, v1::GetShardMapRequest(),
                                            &map);
    EXPECT_TRUE(st.ok()) << st.error_message();
    for (const auto &s : map.shards()) {
      if (s.id() == shard_id) {
        EXPECT_TRUE(s.healthy());
        return s.device_count();
      }
    }
    ADD_FAILURE() << shard_id << " is not in the shard map";
    return 0;
  }
  // FirstCountAtLeast: the first count for `shard_id` that `watch` delivers
  // that is at least `n` (the count only grows, one heartbeat per change).
  std::optional<uint64_t> FirstCountAtLeast(WatchClient &watch,
                                            const std::string &shard_id,
                                            uint64_t n) {
    uint64_t seen = 0;
    auto ev = watch.WaitFor(
        [&](const v1::WatchEvent &e) {
          for (const auto &s : e.shard_map().shards()) {
            if (s.id() == shard_id && s.device_count() >= n) {
              seen = s.device_count();
              return true;
            }
          }
          return false;
        },
        absl::Seconds(60));
    if (!ev.has_value()) return std::nullopt;
    return seen;
  }

  static LocalCluster *cluster_;
  static v1::Tenant *tenant_;
};

LocalCluster *ShardHeartbeatE2ETest::cluster_ = nullptr;
v1::Tenant *ShardHeartbeatE2ETest::tenant_ = nullptr;

TEST_F(ShardHeartbeatE2ETest, ShardHeartbeatReportsAttestedDeviceCount) {
  const std::string shard_id = cluster_->config().shards[0].id;
  auto first = Genuine("counted-first");
  ASSERT_NE(first, nullptr);
  auto second = Genuine("counted-second");
  ASSERT_NE(second, nullptr);
  // Registered and claimed, never attested: nothing to count yet.
  EXPECT_EQ(Count(shard_id), 0u);

  WatchClient watch(cluster_->management(),
                    CatalogRevision(cluster_) + 1);
  AttestOn0(*first);
  auto one = FirstCountAtLeast(watch, shard_id, 1);
  ASSERT_TRUE(one.has_value()) << "no heartbeat carried a count of 1";
  EXPECT_EQ(*one, 1u);

  AttestOn0(*first);  // again: the same device
  AttestOn0(*second);
  auto two = FirstCountAtLeast(watch, shard_id, 2);
  ASSERT_TRUE(two.has_value()) << "no heartbeat carried a count of 2";
  EXPECT_EQ(*two, 2u);

  // spherectl shows the count the shard holds: exactly 2 (the map can lag
  // the shard, never lead it, and it has reached 2).
  auto [rc, out] = Spherectl(cluster_->cluster_file(),
                             {"--output", "json", "cluster", "status"});
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  bool found = false;
  for (const auto &s : j["shards"]) {
    if (s["id"] == shard_id) {
      found = true;
      EXPECT_EQ(s["device_count"].get<uint64_t>(), 2u) << out;
      EXPECT_EQ(s["health"], "SERVING") << out;
    }
  }
  EXPECT_TRUE(found) << out;
  EXPECT_EQ(Count(shard_id), 2u);
}

}  // namespace
}  // namespace sphere::testing
