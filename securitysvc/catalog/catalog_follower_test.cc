// CatalogFollower tests against a scripted fake management Watch (in-process
// gRPC, port 0). Waits are on notifications raised by the follower's
// on_applied hook or by the fake, never on sleeps.
#include "securitysvc/catalog/catalog_follower.h"

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/crypto/crypto.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "common/util/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/attestation/attestation.h"

namespace sphere::catalog {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kGenerous = absl::Seconds(30);  // safety net only

// FakeManagement answers Watch with a script per call (call index from 0).
class FakeManagement final : public v1::ManagementService::Service {
 public:
  using Script = std::function<void(int call, const v1::WatchRequest&,
                                    grpc::ServerWriter<v1::WatchEvent>*)>;
  explicit FakeManagement(Script script) : script_(std::move(script)) {}

  grpc::Status Watch(grpc::ServerContext*, const v1::WatchRequest* req,
                     grpc::ServerWriter<v1::WatchEvent>* writer) override {
    int call;
    {
      absl::MutexLock l(&mu_);
      call = static_cast<int>(starts_.size());
      starts_.push_back(req->start_revision());
    }
    script_(call, *req, writer);
    return grpc::Status::OK;
  }

  std::vector<int64_t> starts() {
    absl::MutexLock l(&mu_);
    return starts_;
  }

 private:
  Script script_;
  absl::Mutex mu_;
  std::vector<int64_t> starts_ ABSL_GUARDED_BY(mu_);
};

constexpr char kTenant[] = "tenant-a";
constexpr char kGroup[] = "group-1";

v1::WatchEvent SnapshotEvent(int64_t revision) {
  v1::WatchEvent e;
  e.set_revision(revision);
  e.set_snapshot(true);
  return e;
}

std::string DeviceId(int n) {
  return crypto::HexEncode(crypto::Sha256(absl::StrCat("device ", n)));
}

v1::Image OsImage() {
  v1::Image i;
  i.set_image_hash(crypto::Sha256("kernel v1"));
  i.set_id(crypto::HexEncode(i.image_hash()));
  i.set_component("kernel");
  i.set_version(1);
  i.set_kind(v1::IMAGE_KIND_KERNEL);
  return i;
}

class CatalogFollowerTest : public ::testing::Test {
 protected:
  void StartServer(FakeManagement::Script script) {
    fake_ = std::make_unique<FakeManagement>(std::move(script));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(fake_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    if (follower_) follower_->Stop();
    if (!release_.HasBeenNotified()) release_.Notify();
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (server_) server_->Shutdown();
  }

  // Blocks a fake Watch call until the test ends.
  void HoldUntilStopped() { stop_.WaitForNotificationWithTimeout(kGenerous); }

  InMemoryCatalog view_{crypto::RandomBytes(32)};
  std::unique_ptr<FakeManagement> fake_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<CatalogFollower> follower_;
  absl::Notification release_;  // lets a paused snapshot continue
  absl::Notification stop_;
};

class RecordingSink : public attestation::RevocationSink {
 public:
  void RequestRevocation(attestation::RevocationRequest r) override {
    absl::MutexLock l(&mu_);
    requests.push_back(std::move(r));
  }
  absl::Mutex mu_;
  std::vector<attestation::RevocationRequest> requests;
};

// Issue 8 hole 2: snapshot events all carry the final revision, and the
// follower used to report that revision (and serve) mid-snapshot: devices
// were known, their images not yet, and a genuine device attesting in that
// window was reported as running an unsigned image and revoked.
TEST_F(CatalogFollowerTest, Fault_PausedSnapshotDoesNotAdvanceRevisionOrSync) {
  constexpr int64_t kRevision = 42;
  const std::string device_id = DeviceId(1);
  StartServer([&](int call, const v1::WatchRequest&,
                  grpc::ServerWriter<v1::WatchEvent>* w) {
    if (call != 0) return HoldUntilStopped();
    // First half: tenant, group, the device.
    v1::WatchEvent e = SnapshotEvent(kRevision);
    e.mutable_tenant()->set_id(kTenant);
    e.mutable_tenant()->set_name("Contoso");
    w->Write(e);
    e = SnapshotEvent(kRevision);
    e.mutable_device_group()->set_id(kGroup);
    e.mutable_device_group()->set_tenant_id(kTenant);
    w->Write(e);
    e = SnapshotEvent(kRevision);
    v1::Device* d = e.mutable_device();
    d->set_id(device_id);
    d->set_tenant_id(kTenant);
    d->set_device_group_id(kGroup);
    d->set_state(v1::CLAIMED);
    d->set_public_key(std::string(65, '\x04'));
    w->Write(e);
    // Pause mid-snapshot.
    release_.WaitForNotificationWithTimeout(kGenerous);
    e = SnapshotEvent(kRevision);
    *e.mutable_image() = OsImage();
    w->Write(e);
    e = SnapshotEvent(kRevision);
    e.set_snapshot_end(true);
    w->Write(e);
    HoldUntilStopped();
  });
  absl::Notification first_half, ended;
  CatalogFollowerOptions options;
  options.on_applied = [&](const v1::WatchEvent& e) {
    if (e.has_device() && !first_half.HasBeenNotified()) first_half.Notify();
    if (e.snapshot_end() && !ended.HasBeenNotified()) ended.Notify();
  };
  follower_ =
      std::make_unique<CatalogFollower>(channel_, &view_, nullptr, options);
  follower_->Start();
  ASSERT_TRUE(first_half.WaitForNotificationWithTimeout(kGenerous));

  // Mid-snapshot: nothing advanced, nothing half-applied is visible.
  EXPECT_FALSE(follower_->synced());
  EXPECT_FALSE(view_.synced());
  EXPECT_EQ(view_.revision(), 0);
  EXPECT_EQ(follower_->applied_revision(), 0);
  EXPECT_FALSE(follower_->WaitForRevision(kRevision, absl::ZeroDuration()));
  EXPECT_TRUE(absl::IsNotFound(view_.GetDevice(device_id).status()));

  // A shard built on this view refuses attestation instead of reporting an
  // unsigned image (and so never asks for a revocation).
  auto store = store::MemoryStore::Create(attestation::ColumnFamilies());
  ASSERT_TRUE(store.ok());
  FakeClock clock;
  attestation::NonceStore nonces(&clock);
  auth::SessionTokens tokens(crypto::RandomBytes(32));
  RecordingSink sink;
  attestation::Attestor::Options aopts;
  aopts.revocation_sink = &sink;
  attestation::Attestor attestor(&view_, store->get(), &nonces, &tokens, &clock,
                                 aopts);
  auto challenge = attestor.GetChallenge(device_id);
  EXPECT_EQ(challenge.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(challenge.status().message(), HasSubstr("not yet synced"));
  v1::AttestRequest req;
  req.set_device_id(device_id);
  req.mutable_quote()->set_body("quote of a device in the first half");
  auto attested = attestor.Attest(req);
  EXPECT_EQ(attested.status().code(), absl::StatusCode::kUnavailable);
  {
    absl::MutexLock l(&sink.mu_);
    EXPECT_TRUE(sink.requests.empty());
  }

  // The rest of the snapshot: everything becomes visible at once.
  release_.Notify();
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(kGenerous));
  EXPECT_TRUE(follower_->WaitUntilSynced(kGenerous));
  EXPECT_TRUE(follower_->WaitForRevision(kRevision, kGenerous));
  EXPECT_EQ(view_.revision(), kRevision);
  EXPECT_TRUE(view_.GetDevice(device_id).ok());
  EXPECT_TRUE(view_.FindImageForTenant(OsImage().image_hash(), kTenant).ok());
  EXPECT_TRUE(attestor.GetChallenge(device_id).ok());
}

// Issue 8 hole 1: a follower that could not take an event retried in a
// tight loop (~570 reconnects/min/shard) or moved past it. Now it resumes
// from the same event, with a growing backoff, and counts an alarm.
TEST_F(CatalogFollowerTest,
       Fault_UnappliableEventIsRetriedWithBackoffNeverSkipped) {
  absl::Notification third_call;
  StartServer([&](int call, const v1::WatchRequest&,
                  grpc::ServerWriter<v1::WatchEvent>* w) {
    if (call == 0) {
      v1::WatchEvent end = SnapshotEvent(3);
      end.set_snapshot_end(true);
      w->Write(end);
    }
    if (call <= 1) {
      // Revision 4: a tenant whose CA key cannot be unwrapped here.
      v1::WatchEvent bad;
      bad.set_revision(4);
      bad.mutable_tenant()->set_id(kTenant);
      bad.mutable_tenant()->set_wrapped_ca_key(std::string(60, 'x'));
      w->Write(bad);
      v1::WatchEvent next;
      next.set_revision(5);
      next.mutable_device()->set_id(DeviceId(5));
      w->Write(next);
      HoldUntilStopped();
      return;
    }
    third_call.Notify();
    HoldUntilStopped();
  });
  const uint64_t alarms_before =
      metrics::Counter("sphere_catalog_apply_failures_total", "")->Value();
  CatalogFollowerOptions options;
  options.initial_backoff = absl::Milliseconds(1);
  options.max_backoff = absl::Seconds(1);
  follower_ =
      std::make_unique<CatalogFollower>(channel_, &view_, nullptr, options);
  follower_->Start();
  ASSERT_TRUE(third_call.WaitForNotificationWithTimeout(kGenerous));

  EXPECT_EQ(fake_->starts(), (std::vector<int64_t>{0, 4, 4}));
  EXPECT_EQ(view_.revision(), 3);
  EXPECT_EQ(follower_->applied_revision(), 3);
  EXPECT_TRUE(follower_->synced());
  EXPECT_FALSE(follower_->WaitForRevision(4, absl::ZeroDuration()));
  EXPECT_TRUE(absl::IsNotFound(view_.GetDevice(DeviceId(5)).status()));
  EXPECT_EQ(follower_->apply_failures(), 2u);
  EXPECT_EQ(
      metrics::Counter("sphere_catalog_apply_failures_total", "")->Value(),
      alarms_before + 2);
  // No progress past the failure: the backoff kept doubling (1 -> 2 -> 4 ms).
  EXPECT_GE(follower_->current_backoff(), absl::Milliseconds(4));
}

// A stream that breaks mid-snapshot leaves nothing of it behind.
TEST_F(CatalogFollowerTest, Fault_StreamBrokenMidSnapshotIsDiscarded) {
  absl::Notification second_call;
  StartServer([&](int call, const v1::WatchRequest&,
                  grpc::ServerWriter<v1::WatchEvent>* w) {
    if (call == 0) {
      v1::WatchEvent e = SnapshotEvent(9);
      e.mutable_device()->set_id(DeviceId(9));
      w->Write(e);
      return;  // the stream ends without snapshot_end
    }
    second_call.Notify();
    HoldUntilStopped();
  });
  CatalogFollowerOptions options;
  options.initial_backoff = absl::Milliseconds(1);
  follower_ =
      std::make_unique<CatalogFollower>(channel_, &view_, nullptr, options);
  follower_->Start();
  ASSERT_TRUE(second_call.WaitForNotificationWithTimeout(kGenerous));
  EXPECT_EQ(fake_->starts(), (std::vector<int64_t>{0, 0}));
  EXPECT_FALSE(follower_->synced());
  EXPECT_EQ(view_.revision(), 0);
  EXPECT_TRUE(absl::IsNotFound(view_.GetDevice(DeviceId(9)).status()));
}

}  // namespace
}  // namespace sphere::catalog

namespace sphere::catalog {
namespace {

// Issue 15, bounded catalog lag: a follower whose management goes silent
// (partitioned: no event, no progress notification) makes the view stale
// past the limit, with a specific error and nothing changed; one progress
// notification makes it fresh again, still changing nothing.
TEST_F(CatalogFollowerTest, Fault_SilentSourceGoesStaleAndProgressHealsIt) {
  constexpr int64_t kRevision = 7;
  FakeClock clock;
  view_.SetStalenessLimit(&clock, absl::Seconds(30));
  absl::Notification send_progress;
  StartServer([&](int call, const v1::WatchRequest&,
                  grpc::ServerWriter<v1::WatchEvent>* w) {
    if (call == 0) {
      v1::WatchEvent end = SnapshotEvent(kRevision);
      end.set_snapshot_end(true);
      w->Write(end);
      send_progress.WaitForNotificationWithTimeout(kGenerous);
      v1::WatchEvent progress;
      progress.set_revision(kRevision);
      progress.set_progress(true);
      w->Write(progress);
    }
    HoldUntilStopped();
  });
  absl::Notification progressed;
  CatalogFollowerOptions options;
  options.on_progress = [&](const v1::WatchEvent&) { progressed.Notify(); };
  follower_ = std::make_unique<CatalogFollower>(
      channel_, &view_, [](const v1::ShardMap&) {}, options);
  follower_->Start();
  ASSERT_TRUE(follower_->WaitUntilSynced(kGenerous));
  EXPECT_TRUE(view_.CheckFresh().ok());

  clock.Advance(absl::Seconds(29));
  EXPECT_TRUE(view_.CheckFresh().ok()) << "within the bound";
  clock.Advance(absl::Seconds(2));
  absl::Status stale = view_.CheckFresh();
  EXPECT_TRUE(absl::IsUnavailable(stale)) << stale;
  EXPECT_THAT(stale.message(), HasSubstr("catalog stale"));
  EXPECT_THAT(stale.message(), HasSubstr("31s"));
  EXPECT_EQ(view_.staleness(), absl::Seconds(31));
  EXPECT_EQ(view_.revision(), kRevision);

  send_progress.Notify();
  ASSERT_TRUE(progressed.WaitForNotificationWithTimeout(kGenerous));
  EXPECT_TRUE(view_.CheckFresh().ok());
  EXPECT_EQ(view_.staleness(), absl::ZeroDuration());
  EXPECT_EQ(view_.revision(), kRevision);  // progress changed nothing
  EXPECT_TRUE(view_.synced());
}

}  // namespace
}  // namespace sphere::catalog
