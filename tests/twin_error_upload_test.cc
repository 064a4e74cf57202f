// A twin's error ring reaches the shard exactly once through the twin
// library: TwinDriver + AsyncAttestationClient over the gateway path
// (gateway certificate + the session token the twin's attestation earned),
// against an in-process shard (TestPlatform) hosting the ErrorReporting
// plug-in. The operator's QueryErrors is the check.
#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/attestation_client.h"
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "gtest/gtest.h"
#include "protos/error_reporting.grpc.pb.h"
#include "securitysvc/errors/error_plugin.h"
#include "securitysvc/shard_server/test_platform.h"
#include "twin/driver.h"
#include "twin/twin.h"

namespace sphere {
namespace {

using shard::TestPlatform;

// CountingTransport forwards to the real client and counts what the shard
// acknowledged (answers arrive on gRPC threads).
class CountingTransport final : public client::AttestationTransport {
 public:
  explicit CountingTransport(client::AttestationTransport* inner)
      : inner_(inner) {}
  void GetChallenge(v1::GetChallengeRequest r,
                    ChallengeCallback done) override {
    inner_->GetChallenge(std::move(r), std::move(done));
  }
  void Attest(v1::AttestRequest r, AttestCallback done) override {
    inner_->Attest(std::move(r), std::move(done));
  }
  void UploadErrors(v1::UploadErrorsRequest r, std::string token,
                    UploadErrorsCallback done) override {
    ++uploads;
    if (token.empty()) ++without_token;
    inner_->UploadErrors(std::move(r), std::move(token),
                         [this, done = std::move(done)](
                             absl::StatusOr<v1::UploadErrorsResponse> a) {
                           if (a.ok()) {
                             stored += a->stored();
                             duplicates += a->duplicates();
                           } else {
                             ++failed;
                           }
                           done(std::move(a));
                         });
  }
  std::atomic<int> uploads{0}, without_token{0}, failed{0};
  std::atomic<uint64_t> stored{0}, duplicates{0};

 private:
  client::AttestationTransport* const inner_;
};

rpc::TlsFiles OperatorTls(TestPlatform& platform) {
  crypto::DeviceClaims c;
  c.scope = "platform-operator";
  return platform.Issue("platform-op", crypto::KeyUsage::kClientAuth, c);
}

TEST(TwinErrorUploadTest, RingReachesShardExactlyOnceThroughGateway) {
  TestPlatform platform;
  errors::ErrorReportingPlugin* plugin = nullptr;
  TestPlatform::Options o;
  o.extra_plugins = [&plugin](TestPlatform&) {
    errors::ErrorReportingPlugin::Options po;
    po.sweep_interval = absl::ZeroDuration();
    auto p = std::make_unique<errors::ErrorReportingPlugin>(po);
    plugin = p.get();
    std::vector<std::unique_ptr<shard::ShardPlugin>> v;
    v.push_back(std::move(p));
    return v;
  };
  ASSERT_TRUE(platform.Start(o).ok());

  twin::ErrorUploadPolicy policy;
  policy.batch_delay = absl::ZeroDuration();
  policy.max_batch = 4;  // several batches per twin
  policy.poll_interval = absl::Milliseconds(20);
  twin::TwinConfig config;
  config.verify_chain = false;  // the chain is the attestation tests' job
  config.error_upload = &policy;

  constexpr int kTwins = 3;
  constexpr int kEventsPerTwin = 10;
  std::vector<std::unique_ptr<twin::Twin>> twins;
  for (int i = 0; i < kTwins; ++i) {
    auto d = platform.NewDevice(absl::StrCat("upload-twin-", i));
    ASSERT_TRUE(d.ok()) << d.status();
    twins.push_back(std::make_unique<twin::Twin>(*std::move(d), &config));
  }

  client::AsyncAttestationClient grpc_client(
      {cluster::ShardEndpoint{"shard-0", platform.server().address()}},
      platform.gateway_tls(), {});
  CountingTransport transport(&grpc_client);
  const uint64_t want = kTwins * kEventsPerTwin;
  {
    twin::TwinDriver driver(&transport, Clock::Real());
    for (auto& t : twins) driver.Add(t.get());
    ASSERT_TRUE(
        driver.RunUntil([&] { return driver.certified() == twins.size(); },
                        absl::Now() + absl::Seconds(60)));
    // Each device crashes an app kEventsPerTwin times: APP_CRASH events in
    // its ring (the mcu-model's own trigger).
    for (auto& t : twins) {
      const size_t before = t->device().pending_error_events();
      for (int k = 0; k < kEventsPerTwin; ++k) {
        (void)t->device().ReportAppExit("crashy-app", 3, 0);
      }
      ASSERT_EQ(t->device().pending_error_events(), before + kEventsPerTwin);
    }
    // Settled: every ring drained, nothing pending or in flight.
    auto drained = [&] {
      if (driver.outstanding() != 0 || transport.stored.load() < want) {
        return false;
      }
      for (auto& t : twins) {
        if (t->device().pending_error_events() != 0) return false;
        if (t->error_uploader() == nullptr) return false;
        if (t->error_uploader()->pending() != 0) return false;
      }
      return true;
    };
    ASSERT_TRUE(driver.RunUntil(drained, absl::Now() + absl::Seconds(60)))
        << "stored " << transport.stored.load() << " of " << want;
  }
  EXPECT_GE(transport.stored.load(), want);
  EXPECT_EQ(transport.duplicates.load(), 0u);
  EXPECT_EQ(transport.failed.load(), 0);
  EXPECT_EQ(transport.without_token.load(), 0);  // gateway path, with token
  EXPECT_GE(transport.uploads.load(), kTwins * (kEventsPerTwin / 4));
  for (auto& t : twins) EXPECT_EQ(t->device().dropped_error_events(), 0u);

  // The operator sees each twin's events once, sequences distinct.
  auto stub = v1::ErrorReportingService::NewStub(
      rpc::NewChannel(platform.server().address(), OperatorTls(platform)));
  uint64_t total = 0;
  for (auto& t : twins) {
    v1::QueryErrorsRequest q;
    q.set_tenant_id(TestPlatform::kTenant);
    q.set_device_id(t->device().device_id());
    q.set_page_size(1000);
    v1::QueryErrorsResponse r;
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    grpc::Status st = stub->QueryErrors(&ctx, q, &r);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_GE(r.reports_size(), kEventsPerTwin);
    std::set<uint64_t> seqs;
    int crashes = 0;
    for (const auto& rep : r.reports()) {
      EXPECT_EQ(rep.device_id(), t->device().device_id());
      seqs.insert(rep.event().sequence());
      crashes += rep.event().kind() == v1::ErrorEvent::APP_CRASH;
    }
    EXPECT_EQ(crashes, kEventsPerTwin);
    // Exactly once: no sequence twice, none missing (the ring numbers its
    // events 1, 2, ... and dropped none).
    ASSERT_EQ(seqs.size(), static_cast<size_t>(r.reports_size()));
    EXPECT_EQ(*seqs.begin(), 1u);
    EXPECT_EQ(*seqs.rbegin(), seqs.size());
    total += r.reports_size();
  }
  EXPECT_EQ(total, transport.stored.load());
  (void)plugin;
}

}  // namespace
}  // namespace sphere
