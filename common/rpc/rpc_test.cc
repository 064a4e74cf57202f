// Unit tests for common/rpc: status mapping caps, the per-method size check,
// and ServerRunner's gated listener (connection cap, recovery after a flood)
// against a live in-process mTLS server.
#include "common/rpc/rpc.h"

#include <arpa/inet.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc/arena_allocator.h"
#include "common/rpc/idle_connections.h"
#include "common/testing/test_pki.h"
#include "protos/ops.grpc.pb.h"

namespace sphere::rpc {
namespace {

// Each call's request lives on its own arena (freed with the call); the
// response is a heap message, so heap results move into it without a copy.
TEST(ArenaRequestAllocatorTest, RequestOnItsOwnArenaResponseOnTheHeap) {
  ArenaRequestAllocator<v1::GetMetricsResponse, v1::GetMetricsRequest> alloc;
  auto* a = alloc.AllocateMessages();
  auto* b = alloc.AllocateMessages();
  ASSERT_NE(a->request()->GetArena(), nullptr);
  ASSERT_NE(b->request()->GetArena(), nullptr);
  EXPECT_NE(a->request()->GetArena(), b->request()->GetArena());
  EXPECT_EQ(a->response()->GetArena(), nullptr);
  v1::GetMetricsResponse wire;
  wire.set_text(std::string(1000, 'x'));
  ASSERT_TRUE(a->request()->ParseFromString(wire.SerializeAsString()));
  EXPECT_EQ(a->request()->text(), wire.text());
  EXPECT_TRUE(b->request()->text().empty());
  a->Release();
  b->Release();
}

TEST(StatusTest, Attack_HugeErrorMessageIsCutBeforeItLeaves) {
  std::string echoed(8 << 20, 'A');
  grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError(
      absl::StrCat("bad tenant_id \"", echoed, "\"")));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LE(s.error_message().size(), kMaxStatusMessageBytes + 64);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "bytes cut]"));
  EXPECT_TRUE(absl::StartsWith(s.error_message(), "bad tenant_id \"AAA"));
}

TEST(StatusTest, Attack_HugeMessageFromPeerIsCut) {
  absl::Status s = FromGrpcStatus(
      grpc::Status(grpc::StatusCode::INTERNAL, std::string(1 << 20, 'x')));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_LE(s.message().size(), kMaxStatusMessageBytes + 64);
}

TEST(StatusTest, ShortMessagesPassUnchanged) {
  grpc::Status s = ToGrpcStatus(absl::NotFoundError("no such tenant"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no such tenant");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(StatusTest, TruncationKeepsUtf8Whole) {
  // "é" is two bytes; a cut at byte 3 would split the second one.
  std::string text = "\xC3\xA9\xC3\xA9\xC3\xA9";
  std::string cut = TruncateForStatus(text, 3);
  EXPECT_TRUE(absl::StartsWith(cut, "\xC3\xA9..."));
}

TEST(CheckRequestSizeTest, Attack_OversizedRequestRefusedWithMethodAndLimit) {
  v1::GetMetricsResponse big;
  big.set_text(std::string(2048, 'x'));
  absl::Status s = CheckRequestSize(big, 1024, "UploadThing");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(s.message(), "UploadThing")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "at most 1024 bytes")) << s;
  EXPECT_TRUE(CheckRequestSize(big, 4096, "UploadThing").ok());
}

// A root, a server certificate and a client certificate (common/testing).
using test_support::TestPki;

// MetricsCall makes one mTLS call on a fresh channel, waiting for the
// connection up to `deadline` (or failing fast when !wait_for_ready).
grpc::Status MetricsCall(const std::string& address, const TlsFiles& tls,
                         absl::Duration deadline, bool wait_for_ready = true) {
  auto stub = v1::Metrics::NewStub(NewChannel(address, tls));
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(deadline));
  ctx.set_wait_for_ready(wait_for_ready);
  v1::GetMetricsResponse resp;
  return stub->GetMetrics(&ctx, v1::GetMetricsRequest(), &resp);
}

TEST(ServerRunnerTest, ServesMutualTlsOnAnyFreePort) {
  TestPki pki;
  ServerOptions options;
  options.tls = pki.server;
  ServerRunner runner(options);
  ASSERT_TRUE(runner.Start().ok());
  EXPECT_GT(runner.port(), 0);
  EXPECT_TRUE(
      MetricsCall(runner.address(), pki.client, absl::Seconds(10)).ok());
  EXPECT_GE(runner.listener()->admitted(), 1u);
  runner.Shutdown(absl::Seconds(1));
}

// The TLS server name is the caller's (from cluster.json), not a constant: a
// server whose certificate names another host is refused at the handshake,
// so the call never reaches the service, and the certificate's own name is
// accepted.
TEST(ServerRunnerTest, Attack_ServerCertificateForAnotherNameIsRefused) {
  TestPki pki;
  ServerOptions options;
  options.tls =
      pki.Leaf("mgmt", crypto::KeyUsage::kServerAuth, {"mgmt.sphere.example"});
  ServerRunner runner(options);
  ASSERT_TRUE(runner.Start().ok());
  auto call = [&](const std::string& server_name) {
    auto stub = v1::Metrics::NewStub(
        NewChannel(runner.address(), pki.client, server_name));
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(absl::Seconds(10)));
    v1::GetMetricsResponse resp;
    return stub->GetMetrics(&ctx, v1::GetMetricsRequest(), &resp);
  };
  for (const std::string& name :
       {std::string(kLocalServerName), std::string("evil.sphere.example")}) {
    grpc::Status st = call(name);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE)
        << name << ": " << st.error_message();
  }
  EXPECT_TRUE(call("mgmt.sphere.example").ok());
  runner.Shutdown(absl::Seconds(1));
}

TEST(ServerRunnerTest, DefaultServerNameIsTheLocalClusters) {
  TestPki pki;  // server certificate for localhost / 127.0.0.1
  ServerOptions options;
  options.tls = pki.server;
  ServerRunner runner(options);
  ASSERT_TRUE(runner.Start().ok());
  EXPECT_TRUE(
      MetricsCall(runner.address(), pki.client, absl::Seconds(10)).ok());
  auto stub = v1::Metrics::NewStub(
      NewChannel(runner.address(), pki.client, "shard-1.sphere.example"));
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(absl::Seconds(10)));
  v1::GetMetricsResponse resp;
  grpc::Status st = stub->GetMetrics(&ctx, v1::GetMetricsRequest(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE)
      << st.error_message();
  runner.Shutdown(absl::Seconds(1));
}

TEST(ServerRunnerTest, Attack_ClientWithoutCertificateIsRefused) {
  TestPki pki;
  ServerOptions options;
  options.tls = pki.server;
  ServerRunner runner(options);
  ASSERT_TRUE(runner.Start().ok());
  TlsFiles anonymous{"", "", pki.root_pem};
  grpc::Status st = MetricsCall(runner.address(), anonymous, absl::Seconds(10),
                                /*wait_for_ready=*/false);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE)
      << st.error_message();
  runner.Shutdown(absl::Seconds(1));
}

TEST(ServerRunnerTest,
     Attack_ConnectionsBeyondTheCapAreClosedAndServiceRecovers) {
  TestPki pki;
  ServerOptions options;
  options.tls = pki.server;
  options.max_connections = 8;
  ServerRunner runner(options);
  ASSERT_TRUE(runner.Start().ok());
  const int flood = 64;
  std::vector<int> fds = OpenIdle(runner.port(), flood);
  ASSERT_EQ(fds.size(), static_cast<size_t>(flood));
  // The gate admits at most 8 (fewer: this process's own sockets take
  // descriptor numbers too) and closes the rest at once.
  int closed = WaitClosedByServer(fds, flood - 8, absl::Seconds(20));
  EXPECT_GE(closed, flood - 8);
  EXPECT_GE(runner.listener()->rejected(), static_cast<uint64_t>(flood - 8));
  for (int fd : fds) close(fd);
  // After the flood the listener still accepts, and mTLS calls succeed.
  EXPECT_TRUE(
      MetricsCall(runner.address(), pki.client, absl::Seconds(20)).ok());
  runner.Shutdown(absl::Seconds(1));
}

TEST(ServerRunnerTest, Attack_IdleUnauthenticatedConnectionIsDropped) {
  TestPki pki;
  ServerOptions options;
  options.tls = pki.server;
  options.handshake_timeout = absl::Milliseconds(300);
  ServerRunner runner(options);
  ASSERT_TRUE(runner.Start().ok());
  std::vector<int> fds = OpenIdle(runner.port(), 1);
  ASSERT_EQ(fds.size(), 1u);
  // Never sends a TLS ClientHello: the server closes it after the handshake
  // timeout (the bound is generous; the event is what is awaited).
  EXPECT_EQ(WaitClosedByServer(fds, 1, absl::Seconds(30)), 1);
  close(fds[0]);
  runner.Shutdown(absl::Seconds(1));
}

TEST(ServerRunnerTest, BadListenAddressIsASpecificError) {
  TestPki pki;
  ServerOptions options;
  options.tls = pki.server;
  options.address = "127.0.0.1";
  ServerRunner runner(options);
  absl::Status s = runner.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

TEST(FdLimitTest, RaisesSoftLimitToHardLimit) {
  absl::StatusOr<int> limit = RaiseFileDescriptorLimit();
  ASSERT_TRUE(limit.ok()) << limit.status();
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  EXPECT_EQ(rl.rlim_cur, rl.rlim_max);
}

}  // namespace
}  // namespace sphere::rpc
