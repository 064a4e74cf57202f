// Cross-process attestation tests against a real local cluster (management +
// 3 shards, all on port 0, mTLS everywhere). A twin process attests and its
// chain passes `openssl verify`; attacks against the shards are each a named
// test asserting the specific gRPC status AND that no shard state changed
// (success counters from the shards' metrics endpoints, the legitimate nonce
// still usable, and after shutdown the shard databases themselves).
#include <gtest/gtest.h>

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crypto/crypto.h"
#include "common/store/keyring.h"
#include "common/store/store.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/records.pb.h"
#include "securitysvc/sharding/router.h"
#include "tests/cluster_fixture.h"
#include "tests/twin_helpers.h"
#include "twin/attestation_client.h"
#include "twin/state_file.h"

namespace sphere::testing {
namespace {

class AttestationE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start("e2e", 3);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    auto tenant = cluster_->CreateTenant("Contoso");
    ASSERT_TRUE(tenant.ok()) << tenant.status();
    tenant_ = new v1::Tenant(*tenant);
    auto product = cluster_->CreateProduct(tenant_->id(), "DW100");
    ASSERT_TRUE(product.ok()) << product.status();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete tenant_;
  }

  // NewDevice manufactures an in-process device, registers and claims it.
  std::unique_ptr<mcu::Device> NewDevice(const std::string& seed,
                                         bool register_it = true) {
    auto dev = ManufactureGenuine(*cluster_, seed);
    if (dev != nullptr && register_it) {
      RegisterAndClaim(cluster_, tenant_->id(), *dev);
    }
    return dev;
  }

  v1::GetChallengeResponse Challenge(int shard, const std::string& device_id) {
    v1::GetChallengeResponse resp;
    grpc::Status st = GetChallenge(cluster_, shard, device_id, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }

  // Successes: sum over shards of
  // sphere_attestations_total{outcome="UP_TO_DATE"}.
  uint64_t Successes() {
    uint64_t total = 0;
    for (const auto& s : cluster_->config().shards) {
      auto text = cluster_->Metrics(s.address);
      EXPECT_TRUE(text.ok()) << text.status();
      for (absl::string_view line : absl::StrSplit(*text, '\n')) {
        if (absl::ConsumePrefix(
                &line, "sphere_attestations_total{outcome=\"UP_TO_DATE\"} ")) {
          uint64_t v = 0;
          EXPECT_TRUE(absl::SimpleAtoi(line, &v));
          total += v;
        }
      }
    }
    return total;
  }

  static LocalCluster* cluster_;
  static v1::Tenant* tenant_;
};

LocalCluster* AttestationE2ETest::cluster_ = nullptr;
v1::Tenant* AttestationE2ETest::tenant_ = nullptr;

TEST_F(AttestationE2ETest, TwinProcessAttestsAndChainPassesOpensslVerify) {
  const std::string cluster_json = cluster_->dir() + "/cluster.json";
  auto [rc, out] =
      RunCommand({BinaryPath("securitysvc/factory/factory"), "--cluster",
                  cluster_json, "--name", "dw100-e2e"});
  ASSERT_EQ(rc, 0) << out;
  std::vector<std::string> words = absl::StrSplit(out, ' ');
  ASSERT_GE(words.size(), 4u) << out;
  std::string device_id(absl::StripAsciiWhitespace(words[3]));
  ASSERT_TRUE(cluster_->Claim(tenant_->id(), device_id).ok());

  const std::string chain = cluster_->dir() + "/dw100-e2e-chain.pem";
  std::tie(rc, out) =
      RunCommand({BinaryPath("twin/twin"), "--cluster", cluster_json, "--name",
                  "dw100-e2e", "--min_catalog_revision",
                  absl::StrCat(CatalogRevision(cluster_)), "--chain_out", chain,
                  "attest"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "outcome UP_TO_DATE")) << out;
  EXPECT_TRUE(absl::StrContains(out, absl::StrCat("CN=", device_id))) << out;
  // One state file per twin, and it holds the issued chain.
  auto state =
      twin::ReadTwinState(twin::TwinStatePath(cluster_->dir(), "dw100-e2e"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->certificate_chain_pem(), *util::ReadFile(chain));
  EXPECT_FALSE(state->session_token().empty());
  auto [ls_rc, ls] =
      RunCommand({"/bin/ls", "-A", cluster_->dir() + "/twins/dw100-e2e"});
  EXPECT_EQ(ls, "twin.state\n");

  std::tie(rc, out) = RunCommand({"/usr/bin/openssl", "verify", "-CAfile",
                                  cluster_->dir() + "/pki/root.pem",
                                  "-untrusted", chain, chain});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, ": OK")) << out;
  auto pem = util::ReadFile(chain);
  ASSERT_TRUE(pem.ok());
  auto leaf = crypto::ParseCertificate(crypto::SplitPemChain(*pem)[0]);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(leaf->claims.device_id, device_id);
  EXPECT_EQ(leaf->claims.tenant_id, tenant_->id());
  EXPECT_EQ(leaf->claims.scope, "full");
  EXPECT_EQ(leaf->claims.epoch, "0");  // ownership epoch at issuance
}

TEST_F(AttestationE2ETest, Fault_TwinProcessIsNotRetriedWhenRefused) {
  // An unclaimed twin is refused (FAILED_PRECONDITION): the twin process
  // reports the shard's answer and exits instead of retrying it for its
  // whole --retry_budget, and keeps no certificate.
  const std::string cluster_json = cluster_->dir() + "/cluster.json";
  auto [rc, out] =
      RunCommand({BinaryPath("securitysvc/factory/factory"), "--cluster",
                  cluster_json, "--name", "dw100-unclaimed"});
  ASSERT_EQ(rc, 0) << out;
  const uint64_t successes = Successes();
  std::tie(rc, out) = RunCommand(
      {BinaryPath("twin/twin"), "--cluster", cluster_json, "--name",
       "dw100-unclaimed", "--min_catalog_revision",
       absl::StrCat(CatalogRevision(cluster_)), "--retry_budget=1h", "attest"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_TRUE(absl::StrContains(out, "twin: error:")) << out;
  EXPECT_TRUE(absl::StrContains(out, "GetChallenge at ")) << out;
  EXPECT_EQ(Successes(), successes);
  auto state = twin::ReadTwinState(
      twin::TwinStatePath(cluster_->dir(), "dw100-unclaimed"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(state->certificate_chain_pem().empty());
  EXPECT_TRUE(state->session_token().empty());
}

TEST_F(AttestationE2ETest, ClientFollowsShardRedirectsTransparently) {
  auto dev = NewDevice("redirect-device");
  int owner = OwnerShard(cluster_, dev->device_id());
  ASSERT_GE(owner, 0);
  int other = (owner + 1) % 3;
  // A non-owner answers with a redirect naming the owner.
  auto stub = cluster_->ShardStub(other, cluster_->GatewayTls());
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  v1::GetChallengeRequest req;
  req.set_device_id(dev->device_id());
  v1::GetChallengeResponse resp;
  grpc::Status st = stub->GetChallenge(&ctx, req, &resp);
  ASSERT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  auto redirect = sharding::RedirectFrom(ctx, st);
  ASSERT_TRUE(redirect.has_value());
  EXPECT_EQ(redirect->first, cluster_->config().shards[owner].id);
  EXPECT_EQ(redirect->second, cluster_->config().shards[owner].address);

  // The twin client library starts at the wrong shard and follows.
  std::vector<cluster::ShardEndpoint> start_elsewhere = {
      cluster_->config().shards[other]};
  twin::AttestationClient client(start_elsewhere, cluster_->GatewayTls());
  mcu::Device* d = dev.get();
  auto r = client.Attest(
      d->device_id(), [d](absl::string_view n) { return d->Quote(n); },
      CatalogRevision(cluster_));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);
  EXPECT_EQ(client.redirects(), 1);

  // Operators read the device's status from its shard (the shards' TLS
  // accepts the platform operator credential); another shard names the
  // owner instead of answering.
  auto status = [&](int shard, v1::GetDeviceStatusResponse* out) {
    auto s = v1::DeviceStatusService::NewStub(rpc::NewChannel(
        cluster_->config().shards[shard].address, cluster_->OperatorTls()));
    grpc::ClientContext c;
    c.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::GetDeviceStatusRequest q;
    q.add_device_ids(dev->device_id());
    return s->GetDeviceStatus(&c, q, out);
  };
  v1::GetDeviceStatusResponse elsewhere, at_owner;
  st = status(other, &elsewhere);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(elsewhere.not_here_size(), 1) << elsewhere.DebugString();
  EXPECT_EQ(elsewhere.not_here(0).shard_id(),
            cluster_->config().shards[owner].id);
  EXPECT_EQ(elsewhere.not_here(0).address(),
            cluster_->config().shards[owner].address);
  EXPECT_EQ(elsewhere.devices_size(), 0);
  st = status(owner, &at_owner);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(at_owner.devices_size(), 1) << at_owner.DebugString();
  EXPECT_EQ(at_owner.devices(0).last_attestation_outcome(), "UP_TO_DATE");
  EXPECT_GT(at_owner.devices(0).last_attested_unix_ms(), 0);
  EXPECT_EQ(at_owner.devices(0).os_version(), "1");
}

TEST_F(AttestationE2ETest, Attack_ReplayedNonceIsRejectedAndChangesNothing) {
  auto dev = NewDevice("replay-device");
  int owner = OwnerShard(cluster_, dev->device_id());
  ASSERT_GE(owner, 0);
  auto challenge = Challenge(owner, dev->device_id());
  v1::AttestRequest req;
  req.set_device_id(dev->device_id());
  auto quote = dev->Quote(challenge.nonce());
  ASSERT_TRUE(quote.ok());
  *req.mutable_quote() = *quote;
  v1::AttestResponse resp;
  ASSERT_TRUE(SendAttest(*cluster_, owner, req, &resp).ok());
  const uint64_t successes = Successes();

  // The attacker captured the request and replays it verbatim.
  v1::AttestResponse replay_resp;
  grpc::Status st = SendAttest(*cluster_, owner, req, &replay_resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "already used nonce"))
      << st.error_message();
  EXPECT_TRUE(replay_resp.certificate_chain_pem().empty());
  EXPECT_EQ(Successes(), successes);
}

TEST_F(AttestationE2ETest,
       Attack_QuoteSignedByWrongKeyIsRejectedAndChangesNothing) {
  auto victim = NewDevice("victim-device");
  auto attacker = NewDevice("attacker-device", /*register_it=*/false);
  int owner = OwnerShard(cluster_, victim->device_id());
  ASSERT_GE(owner, 0);
  auto challenge = Challenge(owner, victim->device_id());
  const uint64_t successes = Successes();

  // The attacker's Pluton signs a quote over the victim's nonce, and claims
  // to be the victim.
  auto forged = attacker->Quote(challenge.nonce());
  ASSERT_TRUE(forged.ok());
  v1::QuoteBody body;
  ASSERT_TRUE(body.ParseFromString(forged->body()));
  body.set_device_id(victim->device_id());
  forged->set_body(body.SerializeAsString());  // signature no longer matches
  v1::AttestRequest req;
  req.set_device_id(victim->device_id());
  *req.mutable_quote() = *forged;
  v1::AttestResponse resp;
  grpc::Status st = SendAttest(*cluster_, owner, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(
      absl::StrContains(absl::AsciiStrToLower(st.error_message()), "signature"))
      << st.error_message();
  EXPECT_TRUE(resp.certificate_chain_pem().empty());
  EXPECT_EQ(Successes(), successes);

  // Nothing changed: the victim's own nonce is still unused and works.
  auto genuine = victim->Quote(challenge.nonce());
  ASSERT_TRUE(genuine.ok());
  req.mutable_quote()->CopyFrom(*genuine);
  ASSERT_TRUE(SendAttest(*cluster_, owner, req, &resp).ok());
  EXPECT_EQ(Successes(), successes + 1);
}

// Asks every shard for a challenge for `device_id` with `tls`; returns the
// first non-redirect status.
grpc::Status ChallengeAnywhere(LocalCluster* c, const rpc::TlsFiles& tls,
                               const std::string& device_id,
                               int64_t min_revision = 0) {
  grpc::Status last;
  for (size_t i = 0; i < c->config().shards.size(); ++i) {
    auto stub = c->ShardStub(i, tls);
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::GetChallengeRequest req;
    req.set_device_id(device_id);
    req.set_min_catalog_revision(min_revision);
    v1::GetChallengeResponse resp;
    last = stub->GetChallenge(&ctx, req, &resp);
    if (!sharding::RedirectFrom(ctx, last)) return last;
  }
  return last;
}

TEST_F(AttestationE2ETest, Attack_OperatorCredentialCannotAttestDevices) {
  auto dev = NewDevice("operator-probe-device");
  const uint64_t successes = Successes();
  grpc::Status st =
      ChallengeAnywhere(cluster_, cluster_->OperatorTls(), dev->device_id());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "may not attest devices"))
      << st.error_message();
  EXPECT_EQ(Successes(), successes);
}

TEST_F(AttestationE2ETest,
       Attack_DeviceCannotRequestChallengesForAnotherDevice) {
  // A real twin process's manufacturing identity asks for another device's
  // challenge (to burn its capacity or probe it): refused; for itself: fine.
  const std::string cluster_json = cluster_->dir() + "/cluster.json";
  auto [rc, out] =
      RunCommand({BinaryPath("securitysvc/factory/factory"), "--cluster",
                  cluster_json, "--name", "dw100-peer"});
  ASSERT_EQ(rc, 0) << out;
  std::vector<std::string> words = absl::StrSplit(out, ' ');
  ASSERT_GE(words.size(), 4u) << out;
  std::string peer_id(absl::StripAsciiWhitespace(words[3]));
  rpc::TlsFiles peer_tls = TwinProcessTls(*cluster_, "dw100-peer");

  auto victim = NewDevice("challenge-victim");
  const uint64_t successes = Successes();
  grpc::Status st = ChallengeAnywhere(cluster_, peer_tls, victim->device_id());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(
      absl::StrContains(st.error_message(), "a device attests only for itself"))
      << st.error_message();
  EXPECT_EQ(Successes(), successes);
  // Its own challenges are allowed (once claimed, shards know it).
  ASSERT_TRUE(cluster_->Claim(tenant_->id(), peer_id).ok());
  auto revision = cluster_->ManagementRevision();
  ASSERT_TRUE(revision.ok());
  grpc::Status own = ChallengeAnywhere(cluster_, peer_tls, peer_id, *revision);
  EXPECT_TRUE(own.ok()) << own.error_message();
}

TEST_F(AttestationE2ETest, Attack_UnregisteredDeviceGetsNotFound) {
  auto rogue = NewDevice("rogue-device", /*register_it=*/false);
  auto stub = cluster_->ShardStub(0, cluster_->GatewayTls());
  bool saw_not_found = false;
  for (size_t i = 0; i < cluster_->config().shards.size(); ++i) {
    auto s = cluster_->ShardStub(i, cluster_->GatewayTls());
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::GetChallengeRequest req;
    req.set_device_id(rogue->device_id());
    v1::GetChallengeResponse resp;
    grpc::Status st = s->GetChallenge(&ctx, req, &resp);
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
      saw_not_found = true;
      EXPECT_TRUE(absl::StrContains(
          st.error_message(),
          "is not claimed; claim it with spherectl device claim"));
    } else {
      EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    }
  }
  EXPECT_TRUE(saw_not_found);
}

// Runs last in the suite (gtest runs tests in declaration order): stops the
// cluster and reads the shards' encrypted databases to check that exactly the
// acknowledged successes were recorded and every rejection left no device
// record behind.
TEST_F(AttestationE2ETest,
       ZZ_ShardDatabasesHoldExactlyTheAcknowledgedAttestations) {
  const uint64_t successes = Successes();
  ASSERT_TRUE(cluster_->Stop().ok());
  uint64_t device_records = 0, success_history = 0, failure_history = 0;
  for (const auto& s : cluster_->config().shards) {
    std::string sdir = absl::StrCat(cluster_->dir(), "/shards/", s.id);
    auto key = store::LoadOrCreateDataKey(cluster_->dir() + "/pki/master.key",
                                          sdir + "/data.key.wrapped");
    ASSERT_TRUE(key.ok()) << key.status();
    store::RocksOptions o;
    o.data_key = *key;
    auto db =
        store::OpenRocksStore(sdir + "/db", attestation::ColumnFamilies(), o);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Scan(attestation::kDevicesCf, "",
                           [&](absl::string_view, absl::string_view) {
                             ++device_records;
                             return true;
                           })
                    .ok());
    ASSERT_TRUE((*db)
                    ->Scan(attestation::kHistoryCf, "",
                           [&](absl::string_view, absl::string_view v) {
                             v1::AttestationRecord r;
                             EXPECT_TRUE(r.ParseFromArray(v.data(), v.size()));
                             (r.success() ? success_history
                                          : failure_history)++;
                             return true;
                           })
                    .ok());
  }
  EXPECT_EQ(success_history, successes);
  // twin + redirect + replay + victim: four devices attested.
  EXPECT_EQ(device_records, 4u);
  // The replay and the forgery were recorded as rejected attempts.
  EXPECT_GE(failure_history, 2u);
}

}  // namespace
}  // namespace sphere::testing
