// Attack_ConnectionFloodThenRecover (issue 8, hole 5): a real management
// server, started with a low descriptor limit (RLIMIT_NOFILE 1024, set in the
// child before exec), is flooded with more idle plain-TCP connections than
// the limit allows. Before the fix gRPC 1.51's listener hit EMFILE and never
// accepted again (grpc/grpc#20418). Now the server must stay up, refuse the
// excess at once, accept a new mTLS call after the flood ends, and its memory
// must return near its baseline.
//
// Everything waits on events (a log line, sockets reaching end-of-stream, a
// call with wait_for_ready) bounded by deadlines; no sleeps.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/rpc/idle_connections.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "protos/management.grpc.pb.h"
#include "protos/ops.grpc.pb.h"
#include "securitysvc/pki/pki.h"
#include "tests/cluster_fixture.h"

namespace sphere::testing {
namespace {

using rpc::OpenIdle;
using rpc::WaitClosedByServer;

constexpr int kFdLimit = 1024;
constexpr absl::string_view kTrimLog =
    "returned freed memory to the OS after a connection flood";

// LimitedServer runs the management binary with RLIMIT_NOFILE = kFdLimit
// (soft and hard, so raising to the hard limit cannot escape it) and
// collects its output on a thread.
class LimitedServer {
 public:
  ~LimitedServer() { Stop(); }

  absl::Status Start(const std::string& dir) {
    port_file_ = dir + "/management.port";
    std::vector<std::string> args = {
        BinaryPath("securitysvc/management/management"),
        absl::StrCat("--state_dir=", dir), "--port=0",
        absl::StrCat("--port_file=", port_file_)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
    struct rlimit rl = {kFdLimit, kFdLimit};
    pid_ = fork();
    if (pid_ < 0) return absl::InternalError("fork");
    if (pid_ == 0) {
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      setrlimit(RLIMIT_NOFILE, &rl);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_fd_ = fds[0];
    reader_ = std::thread([this] {
      char buf[4096];
      ssize_t n;
      while ((n = read(out_fd_, buf, sizeof(buf))) > 0) {
        absl::MutexLock l(&mu_);
        output_.append(buf, n);
      }
      absl::MutexLock l(&mu_);
      eof_ = true;
    });
    // Ready once it logged "serving" (after writing the port file).
    absl::MutexLock l(&mu_);
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return eof_ || absl::StrContains(output_, "\"serving\"");
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(60)) ||
        eof_) {
      return absl::UnavailableError("management did not start: " + output_);
    }
    auto text = util::ReadFile(port_file_);
    if (!text.ok()) return text.status();
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port_)) {
      return absl::DataLossError("bad port file");
    }
    return absl::OkStatus();
  }

  bool Alive() const {
    int status;
    return pid_ > 0 && waitpid(pid_, &status, WNOHANG) == 0;
  }

  void Stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (reader_.joinable()) reader_.join();
    if (out_fd_ >= 0) close(out_fd_);
    out_fd_ = -1;
  }

  // RssKiB is VmRSS from /proc/PID/status.
  int64_t RssKiB() const {
    auto status = util::ReadFile(absl::StrCat("/proc/", pid_, "/status"));
    if (!status.ok()) return -1;
    size_t at = status->find("VmRSS:");
    if (at == std::string::npos) return -1;
    size_t end = status->find('\n', at);
    std::string field = status->substr(at + 6, end - at - 6);
    int64_t kib = -1;
    absl::SimpleAtoi(
        absl::StripSuffix(absl::StripAsciiWhitespace(field), " kB"), &kib);
    return kib;
  }

  std::string output() {
    absl::MutexLock l(&mu_);
    return output_;
  }
  // AwaitLogCount waits until the output holds `count` lines containing
  // `text` (or the process ended, or `timeout` passed).
  bool AwaitLogCount(absl::string_view text, int count,
                     absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      int seen = 0;
      absl::string_view out(output_);
      for (size_t at = out.find(text); at != absl::string_view::npos;
           at = out.find(text, at + 1)) {
        ++seen;
      }
      return eof_ || seen >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout) && !eof_;
  }
  int port() const { return port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int port_ = 0;
  std::string port_file_;
  std::thread reader_;
  absl::Mutex mu_;
  std::string output_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

// Revision makes one operator mTLS call on a fresh channel, waiting for a
// connection up to `deadline`.
grpc::Status Revision(const std::string& address, const rpc::TlsFiles& tls,
                      absl::Duration deadline) {
  auto stub = v1::ManagementService::NewStub(rpc::NewChannel(address, tls));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(deadline));
  ctx.set_wait_for_ready(true);
  v1::CatalogRevision rev;
  return stub->GetCatalogRevision(&ctx, v1::GetCatalogRevisionRequest(), &rev);
}

TEST(ConnectionFloodTest, Attack_ConnectionFloodThenRecover) {
  const std::string dir = TestTmpDir("flood");
  ASSERT_EQ(system(absl::StrCat("rm -rf '", dir, "'").c_str()), 0);
  auto pki = pki::Bootstrap(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  auto tls = pki->TlsFor("operator");
  ASSERT_TRUE(tls.ok()) << tls.status();

  LimitedServer server;
  ASSERT_TRUE(server.Start(dir).ok()) << server.output();
  // Warm up (first call allocates the lazily built parts), then measure.
  grpc::Status warm = Revision(server.address(), *tls, absl::Seconds(20));
  ASSERT_TRUE(warm.ok()) << warm.error_message();
  ASSERT_TRUE(Revision(server.address(), *tls, absl::Seconds(20)).ok());
  const int64_t baseline = server.RssKiB();
  ASSERT_GT(baseline, 0);

  // The flood: twice as many idle connections as the server has descriptors.
  const int flood = 2 * kFdLimit;
  std::vector<int> fds = OpenIdle(server.port(), flood);
  ASSERT_EQ(fds.size(), static_cast<size_t>(flood));
  // The server refuses (closes) at least everything beyond its limit.
  const int refused =
      WaitClosedByServer(fds, flood - kFdLimit, absl::Seconds(60));
  EXPECT_GE(refused, flood - kFdLimit);
  EXPECT_TRUE(server.Alive()) << server.output();
  const int64_t peak = server.RssKiB();

  for (int fd : fds) close(fd);
  // A new mTLS call after the flood succeeds (gRPC 1.51's own listener
  // never accepted again here).
  grpc::Status after = Revision(server.address(), *tls, absl::Seconds(30));
  EXPECT_TRUE(after.ok()) << after.error_code() << ": " << after.error_message()
                          << "\n"
                          << server.output();
  // The refusals are visible in metrics.
  {
    auto stub = v1::Metrics::NewStub(rpc::NewChannel(server.address(), *tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::GetMetricsResponse metrics;
    ASSERT_TRUE(stub->GetMetrics(&ctx, v1::GetMetricsRequest(), &metrics).ok());
    EXPECT_TRUE(absl::StrContains(
        metrics.text(),
        "sphere_rpc_connections_total{outcome=\"rejected_limit\"}"))
        << metrics.text();
  }
  // After the flood the server returns freed memory (GatedListener trims
  // once a second while quiet, logging each trim): read RSS after each
  // logged trim, until it is near the baseline or the trims stop.
  const int64_t near_baseline = baseline + 8 * 1024;
  int64_t rss_after = server.RssKiB();
  for (int trims = 1; rss_after > near_baseline && trims <= 20; ++trims) {
    if (!server.AwaitLogCount(kTrimLog, trims, absl::Seconds(30))) break;
    rss_after = server.RssKiB();
  }
  std::cout << "flood: " << flood << " connections at RLIMIT_NOFILE "
            << kFdLimit << ", refused " << refused << "; VmRSS baseline "
            << baseline << " KiB, during flood " << peak << " KiB, after "
            << rss_after << " KiB" << std::endl;
  EXPECT_LE(rss_after, near_baseline)
      << "memory did not return near its baseline";
  server.Stop();
}

}  // namespace
}  // namespace sphere::testing
