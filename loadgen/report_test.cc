#include "loadgen/report.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/rpc/rpc.h"
#include "common/util/file.h"

namespace sphere::loadgen {
namespace {

Report Sample() {
  Report r;
  r.twins = 1000;
  r.shards = 2;
  r.cores = 2;
  r.wall_s = 12.5;
  r.rss_bytes_per_twin = 1500;
  PhaseReport attest;
  attest.name = "attest";
  attest.ops = 1000;
  attest.ops_per_s = 800;
  attest.p50_ms = 1.5;
  attest.p99_ms = 9;
  attest.p999_ms = 20;
  attest.errors = {{"UNAVAILABLE", 3}};
  attest.throughput = {700, 300};
  PhaseReport telemetry;
  telemetry.name = "telemetry";
  telemetry.skipped = true;
  telemetry.skip_reason = "no appsvc <here>";
  r.phases = {attest, telemetry};
  r.floors = {40000, 15000, 20000, 9000, 4000};
  r.service_rss_bytes_per_device = 900;
  return r;
}

TEST(ReportTest, JsonHasExactlyTheIssueFieldNames) {
  const auto j = nlohmann::json::parse(Sample().ToJson());
  for (const char* k : {"twins", "shards", "cores", "wall_s",
                        "rss_bytes_per_twin", "phases", "floors", "service"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j["twins"], 1000);
  EXPECT_EQ(j["shards"], 2);
  EXPECT_EQ(j["cores"], 2);
  EXPECT_DOUBLE_EQ(j["wall_s"].get<double>(), 12.5);
  const auto& a = j["phases"]["attest"];
  for (const char* k : {"ops", "ops_per_s", "p50_ms", "p99_ms", "p999_ms",
                        "errors", "skipped"}) {
    EXPECT_TRUE(a.contains(k)) << k;
  }
  EXPECT_EQ(a["ops"], 1000);
  EXPECT_EQ(a["errors"]["UNAVAILABLE"], 3);
  EXPECT_EQ(a["skipped"], false);
  EXPECT_FALSE(a.contains("skip_reason"));
  EXPECT_EQ(j["phases"]["telemetry"]["skipped"], true);
  EXPECT_EQ(j["phases"]["telemetry"]["skip_reason"], "no appsvc <here>");
  EXPECT_EQ(j["phases"]["telemetry"]["ops"], 0);
  for (const char* k :
       {"ecdsa_sign_per_s", "ecdsa_verify_per_s", "attest_crypto_bound_per_s",
        "echo_rpc_per_s", "rocksdb_synced_writes_per_s"}) {
    EXPECT_TRUE(j["floors"].contains(k)) << k;
  }
  EXPECT_EQ(j["floors"]["echo_rpc_per_s"], 9000);
  EXPECT_EQ(j["service"]["rss_bytes_per_device"], 900);
  EXPECT_FALSE(j.contains("fault"));
}

TEST(ReportTest, FaultSectionOnlyWhenAFaultRan) {
  Report r = Sample();
  r.fault = FaultReport{"restart-shard", "shard-0", 1.5, 0.8, 1000, 1000, 0, 4};
  const auto j = nlohmann::json::parse(r.ToJson());
  ASSERT_TRUE(j.contains("fault"));
  EXPECT_EQ(j["fault"]["shard"], "shard-0");
  EXPECT_EQ(j["fault"]["lost"], 0);
  EXPECT_EQ(j["fault"]["retried"], 4);
  EXPECT_NE(r.Summary().find("0 lost"), std::string::npos) << r.Summary();
  EXPECT_EQ(j["fault"]["unreachable"], 0);
  r.fault->unreachable = 7;
  EXPECT_NE(r.Summary().find("7 unreachable"), std::string::npos)
      << r.Summary();
}

TEST(ReportTest, PhaseMetricsOnlyWhenThePhaseHasThem) {
  Report r = Sample();
  r.phases[0].metrics = {{"mb_per_s", 12.5}, {"bytes", 4096}};
  const auto j = nlohmann::json::parse(r.ToJson());
  ASSERT_TRUE(j["phases"]["attest"].contains("metrics"));
  EXPECT_DOUBLE_EQ(j["phases"]["attest"]["metrics"]["mb_per_s"].get<double>(),
                   12.5);
  EXPECT_EQ(j["phases"]["attest"]["metrics"]["bytes"], 4096);
  EXPECT_FALSE(j["phases"]["telemetry"].contains("metrics"));
  EXPECT_NE(r.Summary().find("mb_per_s=12.5"), std::string::npos)
      << r.Summary();
  EXPECT_NE(r.ToHtml().find("mb_per_s = 12.5"), std::string::npos);
}

TEST(ReportTest, NonFiniteNumbersBecomeZero) {
  Report r = Sample();
  r.phases[0].ops_per_s = std::numeric_limits<double>::infinity();
  r.rss_bytes_per_twin = std::nan("");
  const auto j = nlohmann::json::parse(r.ToJson());  // still valid JSON
  EXPECT_EQ(j["phases"]["attest"]["ops_per_s"], 0);
  EXPECT_EQ(j["rss_bytes_per_twin"], 0);
}

TEST(ReportTest, HtmlIsSelfContainedWithPlotsAndEscapedText) {
  const std::string h = Sample().ToHtml();
  EXPECT_NE(h.find("<svg"), std::string::npos);
  EXPECT_NE(h.find("aria-label='attest throughput'"), std::string::npos);
  EXPECT_NE(h.find("aria-label='latency percentiles'"), std::string::npos);
  EXPECT_NE(h.find("<polyline"), std::string::npos);
  EXPECT_NE(h.find("no appsvc &lt;here&gt;"), std::string::npos);
  EXPECT_EQ(h.find("<here>"), std::string::npos);
  EXPECT_EQ(h.find("<script"), std::string::npos);
  EXPECT_EQ(h.find("http://"), h.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(h.find("https://"), std::string::npos);
}

TEST(ReportTest, SummaryShowsRatiosToTargets) {
  const std::string s = Sample().Summary();
  EXPECT_NE(s.find("16% of 5,000/s"), std::string::npos) << s;
  EXPECT_NE(s.find("4% of the crypto bound"), std::string::npos) << s;
  EXPECT_NE(s.find("telemetry       skipped: no appsvc"), std::string::npos)
      << s;
}

// error_report: one op is an upload of a twin's ring; the 200,000/s target
// is in events acknowledged = durable, so the summary uses events_per_s.
TEST(ReportTest, ErrorReportSummaryCountsEventsNotUploads) {
  Report r = Sample();
  PhaseReport errors;
  errors.name = "error_report";
  errors.ops = 1000;
  errors.ops_per_s = 2500;
  errors.metrics = {{"events_per_s", 40000}, {"acknowledged", 16000}};
  r.phases.push_back(errors);
  const std::string s = r.Summary();
  EXPECT_NE(s.find("error_report 40000 events/s = 20% of 200,000/s "
                   "(2500 uploads/s)"),
            std::string::npos)
      << s;
}

TEST(ReportTest, WriteCreatesBothFiles) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp ? tmp : "/tmp") + "/report-out/x";
  ASSERT_TRUE(Sample().Write(dir).ok());
  auto json = util::ReadFile(dir + "/report.json");
  auto html = util::ReadFile(dir + "/report.html");
  ASSERT_TRUE(json.ok());
  ASSERT_TRUE(html.ok());
  EXPECT_EQ(*json, Sample().ToJson());
  EXPECT_EQ(*html, Sample().ToHtml());
}

}  // namespace
}  // namespace sphere::loadgen
