#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/util/clock.h"
#include "common/util/log.h"
#include "common/util/metrics.h"
#include "common/util/metrics_http.h"

namespace sphere {
namespace {

std::string TempDir() {
  const char* t = getenv("TEST_TMPDIR");
  return t ? t : "/tmp";
}

std::string ScrapeScript() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir ? srcdir : ".",
                      "/sphere/common/util/prometheus_scrape.py");
}

// Scrape runs the real Prometheus text parser on `source` (URL or file).
// Returns the parsed samples; fails the test on a parse error.
nlohmann::json Scrape(const std::string& source) {
  // Debian's python3 (python3-prometheus-client), not a pyenv one.
  std::string cmd =
      absl::StrCat("/usr/bin/python3 ", ScrapeScript(), " ", source);
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  if (p == nullptr) return nlohmann::json::array();
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  EXPECT_EQ(rc, 0) << "parser rejected " << source;
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_TRUE(j.is_array()) << out;
  return j.is_array() ? j : nlohmann::json::array();
}

double SampleValue(const nlohmann::json& samples, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (const auto& s : samples) {
    if (s["name"] != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      if (!s["labels"].contains(k) || s["labels"][k] != v) match = false;
    }
    if (match) return s["value"].get<double>();
  }
  return -1;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(FakeClockTest, MovesOnlyWhenTold) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1000));
  clock.Advance(absl::Seconds(31));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1031));
}

TEST(MetricsTest, CounterSeriesAndRendering) {
  auto* c = metrics::Counter("test_events_total", "Test events");
  c->Increment("kind=\"a\"");
  c->Increment("kind=\"a\"", 2);
  c->Increment("kind=\"b\"");
  EXPECT_EQ(c->Value("kind=\"a\""), 3u);
  EXPECT_EQ(c->Value("kind=\"b\""), 1u);
  EXPECT_EQ(metrics::Counter("test_events_total", "x"), c);
  std::string text = metrics::RenderAll();
  EXPECT_NE(text.find("test_events_total{kind=\"a\"} 3"), std::string::npos)
      << text;
}

// Label texts are remembered per metric (parsed once): the same text, a
// different text for the same labels and the map form all count into one
// series, and texts beyond the cache bound and the series bound still
// count (into the overflow series) instead of growing anything.
TEST(MetricsTest, RepeatedLabelTextCountsIntoOneSeries) {
  auto* c = metrics::Counter("test_cached_text_total", "cached label text");
  for (int i = 0; i < 100; ++i) c->Increment("a=\"1\",b=\"2\"");
  c->Increment("b=\"2\",a=\"1\"", 5);
  c->Increment({{"a", "1"}, {"b", "2"}});
  EXPECT_EQ(c->Value("a=\"1\",b=\"2\""), 106u);
  auto* other = metrics::Counter("test_cached_text_other_total", "other");
  other->Increment("a=\"1\",b=\"2\"");
  EXPECT_EQ(other->Value("a=\"1\",b=\"2\""), 1u);
  EXPECT_EQ(c->Value("a=\"1\",b=\"2\""), 106u);
}

TEST(MetricsTest, Attack_ManyLabelTextsFoldIntoOverflowSeries) {
  auto* c = metrics::Counter("test_attack_text_total", "text bound");
  const int n = metrics::kMaxSeriesPerMetric + 300;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < n; ++i) {
      c->Increment(absl::StrCat("caller=\"c", i, "\""));
    }
  }
  // kMaxSeriesPerMetric - 1 real series, everything else in overflow.
  EXPECT_EQ(c->Value("caller=\"c0\""), 2u);
  EXPECT_EQ(c->Value({{"overflow", "true"}}),
            2u * (n - (metrics::kMaxSeriesPerMetric - 1)));
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  auto* h = metrics::Histogram("test_latency_seconds", "Latency");
  h->Observe(0.00001);  // first bucket
  h->Observe(0.5);
  h->Observe(100);  // overflow
  EXPECT_EQ(h->Count(), 3u);
  std::string text = metrics::RenderAll();
  EXPECT_NE(text.find("test_latency_seconds_bucket{le=\"5e-05\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("test_latency_seconds_bucket{le=\"+Inf\"} 3"),
            std::string::npos);
  EXPECT_NE(text.find("test_latency_seconds_count 3"), std::string::npos);
}

TEST(MetricsTest, ParseLabelsIsStrict) {
  auto ok = metrics::ParseLabels(R"(a="x",b="q\"uote\\")");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)["a"], "x");
  EXPECT_EQ((*ok)["b"], "q\"uote\\");
  for (const char* bad : {"a=x", "a=\"x", "=\"x\"", "1a=\"x\"", "a=\"x\"b"}) {
    EXPECT_FALSE(metrics::ParseLabels(bad).ok()) << bad;
  }
}

TEST(MetricsTest, Attack_UnboundedLabelValuesFoldIntoOverflowSeries) {
  auto* c = metrics::Counter("test_attack_series_total", "series bound");
  for (int i = 0; i < metrics::kMaxSeriesPerMetric + 500; ++i) {
    c->Increment({{"caller", absl::StrCat("c", i)}});
  }
  EXPECT_EQ(c->Value({{"overflow", "true"}}), 501u);
  auto samples = Scrape([&] {
    std::string path = TempDir() + "/series.txt";
    std::ofstream(path) << metrics::RenderAll();
    return path;
  }());
  int series = 0;
  for (const auto& s : samples) {
    if (s["name"] == "test_attack_series_total") ++series;
  }
  EXPECT_EQ(series, metrics::kMaxSeriesPerMetric);
  // A huge label value is cut, not stored whole.
  c->Increment({{"caller", std::string(100000, 'x')}});
  EXPECT_LT(metrics::RenderAll().size(), 1u << 20);
}

TEST(MetricsTest, GaugeCallbackRunsAtScrapeAndUnregisters) {
  int calls = 0;
  {
    auto handle = metrics::RegisterGaugeCallback(
        "test_callback_gauge", "computed at scrape", [&calls] {
          ++calls;
          return std::vector<metrics::Sample>{{{{"cf", "devices"}}, 42}};
        });
    EXPECT_NE(
        metrics::RenderAll().find("test_callback_gauge{cf=\"devices\"} 42"),
        std::string::npos);
    EXPECT_EQ(calls, 1);
  }
  EXPECT_EQ(metrics::RenderAll().find("test_callback_gauge"),
            std::string::npos);
  EXPECT_EQ(calls, 1);
}

TEST(MetricsHttpTest, ServesPrometheusTextOnABoundPort) {
  auto server = metrics::MetricsHttpServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  auto* c = metrics::Counter("test_http_requests_total", "HTTP test");
  c->Increment("method=\"/x.Y/Z\",code=\"OK\"", 7);
  auto g = metrics::Gauge("test_http_gauge", "gauge");
  g->Set(2.5, {{"shard", "shard-0"}});
  auto samples =
      Scrape(absl::StrCat("http://", (*server)->address(), "/metrics"));
  EXPECT_EQ(SampleValue(samples, "test_http_requests_total",
                        {{"method", "/x.Y/Z"}, {"code", "OK"}}),
            7);
  EXPECT_EQ(SampleValue(samples, "test_http_gauge", {{"shard", "shard-0"}}),
            2.5);
}

TEST(MetricsHttpTest, Fault_PortInUseIsAnError) {
  auto first = metrics::MetricsHttpServer::Start("127.0.0.1:0");
  ASSERT_TRUE(first.ok());
  auto second = metrics::MetricsHttpServer::Start(
      absl::StrCat("127.0.0.1:", (*first)->port()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("cannot serve metrics"),
            std::string::npos);
}

// Connects to 127.0.0.1:port; true when something accepted.
bool LoopbackAccepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  if (ok) {
    // A TCP self-connect (the kernel picked `port` as the source port of a
    // connection to a port nobody listens on) is not a listener.
    struct sockaddr_in local = {};
    socklen_t len = sizeof(local);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        local.sin_port == addr.sin_port) {
      ok = false;
    }
  }
  close(fd);
  return ok;
}

// Destruction stops civetweb completely (its listening socket is closed when
// the destructor returns), for a loopback and for a wildcard listener, after
// serving a scrape: the wake-up connections of the destructor leave nothing
// behind.
TEST(MetricsHttpTest, DestructorClosesTheListenerAfterServing) {
  for (const char* host : {"127.0.0.1", "0.0.0.0"}) {
    auto server = metrics::MetricsHttpServer::Start(absl::StrCat(host, ":0"));
    ASSERT_TRUE(server.ok()) << host << ": " << server.status();
    const int port = (*server)->port();
    auto samples = Scrape(absl::StrCat("http://127.0.0.1:", port, "/metrics"));
    EXPECT_FALSE(samples.empty()) << host;
    EXPECT_TRUE(LoopbackAccepts(port)) << host;
    server->reset();
    EXPECT_FALSE(LoopbackAccepts(port)) << host << ": still listening";
  }
}

nlohmann::json OneLine(const std::string& out) {
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "more than one line: " << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_TRUE(j.is_object()) << out;
  return j;
}

TEST(LogTest, WritesOneJsonLine) {
  testing::internal::CaptureStderr();
  log::SetComponent("unit");
  log::Info("hello", {{"device", "ab\"12"}});
  auto j = OneLine(testing::internal::GetCapturedStderr());
  EXPECT_EQ(j["component"], "unit");
  EXPECT_EQ(j["msg"], "hello");
  EXPECT_EQ(j["device"], "ab\"12");
  EXPECT_EQ(j["level"], "info");
}

TEST(LogTest, Attack_HugeFieldIsBoundedWithTruncatedMarker) {
  const std::string huge(7900000, 'A');
  testing::internal::CaptureStderr();
  log::Error("bad tenant", {{"tenant_id", huge}, {"huge_key_" + huge, "v"}});
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_LT(out.size(), 2048u);
  auto j = OneLine(out);
  std::string v = j["tenant_id"];
  EXPECT_EQ(v.substr(0, log::kMaxValueBytes),
            huge.substr(0, log::kMaxValueBytes));
  EXPECT_NE(v.find("[truncated, 7900000 bytes]"), std::string::npos) << v;
}

TEST(LogTest, Attack_ControlCharactersAndBadUtf8StayOnOneLine) {
  testing::internal::CaptureStderr();
  log::Info("evil", {{"name", "a\nb\x1b[31mred\r\x00z\xff\xfe"}});
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
  auto j = OneLine(out);
  EXPECT_NE(j["name"].get<std::string>().find("a\nb"), std::string::npos);
}

TEST(LogTest, BoundCutsAtUtf8Boundary) {
  std::string s = std::string(255, 'x') + "\xc3\xa9" + "tail";  // é at 255
  std::string b = log::Bound(s);
  EXPECT_EQ(b.substr(0, 256), std::string(255, 'x') + ".");
  EXPECT_NE(b.find("[truncated, 261 bytes]"), std::string::npos);
  EXPECT_EQ(log::Bound("short"), "short");
}

TEST(LogTest, DebugIsOffByDefault) {
  ASSERT_EQ(log::MinLevel(), log::Level::kInfo);
  testing::internal::CaptureStderr();
  log::Debug("heartbeat", {{"shard", "shard-0"}});
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  log::SetMinLevel(log::Level::kDebug);
  testing::internal::CaptureStderr();
  log::Debug("heartbeat", {{"shard", "shard-0"}});
  EXPECT_EQ(OneLine(testing::internal::GetCapturedStderr())["level"], "debug");
  log::SetMinLevel(log::Level::kInfo);
}

TEST(LogTest, AuditEventNamesWhoWhatObject) {
  testing::internal::CaptureStderr();
  log::SetMinLevel(log::Level::kError);  // audit events are never filtered
  log::Audit({"CN=operator",
              "ClaimDevice",
              "Device id=ab12",
              {{"request_id", "r1"}, {"audit", "forged"}}});
  log::SetMinLevel(log::Level::kInfo);
  auto j = OneLine(testing::internal::GetCapturedStderr());
  EXPECT_EQ(j["audit"], true);
  EXPECT_EQ(j["who"], "CN=operator");
  EXPECT_EQ(j["what"], "ClaimDevice");
  EXPECT_EQ(j["object"], "Device id=ab12");
  EXPECT_EQ(j["request_id"], "r1");
  EXPECT_EQ(j["field_audit"], "forged");  // a field cannot forge the flag
}

TEST(LogTest, RotatingFileKeepsNFilesOfBoundedSizeWithMode0640) {
  const std::string path = TempDir() + "/rotate.log";
  for (int i = 0; i <= 5; ++i) {
    unlink((i == 0 ? path : absl::StrCat(path, ".", i)).c_str());
  }
  umask(022);
  log::RotatingFile file(path, 1000, 3);
  ASSERT_TRUE(file.Open().ok());
  const std::string line = std::string(99, 'x') + "\n";
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(file.Append(line).ok());
  for (int i = 0; i <= 3; ++i) {
    std::string p = i == 0 ? path : absl::StrCat(path, ".", i);
    struct stat st;
    ASSERT_EQ(stat(p.c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_mode & 0777, 0640) << p;
    EXPECT_LE(st.st_size, 1000) << p;
    EXPECT_GT(st.st_size, 0) << p;
  }
  EXPECT_NE(access(absl::StrCat(path, ".4").c_str(), F_OK), 0);
}

TEST(LogTest, SetOutputFileWritesJsonLinesAndFixesOldMode) {
  const std::string path = TempDir() + "/out.log";
  unlink(path.c_str());
  { std::ofstream(path) << ""; }
  chmod(path.c_str(), 0666);
  ASSERT_TRUE(log::SetOutputFile(path, 1 << 20, 2).ok());
  log::Info("to file", {{"k", "v"}});
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640);
  auto j = OneLine(ReadAll(path));
  EXPECT_EQ(j["msg"], "to file");
}

}  // namespace
}  // namespace sphere
