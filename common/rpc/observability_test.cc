#include "common/rpc/observability.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "common/util/metrics.h"
#include "protos/ops.grpc.pb.h"

namespace sphere::rpc {
namespace {

constexpr char kGetMetrics[] = "/sphere.v1.Metrics/GetMetrics";

class ObservabilityTest : public ::testing::Test {
 protected:
  ServerOptions Options() {
    ServerOptions o;
    o.tls = pki_.server;
    o.metrics_address = "127.0.0.1:0";
    o.metrics_port_file = "";
    return o;
  }

  // Call runs GetMetrics, optionally with an x-request-id, and returns the
  // request id the server answered with.
  std::string Call(ServerRunner& runner, const std::string& request_id) {
    auto stub = v1::Metrics::NewStub(NewChannel(runner.address(), pki_.client));
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(absl::Seconds(30)));
    if (!request_id.empty()) ctx.AddMetadata("x-request-id", request_id);
    v1::GetMetricsResponse resp;
    grpc::Status st = stub->GetMetrics(&ctx, v1::GetMetricsRequest(), &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    auto md = ctx.GetServerInitialMetadata();
    auto it = md.find("x-request-id");
    if (it == md.end()) return "";
    return std::string(it->second.data(), it->second.size());
  }

  // The client's name is the caller the logs and metrics name.
  test_support::TestPki pki_{"server", "obs-client"};
};

TEST(StateChangingTest, VerbsDecide) {
  EXPECT_TRUE(
      IsStateChangingMethod("/sphere.v1.ManagementService/ClaimDevice"));
  EXPECT_TRUE(
      IsStateChangingMethod("/sphere.v1.ManagementService/CreateTenant"));
  EXPECT_TRUE(IsStateChangingMethod("/sphere.v1.ManagementService/ReleaseOs"));
  EXPECT_TRUE(IsStateChangingMethod(
      "/sphere.v1.ManagementService/AcceptDeviceTransfer"));
  EXPECT_FALSE(
      IsStateChangingMethod("/sphere.v1.ManagementService/ListTenants"));
  EXPECT_FALSE(IsStateChangingMethod("/sphere.v1.ManagementService/GetDevice"));
  EXPECT_FALSE(IsStateChangingMethod("/sphere.v1.ManagementService/Watch"));
  EXPECT_FALSE(IsStateChangingMethod(kGetMetrics));
}

TEST_F(ObservabilityTest, CountsLogsAndEchoesRequestIds) {
  ServerRunner runner(Options());
  ASSERT_TRUE(runner.Start().ok());
  auto* handled = metrics::Counter("grpc_server_handled_total", "");
  const metrics::Labels ok = {{"grpc_method", kGetMetrics},
                              {"grpc_code", "OK"}};
  const uint64_t before = handled->Value(ok);
  log::SetMinLevel(log::Level::kDebug);  // GetMetrics logs at debug
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(Call(runner, "abc-123"), "abc-123");
  std::string fresh = Call(runner, "");
  std::string out = ::testing::internal::GetCapturedStderr();
  log::SetMinLevel(log::Level::kInfo);
  EXPECT_EQ(fresh.size(), 32u);
  EXPECT_EQ(handled->Value(ok), before + 2);
  EXPECT_GE(metrics::Histogram("grpc_server_handling_seconds", "")
                ->Count({{"grpc_method", kGetMetrics}}),
            2u);
  bool logged = false;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    if (j["msg"] == "request" && j["request_id"] == "abc-123") {
      logged = true;
      EXPECT_EQ(j["caller"], "CN=obs-client");
      EXPECT_EQ(j["method"], kGetMetrics);
      EXPECT_EQ(j["code"], "OK");
    }
    EXPECT_FALSE(j.contains("audit")) << "a read is not audited: " << line;
  }
  EXPECT_TRUE(logged) << out;
}

TEST(MethodLogLevelTest, HotDeviceCallsAtDebugFailuresAtInfo) {
  for (const char* m : {"/sphere.v1.AttestationService/Attest",
                        "/sphere.v1.AttestationService/GetChallenge",
                        "/sphere.v1.AttestationService/AttestBatch",
                        "/sphere.v1.AttestationService/GetChallenges",
                        "/sphere.v1.UpdateService/GetUpdates",
                        "/sphere.v1.ErrorReportingService/UploadErrors"}) {
    EXPECT_TRUE(IsHotDeviceMethod(m)) << m;
    EXPECT_EQ(MethodLogLevel(m, /*ok=*/true), log::Level::kDebug) << m;
    EXPECT_EQ(MethodLogLevel(m, /*ok=*/false), log::Level::kInfo) << m;
  }
  EXPECT_FALSE(IsHotDeviceMethod("/sphere.v1.ManagementService/ClaimDevice"));
  EXPECT_FALSE(IsHotDeviceMethod("/sphere.v1.X/AttestSomethingElse"));
  EXPECT_EQ(MethodLogLevel("/sphere.v1.ManagementService/ClaimDevice", true),
            log::Level::kInfo);
  EXPECT_EQ(MethodLogLevel(kGetMetrics, true), log::Level::kDebug);
}

TEST(MethodLogLevelTest, OverridesByNameOrFullMethod) {
  const std::string full = "/sphere.v1.UpdateService/GetUpdates";
  ASSERT_TRUE(ParseMethodLogLevels("GetUpdates=warning, /sphere.v1.T/M=error"));
  EXPECT_EQ(MethodLogLevel(full, true), log::Level::kWarning);
  EXPECT_EQ(MethodLogLevel("/sphere.v1.T/M", true), log::Level::kError);
  SetMethodLogLevel(full, log::Level::kInfo);  // full name wins over the name
  EXPECT_EQ(MethodLogLevel(full, true), log::Level::kInfo);
  SetMethodLogLevel(full, log::Level::kDebug);
  SetMethodLogLevel("GetUpdates", log::Level::kDebug);
  EXPECT_EQ(MethodLogLevel(full, true), log::Level::kDebug);
  EXPECT_EQ(MethodLogLevel(full, false), log::Level::kInfo);
}

TEST(MethodLogLevelTest, Attack_MalformedSpecAppliesNothing) {
  const std::string m = "/sphere.v1.Probe/Malformed";
  EXPECT_EQ(MethodLogLevel(m, true), log::Level::kInfo);
  EXPECT_FALSE(ParseMethodLogLevels("Malformed=error,Attest"));
  EXPECT_FALSE(ParseMethodLogLevels("Malformed=loud"));
  EXPECT_FALSE(ParseMethodLogLevels("=debug"));
  EXPECT_FALSE(ParseMethodLogLevels(
      absl::StrCat("Malformed=error,", std::string(129, 'x'), "=debug")));
  EXPECT_FALSE(ParseMethodLogLevels(
      absl::StrCat("Malformed=error,", std::string(5000, ','))));
  EXPECT_EQ(MethodLogLevel(m, true), log::Level::kInfo);  // nothing applied
}

TEST_F(ObservabilityTest, LineBelowTheLevelIsCountedNotWritten) {
  ServerRunner runner(Options());
  ASSERT_TRUE(runner.Start().ok());
  auto* handled = metrics::Counter("grpc_server_handled_total", "");
  const metrics::Labels ok = {{"grpc_method", kGetMetrics},
                              {"grpc_code", "OK"}};
  const uint64_t before = handled->Value(ok);
  log::SetMinLevel(log::Level::kInfo);
  ::testing::internal::CaptureStderr();
  Call(runner, "quiet-1");  // debug: not written
  SetMethodLogLevel("GetMetrics", log::Level::kWarning);
  Call(runner, "loud-1");  // raised: written
  SetMethodLogLevel("GetMetrics", log::Level::kDebug);
  std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(handled->Value(ok), before + 2);
  EXPECT_EQ(out.find("quiet-1"), std::string::npos) << out;
  bool loud = false;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j["msg"] == "request" && j["request_id"] == "loud-1") {
      loud = true;
      EXPECT_EQ(j["level"], "warning");
    }
  }
  EXPECT_TRUE(loud) << out;
}

TEST_F(ObservabilityTest, Attack_MalformedRequestIdIsReplaced) {
  ServerRunner runner(Options());
  ASSERT_TRUE(runner.Start().ok());
  // (gRPC itself refuses control characters in metadata on the client.)
  for (const std::string bad : {std::string(65, 'a'), std::string("a b"),
                                std::string("x\"y"), std::string("../x{}")}) {
    std::string got = Call(runner, bad);
    EXPECT_NE(got, bad);
    EXPECT_EQ(got.size(), 32u) << got;
  }
}

TEST_F(ObservabilityTest, MetricsHttpPortIsBoundAndReported) {
  const char* tmp = getenv("TEST_TMPDIR");
  const std::string port_file = absl::StrCat(tmp ? tmp : "/tmp", "/m.port");
  unlink(port_file.c_str());
  ServerOptions o = Options();
  o.metrics_port_file = port_file;
  ServerRunner runner(o);
  ASSERT_TRUE(runner.Start().ok());
  ASSERT_GT(runner.metrics_port(), 0);
  auto text = util::ReadFile(port_file);
  ASSERT_TRUE(text.ok());
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port));
  EXPECT_EQ(port, runner.metrics_port());

  ServerOptions off = Options();
  off.metrics_address = "";
  ServerRunner quiet(off);
  ASSERT_TRUE(quiet.Start().ok());
  EXPECT_EQ(quiet.metrics_port(), 0);
}

TEST_F(ObservabilityTest, Fault_MetricsPortTakenFailsStartAndServesNothing) {
  ServerRunner first(Options());
  ASSERT_TRUE(first.Start().ok());
  ServerOptions o = Options();
  o.metrics_address = absl::StrCat("127.0.0.1:", first.metrics_port());
  ServerRunner second(o);
  absl::Status s = second.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("cannot serve metrics"), std::string::npos) << s;
  EXPECT_EQ(second.server(), nullptr);  // the gRPC server was stopped again
}

}  // namespace
}  // namespace sphere::rpc
