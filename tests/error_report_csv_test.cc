// The error report CSV (spherectl tenant download-error-report) against a
// real shard: devices upload over gRPC, the export pages through QueryErrors
// with the tenant's credential, and the CSV's columns and counts match the
// events sent (a second, fake shard checks gathering across shards).
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/error_report.h"
#include "common/rpc/rpc.h"
#include "gtest/gtest.h"
#include "protos/error_reporting.grpc.pb.h"
#include "securitysvc/errors/error_plugin.h"
#include "securitysvc/errors/error_store.h"
#include "securitysvc/shard_server/test_platform.h"

namespace sphere {
namespace {

using shard::TestPlatform;

// ParseCsv: RFC 4180 records (CRLF, quoted fields with doubled quotes).
std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      row.push_back(field);
      field.clear();
      rows.push_back(row);
      row.clear();
      ++i;
    } else {
      field += c;
    }
  }
  EXPECT_TRUE(row.empty() && field.empty()) << "CSV must end with CRLF";
  return rows;
}

TEST(ErrorReportCsvTest, ColumnsAndCountsMatchTheEventsSent) {
  TestPlatform platform;
  TestPlatform::Options o;
  o.extra_plugins = [](shard::TestPlatform&) {
    errors::ErrorReportingPlugin::Options po;
    po.sweep_interval = absl::ZeroDuration();
    std::vector<std::unique_ptr<shard::ShardPlugin>> v;
    v.push_back(std::make_unique<errors::ErrorReportingPlugin>(po));
    return v;
  };
  ASSERT_TRUE(platform.Start(o).ok());

  // Three devices send 250, 30 and 5 events (several batches each).
  const int kCounts[3] = {250, 30, 5};
  std::map<std::string, int> sent;
  for (int d = 0; d < 3; ++d) {
    auto dev = platform.NewDevice(absl::StrCat("csv-device-", d));
    ASSERT_TRUE(dev.ok()) << dev.status();
    crypto::DeviceClaims c;
    c.device_id = (*dev)->device_id();
    c.tenant_id = TestPlatform::kTenant;
    c.device_group_id = TestPlatform::kGroup;
    c.scope = "full";
    c.epoch = "0";
    auto stub = v1::ErrorReportingService::NewStub(rpc::NewChannel(
        platform.server().address(),
        platform.Issue(c.device_id, crypto::KeyUsage::kClientAuth, c)));
    for (int first = 0; first < kCounts[d]; first += 100) {
      v1::UploadErrorsRequest req;
      for (int i = first; i < std::min(kCounts[d], first + 100); ++i) {
        v1::ErrorEvent* e = req.add_events();
        e->set_sequence(i + 1);
        if (i % 10 == 9) {
          e->set_kind(v1::ErrorEvent::PLANNED_RESTART);
          e->set_component("os");
          e->set_detail("update installed");
        } else {
          e->set_kind(v1::ErrorEvent::APP_CRASH);
          e->set_component("dw100-app");
          e->set_component_version("1.2");
          e->set_exit_code(i % 3);
          e->set_detail("pump \"P1\" stalled, retrying");  // quote + comma
        }
        e->set_time_unix_ms(1767225600000 + i);
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
      v1::UploadErrorsResponse resp;
      grpc::Status st = stub->UploadErrors(&ctx, req, &resp);
      ASSERT_TRUE(st.ok()) << st.error_message();
      ASSERT_EQ(resp.stored(), static_cast<uint32_t>(req.events_size()));
    }
    sent[c.device_id] = kCounts[d];
  }

  // The export, as spherectl runs it: the tenant's credential, paged.
  crypto::DeviceClaims op;
  op.tenant_id = TestPlatform::kTenant;
  auto query = v1::ErrorReportingService::NewStub(rpc::NewChannel(
      platform.server().address(),
      platform.Issue("contoso-cloud", crypto::KeyUsage::kClientAuth, op)));
  int real_pages = 0;
  std::vector<cli::ErrorReportShard> shards;
  shards.push_back({"shard-test",
                    [&](const v1::QueryErrorsRequest& r)
                        -> absl::StatusOr<v1::QueryErrorsResponse> {
                      ++real_pages;
                      grpc::ClientContext ctx;
                      ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
                      v1::QueryErrorsResponse resp;
                      grpc::Status st = query->QueryErrors(&ctx, r, &resp);
                      if (!st.ok()) return rpc::FromGrpcStatus(st);
                      return resp;
                    }});
  // A second shard owning one more device, answering in two pages.
  const std::string other(64, 'e');
  shards.push_back({"shard-fake",
                    [&](const v1::QueryErrorsRequest& r)
                        -> absl::StatusOr<v1::QueryErrorsResponse> {
                      v1::QueryErrorsResponse resp;
                      v1::ErrorEvent e;
                      e.set_sequence(r.page_token().empty() ? 1 : 2);
                      e.set_kind(v1::ErrorEvent::WATCHDOG_RESET);
                      e.set_component("dw100-app");
                      e.set_time_unix_ms(1767225600000);
                      *resp.add_reports() =
                          errors::ToReport(other, TestPlatform::kTenant, e, 5);
                      if (r.page_token().empty())
                        resp.set_next_page_token("p2");
                      return resp;
                    }});
  v1::QueryErrorsRequest base;
  base.set_tenant_id(TestPlatform::kTenant);
  base.set_page_size(100);
  std::ostringstream csv;
  auto rows = cli::WriteErrorReportCsv(csv, shards, base);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(*rows, 250u + 30u + 5u + 2u);
  EXPECT_EQ(real_pages, 3);  // 285 reports, 100 a page

  std::vector<std::vector<std::string>> table = ParseCsv(csv.str());
  ASSERT_EQ(table.size(), 1u + 287u);
  const std::vector<std::string> header = {
      "Device ID",         "Event Type", "Event Class",  "Event Count",
      "Description",       "Start Time", "End Time",     "Component",
      "Component Version", "Sequence",   "Received Time"};
  EXPECT_EQ(table[0], header);
  std::map<std::string, int> got;
  int planned = 0, app = 0;
  for (size_t i = 1; i < table.size(); ++i) {
    const auto& r = table[i];
    ASSERT_EQ(r.size(), header.size()) << i;
    ++got[r[0]];
    EXPECT_EQ(r[3], "1");
    EXPECT_FALSE(r[5].empty());
    if (r[1] == "planned") {
      ++planned;
      EXPECT_EQ(r[2], "os");
      EXPECT_EQ(r[4], "PLANNED_RESTART: update installed");
    } else {
      EXPECT_EQ(r[1], "unplanned");
    }
    if (r[7] == "dw100-app" && r[0] != other) {
      ++app;
      EXPECT_EQ(r[2], "app");
      EXPECT_EQ(r[8], "1.2");
      EXPECT_TRUE(absl::EndsWith(r[4], ": pump \"P1\" stalled, retrying"))
          << r[4];
    }
  }
  sent[other] = 2;
  EXPECT_EQ(got, sent);
  EXPECT_EQ(planned, 25 + 3 + 0);
  EXPECT_EQ(app, 285 - 28);

  // A shard that fails: the export fails naming it.
  shards[1].query = [](const v1::QueryErrorsRequest&)
      -> absl::StatusOr<v1::QueryErrorsResponse> {
    return absl::UnavailableError("connection refused");
  };
  std::ostringstream partial;
  auto failed = cli::WriteErrorReportCsv(partial, shards, base);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(failed.status().message().find("shard shard-fake"),
            std::string::npos);
}

}  // namespace
}  // namespace sphere
