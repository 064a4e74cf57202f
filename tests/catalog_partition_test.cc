// Issue 15: a shard partitioned from its catalog source stops issuing
// certificates once its catalog lag passes a bounded limit, with a specific
// error, and resumes by itself when the partition heals.
//
// Real processes: local_cluster (management + shard-0, management sending
// watch progress every 200 ms) and one more shard process, "shard-p", whose
// only way to management is a loopback TcpProxy the test cuts and heals (no
// iptables). shard-p runs with --max_catalog_staleness=2s.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/rpc/rpc.h"
#include "gtest/gtest.h"
#include "protos/attestation.grpc.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/tcp_proxy.h"
#include "tests/twin_helpers.h"

namespace sphere::testing {
namespace {

// ShardProcess: one shard binary started by the test, killed at the end. A
// thread drains its output (JSON log lines) so the child never blocks on a
// full pipe, and notes the address of its "shard ready" line.
class ShardProcess {
 public:
  absl::Status Start(const std::vector<std::string>& argv) {
    auto child = SpawnPiped(argv);
    if (!child.ok()) return child.status();
    child_ = *child;
    drain_ = std::thread([this] { Drain(); });
    return absl::OkStatus();
  }
  ~ShardProcess() {
    if (child_.pid > 0) {
      kill(child_.pid, SIGKILL);
      waitpid(child_.pid, nullptr, 0);
    }
    if (drain_.joinable()) drain_.join();  // EOF once the child is gone
    if (child_.out_fd >= 0) close(child_.out_fd);
  }
  // WaitReady blocks until the "shard ready" line (or the child's exit).
  absl::StatusOr<std::string> WaitReady() {
    if (!ready_.WaitForNotificationWithTimeout(absl::Seconds(90))) {
      return absl::DeadlineExceededError("shard not ready after 90 s");
    }
    absl::MutexLock l(&mu_);
    if (address_.empty()) {
      return absl::UnavailableError(
          absl::StrCat("shard exited before ready; output:\n", output_));
    }
    return address_;
  }

 private:
  void Drain() {
    char chunk[4096];
    std::string line;
    while (true) {
      ssize_t n = read(child_.out_fd, chunk, sizeof(chunk));
      if (n <= 0) break;
      absl::MutexLock l(&mu_);
      if (output_.size() < (64 << 10)) output_.append(chunk, n);
      for (ssize_t i = 0; i < n; ++i) {
        if (chunk[i] != '\n') {
          if (line.size() < 8192) line.push_back(chunk[i]);
          continue;
        }
        const std::string key = "\"address\":\"";
        size_t at = line.find(key);
        if (address_.empty() && line.find("shard ready") != std::string::npos &&
            at != std::string::npos) {
          std::string rest = line.substr(at + key.size());
          address_ = rest.substr(0, rest.find('"'));
          ready_.Notify();
        }
        line.clear();
      }
    }
    if (!ready_.HasBeenNotified()) ready_.Notify();  // exited: not ready
  }

  PipedChild child_;
  std::thread drain_;
  absl::Notification ready_;
  absl::Mutex mu_;
  std::string address_ ABSL_GUARDED_BY(mu_);
  std::string output_ ABSL_GUARDED_BY(mu_);
};

std::unique_ptr<v1::AttestationService::Stub> Stub(const LocalCluster& c,
                                                   const std::string& addr) {
  return v1::AttestationService::NewStub(rpc::NewChannel(addr, c.GatewayTls()));
}

grpc::Status Challenge(v1::AttestationService::Stub* stub,
                       const std::string& device_id, int64_t revision,
                       v1::GetChallengeResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  v1::GetChallengeRequest req;
  req.set_device_id(device_id);
  req.set_min_catalog_revision(revision);
  return stub->GetChallenge(&ctx, req, resp);
}

grpc::Status Attest(v1::AttestationService::Stub* stub, mcu::Device& dev,
                    const std::string& nonce, v1::AttestResponse* resp) {
  auto quote = dev.Quote(nonce);
  EXPECT_TRUE(quote.ok()) << quote.status();
  v1::AttestRequest req;
  req.set_device_id(dev.device_id());
  *req.mutable_quote() = *quote;
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  return stub->Attest(&ctx, req, resp);
}

// Issued: certificates the shard issued so far (successful attestations).
double Issued(const LocalCluster& c, const std::string& addr) {
  auto text = c.Metrics(addr);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return -1;
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!absl::StartsWith(line, "sphere_attestations_total{")) continue;
    if (!absl::StrContains(line, "UP_TO_DATE") &&
        !absl::StrContains(line, "UPDATE_REQUIRED")) {
      continue;
    }
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) sum += v;
  }
  return sum;
}

// Eventually retries `probe` (one RPC per try, 100 ms apart) until it holds
// or `limit` passes: the shard's staleness runs on the real clock here, so
// the test waits for the observable state, with a generous bound.
template <typename Fn>
bool Eventually(Fn probe, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    if (probe()) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return probe();
}

TEST(CatalogPartitionTest, Fault_PartitionedShardStopsIssuingThenResumes) {
  auto cluster = LocalCluster::Start(
      "partition", 1,
      {"--watch_progress_interval=200ms", "--shard_heartbeat_interval=200ms"});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  LocalCluster& c = **cluster;

  // The proxy: shard-p's only path to management.
  const std::string mgmt = c.config().management;
  const size_t colon = mgmt.rfind(':');
  int mgmt_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(mgmt.substr(colon + 1), &mgmt_port)) << mgmt;
  auto proxy = TcpProxy::Start("127.0.0.1", mgmt_port);
  ASSERT_TRUE(proxy.ok()) << proxy.status();

  ShardProcess shard;
  ASSERT_TRUE(
      shard
          .Start({BinaryPath("securitysvc/shard"),
                  absl::StrCat("--state_dir=", c.dir()), "--shard_id=shard-p",
                  absl::StrCat("--management=", (*proxy)->address()),
                  "--port=0", "--heartbeat_interval=200ms",
                  "--max_catalog_staleness=2s"})
          .ok());
  auto addr = shard.WaitReady();
  ASSERT_TRUE(addr.ok()) << addr.status();
  const std::string shard_address = *addr;
  auto stub = Stub(c, shard_address);

  // Devices, claimed; keep one that shard-p owns (the ring now has two
  // shards; the other shard redirects).
  auto tenant = c.CreateTenant("PartitionCo");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  std::vector<std::unique_ptr<mcu::Device>> devices;
  for (int i = 0; i < 12; ++i) {
    devices.push_back(ManufactureGenuine(c, absl::StrCat("partition-", i)));
    ASSERT_NE(devices.back(), nullptr);
    RegisterAndClaim(&c, tenant->id(), *devices.back());
  }
  const int64_t revision = CatalogRevision(&c);
  mcu::Device* dev = nullptr;
  for (auto& d : devices) {
    v1::GetChallengeResponse r;
    if (Challenge(stub.get(), d->device_id(), revision, &r).ok()) {
      dev = d.get();
      break;
    }
  }
  ASSERT_NE(dev, nullptr) << "shard-p owns none of 12 devices";

  // Connected: shard-p attests and issues a certificate.
  v1::GetChallengeResponse ch;
  ASSERT_TRUE(Challenge(stub.get(), dev->device_id(), revision, &ch).ok());
  v1::AttestResponse ok_resp;
  grpc::Status first = Attest(stub.get(), *dev, ch.nonce(), &ok_resp);
  ASSERT_TRUE(first.ok()) << first.error_message();
  EXPECT_FALSE(ok_resp.certificate_chain_pem().empty());
  // A nonce taken before the partition, spent after it.
  v1::GetChallengeResponse held;
  ASSERT_TRUE(Challenge(stub.get(), dev->device_id(), revision, &held).ok());
  const double issued_before = Issued(c, shard_address);
  ASSERT_GE(issued_before, 1);

  // Partition. Within the bound shard-p keeps serving; past it, it refuses.
  (*proxy)->Cut();
  grpc::Status refused;
  ASSERT_TRUE(Eventually(
      [&] {
        v1::GetChallengeResponse r;
        refused = Challenge(stub.get(), dev->device_id(), revision, &r);
        return refused.error_code() == grpc::StatusCode::UNAVAILABLE &&
               absl::StrContains(refused.error_message(), "catalog stale");
      },
      absl::Seconds(30)))
      << refused.error_code() << " " << refused.error_message();
  EXPECT_TRUE(absl::StrContains(refused.error_message(),
                                "--max_catalog_staleness of 2s"))
      << refused.error_message();
  v1::AttestResponse stale_resp;
  grpc::Status stale = Attest(stub.get(), *dev, held.nonce(), &stale_resp);
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::UNAVAILABLE)
      << stale.error_message();
  EXPECT_TRUE(absl::StrContains(stale.error_message(), "catalog stale"))
      << stale.error_message();
  EXPECT_TRUE(stale_resp.certificate_chain_pem().empty());
  EXPECT_EQ(Issued(c, shard_address), issued_before)
      << "a certificate was issued on stale catalog data";
  EXPECT_GT((*proxy)->refused(), 0) << "shard-p never tried to reconnect";

  // Heal: the watch comes back and shard-p issues certificates again.
  (*proxy)->Heal();
  grpc::Status back;
  v1::GetChallengeResponse fresh;
  ASSERT_TRUE(Eventually(
      [&] {
        back = Challenge(stub.get(), dev->device_id(), revision, &fresh);
        return back.ok();
      },
      absl::Seconds(60)))
      << back.error_code() << " " << back.error_message();
  v1::AttestResponse again;
  grpc::Status healed = Attest(stub.get(), *dev, fresh.nonce(), &again);
  ASSERT_TRUE(healed.ok()) << healed.error_message();
  EXPECT_FALSE(again.certificate_chain_pem().empty());
  EXPECT_EQ(Issued(c, shard_address), issued_before + 1);
  ASSERT_TRUE(c.Stop().ok());
}

}  // namespace
}  // namespace sphere::testing
