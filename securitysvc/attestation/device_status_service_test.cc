// DeviceStatusService's store reads run on its own bounded worker pool, never
// on a gRPC callback thread: a whole shard in-process (TestPlatform) over a
// store that holds one device's reads until the test releases them. While a
// read is held, other calls on the same server complete, and a full queue (or
// a reader over its share) is answered RESOURCE_EXHAUSTED at once with
// nothing read.
#include "securitysvc/attestation/device_status_service.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/rpc.h"
#include "common/store/forwarding_store.h"
#include "common/store/memory_store.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/shard_server/test_platform.h"

namespace sphere::attestation {
namespace {

constexpr absl::Duration kWait = absl::Seconds(60);

// HoldingStore: a ForwardingStore (a MemoryStore) whose reads of the watched
// devices (a Get of their attestation record, a scan of their history) are
// counted, and whose reads of the held device wait until Release.
class HoldingStore final : public store::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  void Watch(const std::string& id) {
    absl::MutexLock l(&mu_);
    watched_.insert(id);
  }
  void Hold(const std::string& id) {
    absl::MutexLock l(&mu_);
    held_ = id;
  }
  void Release() {
    absl::MutexLock l(&mu_);
    released_ = true;
  }
  // AwaitHeld: true once `n` reads are waiting in Hold.
  bool AwaitHeld(int n) {
    absl::MutexLock l(&mu_);
    want_ = n;
    return mu_.AwaitWithTimeout(
        absl::Condition(this, &HoldingStore::HeldEnough), kWait);
  }
  int reads() {
    absl::MutexLock l(&mu_);
    return reads_;
  }

 protected:
  void BeforeGet(absl::string_view cf, absl::string_view key) override {
    if (cf == kDevicesCf) Observe(key);
  }
  void BeforeScan(absl::string_view cf, absl::string_view prefix) override {
    if (cf == kHistoryCf && absl::EndsWith(prefix, "|")) {
      Observe(prefix.substr(0, prefix.size() - 1));
    }
  }

 private:
  bool HeldEnough() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return waiting_ >= want_;
  }
  void Observe(absl::string_view id) {
    absl::MutexLock l(&mu_);
    if (!watched_.contains(id)) return;
    ++reads_;
    if (id != held_) return;
    ++waiting_;
    mu_.Await(absl::Condition(&released_));
    --waiting_;
  }

  absl::Mutex mu_;
  absl::flat_hash_set<std::string> watched_ ABSL_GUARDED_BY(mu_);
  std::string held_ ABSL_GUARDED_BY(mu_);
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  int want_ ABSL_GUARDED_BY(mu_) = 0;
  int reads_ ABSL_GUARDED_BY(mu_) = 0;
};

// ExpectBusy: the answer to a read refused at once for want of queue room.
void ExpectBusy(const grpc::Status& st) {
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(),
                                "the queue is full or this caller already "
                                "has its share of it queued"))
      << st.error_message();
}

// ReleaseAtExit: releases held reads when a test ends early (declared after
// the calls, so they are answered before their threads are joined).
struct ReleaseAtExit {
  HoldingStore* store;
  ~ReleaseAtExit() { store->Release(); }
};

// Calls: calls run on their own threads; the test waits for answers.
class Calls {
 public:
  ~Calls() {
    for (auto& t : threads_) t.join();
  }
  // Start runs `call` on a new thread; returns its index.
  int Start(std::function<grpc::Status()> call) {
    int i;
    {
      absl::MutexLock l(&mu_);
      i = static_cast<int>(results_.size());
      results_.emplace_back();
    }
    threads_.emplace_back([this, i, call = std::move(call)] {
      grpc::Status st = call();
      absl::MutexLock l(&mu_);
      results_[i] = Result{true, st};
      ++done_;
    });
    return i;
  }
  // AwaitDone: true once `n` calls have their answer.
  bool AwaitDone(int n) {
    absl::MutexLock l(&mu_);
    target_ = n;
    return mu_.AwaitWithTimeout(absl::Condition(this, &Calls::Reached), kWait);
  }
  // FirstAnswered: once `answered_before` + 1 calls have their answer, the
  // one of calls `x` and `y` that has it, then the other; nullopt after
  // kWait.
  std::optional<std::pair<int, int>> FirstAnswered(int x, int y,
                                                   int answered_before) {
    if (!AwaitDone(answered_before + 1)) return std::nullopt;
    if (done(x)) return std::make_pair(x, y);
    if (done(y)) return std::make_pair(y, x);
    return std::nullopt;
  }
  bool done(int i) {
    absl::MutexLock l(&mu_);
    return results_[i].done;
  }
  grpc::Status status(int i) {
    absl::MutexLock l(&mu_);
    return results_[i].status;
  }

 private:
  struct Result {
    bool done = false;
    grpc::Status status;
  };
  bool Reached() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ >= target_;
  }
  absl::Mutex mu_;
  std::vector<Result> results_ ABSL_GUARDED_BY(mu_);
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  int target_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

class DeviceStatusPoolTest : public ::testing::Test {
 protected:
  // Start: a shard whose status reads run on `threads` worker threads with
  // `max_queue` waiting, `max_per_key` of them per reader.
  void Start(int threads, size_t max_queue, size_t max_per_key) {
    shard::TestPlatform::Options o;
    o.attestation.status_reads.threads = threads;
    o.attestation.status_reads.max_queue = max_queue;
    o.attestation.status_reads.max_per_key = max_per_key;
    o.open_store = [this](const std::vector<std::string>& cfs)
        -> absl::StatusOr<std::unique_ptr<store::Store>> {
      auto inner = store::MemoryStore::Create(cfs);
      if (!inner.ok()) return inner.status();
      auto s = std::make_unique<HoldingStore>(*std::move(inner));
      store_ = s.get();
      return std::unique_ptr<store::Store>(std::move(s));
    };
    absl::Status s = platform_.Start(o);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_NE(store_, nullptr);
    for (const char* seed :
         {"status-pool-held", "status-pool-other", "status-pool-unwatched"}) {
      auto d = platform_.NewDevice(seed);
      ASSERT_TRUE(d.ok()) << d.status();
      devices_.push_back(*std::move(d));
    }
    store_->Watch(Held());
    store_->Watch(Other());
  }
  std::string Held() { return devices_[0]->device_id(); }
  std::string Other() { return devices_[1]->device_id(); }
  // Unwatched: for calls whose store reads the test does not count.
  std::string Unwatched() { return devices_[2]->device_id(); }

  rpc::TlsFiles Operator(const std::string& tenant) {
    crypto::DeviceClaims c;
    if (tenant.empty()) {
      c.scope = "platform-operator";
    } else {
      c.tenant_id = tenant;
    }
    return platform_.Issue("operator", crypto::KeyUsage::kClientAuth, c);
  }
  // Call: one DeviceStatusService `method` call as `tls`, to run later.
  template <typename Request, typename Response>
  std::function<grpc::Status()> Call(
      const rpc::TlsFiles& tls,
      grpc::Status (v1::DeviceStatusService::Stub::*method)(
          grpc::ClientContext*, const Request&, Response*),
      Request req, Response* resp) {
    return [this, tls, method, req, resp] {
      auto stub = platform_.StatusStub(tls);
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(kWait));
      return ((*stub).*method)(&ctx, req, resp);
    };
  }
  std::function<grpc::Status()> Status(const rpc::TlsFiles& tls,
                                       const std::string& id,
                                       v1::GetDeviceStatusResponse* resp) {
    v1::GetDeviceStatusRequest req;
    req.add_device_ids(id);
    return Call(tls, &v1::DeviceStatusService::Stub::GetDeviceStatus, req,
                resp);
  }
  std::function<grpc::Status()> History(const rpc::TlsFiles& tls,
                                        const std::string& id,
                                        v1::GetDeviceHistoryResponse* resp) {
    v1::GetDeviceHistoryRequest req;
    req.set_device_id(id);
    return Call(tls, &v1::DeviceStatusService::Stub::GetDeviceHistory, req,
                resp);
  }
  // Challenge: an AttestationService call on the same server.
  grpc::Status Challenge(const std::string& id) {
    auto stub = platform_.Stub(platform_.gateway_tls());
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(kWait));
    v1::GetChallengeRequest req;
    req.set_device_id(id);
    v1::GetChallengeResponse resp;
    return stub->GetChallenge(&ctx, req, &resp);
  }

  shard::TestPlatform platform_;
  HoldingStore* store_ = nullptr;
  std::vector<std::unique_ptr<mcu::Device>> devices_;
};

TEST_F(DeviceStatusPoolTest,
       ReadsRunOffTheCallbackThreadAndAFullQueueIsRefusedAtOnce) {
  // One reader thread, two waiting calls, one of them per reader.
  Start(/*threads=*/1, /*max_queue=*/2, /*max_per_key=*/1);
  store_->Hold(Held());
  Calls calls;
  ReleaseAtExit release_at_exit{store_};
  v1::GetDeviceStatusResponse held, p1, p2, t1, t2;
  const rpc::TlsFiles platform_op = Operator("");
  const int a = calls.Start(Status(platform_op, Held(), &held));
  ASSERT_TRUE(store_->AwaitHeld(1)) << "the read never reached the store";
  ASSERT_EQ(store_->reads(), 1);

  // Its read is held on the worker; other calls on this server still run.
  ASSERT_TRUE(Challenge(Unwatched()).ok());
  EXPECT_FALSE(calls.done(a));

  // Two more platform-operator reads: one waits (the reader's one share of
  // the queue), the other is refused at once, before any read.
  const int b = calls.Start(Status(platform_op, Other(), &p1));
  const int c = calls.Start(Status(platform_op, Other(), &p2));
  const auto first = calls.FirstAnswered(b, c, /*answered_before=*/0);
  ASSERT_TRUE(first.has_value());
  const auto [refused, waiting] = *first;
  ExpectBusy(calls.status(refused));
  EXPECT_FALSE(calls.done(waiting));
  EXPECT_EQ(store_->reads(), 1);  // nothing read for the refused call

  // Two tenants' reads: one takes the last queue slot, the other finds the
  // queue full and is refused at once.
  const rpc::TlsFiles contoso = Operator(shard::TestPlatform::kTenant);
  const rpc::TlsFiles fabrikam = Operator("tenant-fabrikam");
  const int d = calls.Start(Status(contoso, Other(), &t1));
  const int e = calls.Start(Status(fabrikam, Other(), &t2));
  const auto second = calls.FirstAnswered(d, e, /*answered_before=*/1);
  ASSERT_TRUE(second.has_value());
  const auto [full, served] = *second;
  ExpectBusy(calls.status(full));
  EXPECT_FALSE(calls.done(served));
  EXPECT_EQ(store_->reads(), 1);
  EXPECT_FALSE(calls.done(a));

  // Released: every queued call is answered in full.
  store_->Release();
  ASSERT_TRUE(calls.AwaitDone(5));
  ASSERT_TRUE(calls.status(a).ok()) << calls.status(a).error_message();
  ASSERT_EQ(held.devices_size(), 1);
  EXPECT_EQ(held.devices(0).device_id(), Held());
  ASSERT_TRUE(calls.status(waiting).ok());
  ASSERT_EQ((waiting == b ? p1 : p2).devices_size(), 1);
  EXPECT_EQ((waiting == b ? p1 : p2).devices(0).device_id(), Other());
  ASSERT_TRUE(calls.status(served).ok());
  if (served == d) {  // Contoso owns the device: one more record read
    ASSERT_EQ(t1.devices_size(), 1);
    EXPECT_EQ(store_->reads(), 3);
  } else {  // Fabrikam does not: answered as unknown, nothing read
    EXPECT_EQ(t2.unknown_size(), 1);
    EXPECT_EQ(store_->reads(), 2);
  }
  // Nothing left queued: a later read is served at once.
  v1::GetDeviceStatusResponse later;
  ASSERT_TRUE(Status(platform_op, Held(), &later)().ok());
  EXPECT_EQ(later.devices_size(), 1);
}

TEST_F(DeviceStatusPoolTest, HistoryScansRunOffTheCallbackThread) {
  Start(/*threads=*/1, /*max_queue=*/1, /*max_per_key=*/1);
  store_->Hold(Held());
  Calls calls;
  ReleaseAtExit release_at_exit{store_};
  v1::GetDeviceHistoryResponse held, b_resp, c_resp;
  v1::GetDeviceStatusResponse status_resp;
  const rpc::TlsFiles op = Operator(shard::TestPlatform::kTenant);
  const int a = calls.Start(History(op, Held(), &held));
  ASSERT_TRUE(store_->AwaitHeld(1)) << "the scan never reached the store";
  const int reads = store_->reads();

  ASSERT_TRUE(Challenge(Unwatched()).ok());
  EXPECT_FALSE(calls.done(a));

  // A history read and a status read of the same reader: one waits, the
  // other is refused at once with nothing read.
  const int b = calls.Start(History(op, Other(), &b_resp));
  const int c = calls.Start(Status(op, Other(), &status_resp));
  const auto first = calls.FirstAnswered(b, c, /*answered_before=*/0);
  ASSERT_TRUE(first.has_value());
  const auto [refused, served] = *first;
  ExpectBusy(calls.status(refused));
  EXPECT_FALSE(calls.done(served));
  EXPECT_EQ(store_->reads(), reads);
  EXPECT_FALSE(calls.done(a));

  store_->Release();
  ASSERT_TRUE(calls.AwaitDone(3));
  ASSERT_TRUE(calls.status(a).ok()) << calls.status(a).error_message();
  EXPECT_EQ(held.device_id(), Held());
  EXPECT_EQ(held.entries_size(), 0);  // never attested
  EXPECT_TRUE(calls.status(served).ok())
      << calls.status(served).error_message();
}

}  // namespace
}  // namespace sphere::attestation
