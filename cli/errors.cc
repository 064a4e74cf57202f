// spherectl error reporting: `tenant download-error-report` (CSV of every
// shard's reports, paged) and `error issue list|show` (issues merged across
// shards). Each shard answers for the devices it owns, so every verb asks
// every shard in the cluster file and fails naming the shard that did not
// answer (a partial report would look complete).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/context.h"
#include "cli/error_report.h"
#include "common/rpc/rpc.h"
#include "protos/error_reporting.grpc.pb.h"
#include "protos/management.grpc.pb.h"

namespace sphere::cli {
namespace {

using ErrStub = v1::ErrorReportingService::Stub;

std::string Time(int64_t ms) {
  if (ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(ms),
                          absl::UTCTimeZone());
}

// TenantId: the tenant the command acts on, as an id (the shards key by id).
absl::StatusOr<std::string> TenantId(Context& c) {
  v1::GetTenantRequest req;
  req.set_tenant_id(c.TenantField());
  v1::Tenant t;
  if (auto s = c.Call(&v1::ManagementService::Stub::GetTenant, req, &t);
      !s.ok()) {
    return s;
  }
  return t.id();
}

struct Shard {
  std::string id;
  std::unique_ptr<ErrStub> stub;
};

absl::StatusOr<std::vector<Shard>> Shards(Context& c) {
  if (c.cluster().shards.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the cluster file ", c.cluster().path, " lists no shards"));
  }
  std::vector<Shard> out;
  for (const cluster::ShardEndpoint& s : c.cluster().shards) {
    out.push_back(
        {s.id, v1::ErrorReportingService::NewStub(rpc::NewChannel(
                   s.address, c.cluster().credential, s.server_name))});
  }
  return out;
}

template <typename Req, typename Resp>
absl::Status ShardCall(Context& c, const Shard& shard,
                       grpc::Status (ErrStub::*method)(grpc::ClientContext*,
                                                       const Req&, Resp*),
                       const Req& req, Resp* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(c.timeout()));
  absl::Status s = c.MapStatus(((*shard.stub).*method)(&ctx, req, resp));
  if (s.ok() || absl::IsNotFound(s)) return s;
  return absl::Status(s.code(),
                      absl::StrCat("shard ", shard.id, ": ", s.message()));
}

absl::Status DownloadReport(Context& c, const std::string& path,
                            const std::string& device, int64_t from_ms,
                            int64_t to_ms) {
  auto tenant = TenantId(c);
  if (!tenant.ok()) return tenant.status();
  auto shards = Shards(c);
  if (!shards.ok()) return shards.status();
  std::vector<ErrorReportShard> sources;
  for (const Shard& shard : *shards) {
    const Shard* s = &shard;
    sources.push_back({shard.id,
                       [&c, s](const v1::QueryErrorsRequest& req)
                           -> absl::StatusOr<v1::QueryErrorsResponse> {
                         grpc::ClientContext ctx;
                         ctx.set_deadline(rpc::Deadline(c.timeout()));
                         v1::QueryErrorsResponse resp;
                         absl::Status st = c.MapStatus(
                             s->stub->QueryErrors(&ctx, req, &resp));
                         if (!st.ok()) return st;
                         return resp;
                       }});
  }
  v1::QueryErrorsRequest req;
  req.set_tenant_id(*tenant);
  req.set_device_id(device);
  req.set_from_unix_ms(from_ms);
  req.set_to_unix_ms(to_ms);
  req.set_page_size(1000);
  const std::string tmp = path + ".partial";
  std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
  if (!out) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write ", tmp, " (check the directory exists)"));
  }
  absl::StatusOr<uint64_t> rows = WriteErrorReportCsv(out, sources, req);
  out.close();
  if (!rows.ok()) {
    std::remove(tmp.c_str());
    return rows.status();
  }
  if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  if (c.printer().json_output()) {
    json j = {{"output", path}, {"reports", *rows}, {"shards", shards->size()}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("wrote %llu error reports from %zu shards to %s\n",
                static_cast<unsigned long long>(*rows), shards->size(),
                path.c_str());
  }
  return absl::OkStatus();
}

void Merge(const v1::Issue& from, v1::Issue* into) {
  if (into->issue_id().empty()) {
    *into = from;
    return;
  }
  into->set_event_count(into->event_count() + from.event_count());
  // A device lives on one shard at a time: counts add up.
  into->set_device_count(into->device_count() + from.device_count());
  into->set_first_seen_unix_ms(
      std::min(into->first_seen_unix_ms(), from.first_seen_unix_ms()));
  into->set_last_seen_unix_ms(
      std::max(into->last_seen_unix_ms(), from.last_seen_unix_ms()));
}

const std::vector<std::string> kIssueHeaders = {
    "ISSUE",  "COMPONENT", "VERSION",    "KIND",     "EXIT CODE",
    "EVENTS", "DEVICES",   "FIRST SEEN", "LAST SEEN"};

std::vector<std::string> IssueRow(const v1::Issue& i) {
  return {i.issue_id(),
          i.component(),
          i.version().empty() ? "-" : i.version(),
          v1::ErrorEvent::Kind_Name(i.kind()),
          absl::StrCat(i.exit_code()),
          absl::StrCat(i.event_count()),
          absl::StrCat(i.device_count()),
          Time(i.first_seen_unix_ms()),
          Time(i.last_seen_unix_ms())};
}

absl::Status ListIssues(Context& c, uint32_t max) {
  auto tenant = TenantId(c);
  if (!tenant.ok()) return tenant.status();
  auto shards = Shards(c);
  if (!shards.ok()) return shards.status();
  std::map<std::string, v1::Issue> merged;
  bool truncated = false;
  for (const Shard& shard : *shards) {
    v1::ListIssuesRequest req;
    req.set_tenant_id(*tenant);
    req.set_max_issues(1000);
    v1::ListIssuesResponse resp;
    if (auto s = ShardCall(c, shard, &ErrStub::ListIssues, req, &resp);
        !s.ok()) {
      return s;
    }
    truncated |= resp.truncated() || resp.issues_size() >= 1000;
    for (const v1::Issue& i : resp.issues()) Merge(i, &merged[i.issue_id()]);
  }
  std::vector<v1::Issue> issues;
  for (auto& [id, i] : merged) issues.push_back(i);
  std::stable_sort(issues.begin(), issues.end(),
                   [](const v1::Issue& a, const v1::Issue& b) {
                     return a.event_count() > b.event_count();
                   });
  if (issues.size() > max) issues.resize(max);
  std::vector<std::vector<std::string>> rows;
  json arr = json::array();
  for (const v1::Issue& i : issues) {
    rows.push_back(IssueRow(i));
    arr.push_back(ToJson(i));
  }
  c.printer().Print(kIssueHeaders, rows, arr);
  if (truncated) {
    std::fprintf(stderr,
                 "note: a shard hit its scan limit; counts are partial\n");
  }
  return absl::OkStatus();
}

absl::Status ShowIssue(Context& c, const std::string& id) {
  if (auto s = Require("--id", id); !s.ok()) return s;
  auto tenant = TenantId(c);
  if (!tenant.ok()) return tenant.status();
  auto shards = Shards(c);
  if (!shards.ok()) return shards.status();
  v1::Issue issue;
  std::map<std::string, v1::ReleaseTrend> releases;
  for (const Shard& shard : *shards) {
    v1::GetIssueRequest req;
    req.set_tenant_id(*tenant);
    req.set_issue_id(id);
    v1::GetIssueResponse resp;
    absl::Status s = ShardCall(c, shard, &ErrStub::GetIssue, req, &resp);
    if (absl::IsNotFound(s)) continue;
    if (!s.ok()) return s;
    Merge(resp.issue(), &issue);
    for (const v1::ReleaseTrend& t : resp.releases()) {
      v1::ReleaseTrend& m = releases[t.version()];
      if (m.version().empty() && m.event_count() == 0) {
        m = t;
        continue;
      }
      m.set_event_count(m.event_count() + t.event_count());
      m.set_device_count(m.device_count() + t.device_count());
      m.set_first_seen_unix_ms(
          std::min(m.first_seen_unix_ms(), t.first_seen_unix_ms()));
      m.set_last_seen_unix_ms(
          std::max(m.last_seen_unix_ms(), t.last_seen_unix_ms()));
    }
  }
  if (issue.issue_id().empty()) {
    return absl::NotFoundError(
        absl::StrCat("no issue ", id,
                     " in the last 14 days; see `spherectl error issue "
                     "list`"));
  }
  if (c.printer().json_output()) {
    json j = ToJson(issue);
    j["releases"] = json::array();
    for (const auto& [v, t] : releases) j["releases"].push_back(ToJson(t));
    std::printf("%s\n", j.dump(2).c_str());
    return absl::OkStatus();
  }
  c.printer().Print(kIssueHeaders, {IssueRow(issue)}, json());
  std::printf(
      "\ntrend per release of %s %s exit code %d:\n", issue.component().c_str(),
      v1::ErrorEvent::Kind_Name(issue.kind()).c_str(), issue.exit_code());
  std::vector<std::vector<std::string>> rows;
  for (const auto& [v, t] : releases) {
    rows.push_back({v.empty() ? "-" : v, absl::StrCat(t.event_count()),
                    absl::StrCat(t.device_count()),
                    Time(t.first_seen_unix_ms()), Time(t.last_seen_unix_ms())});
  }
  c.printer().Print({"VERSION", "EVENTS", "DEVICES", "FIRST SEEN", "LAST SEEN"},
                    rows, json());
  return absl::OkStatus();
}

}  // namespace

void AddErrorCommands(CLI::App* app, Context* ctx) {
  // tenant download-error-report: a verb of the existing tenant noun.
  CLI::App* tenant = app->get_subcommand("tenant");
  auto output = std::make_shared<std::string>();
  auto device = std::make_shared<std::string>();
  auto from = std::make_shared<std::string>();
  auto to = std::make_shared<std::string>();
  CLI::App* download = Verb(
      tenant, ctx, "download-error-report",
      "write the tenant's error reports of the last 14 days (every shard, "
      "paged) as CSV: device id, event type, event class, event count, "
      "description, start and end time, ...",
      Access::kTenant, [output, device, from, to](Context& c) -> absl::Status {
        if (auto s = Require("--output", *output); !s.ok()) return s;
        int64_t from_ms = 0, to_ms = 0;
        for (auto [flag, text, ms] :
             {std::make_tuple("--from", from.get(), &from_ms),
              std::make_tuple("--to", to.get(), &to_ms)}) {
          if (text->empty()) continue;
          absl::Time t;
          std::string err;
          if (!absl::ParseTime(absl::RFC3339_full, *text, &t, &err)) {
            return absl::InvalidArgumentError(
                absl::StrCat(flag,
                             " must be an RFC 3339 time such as "
                             "2026-12-01T00:00:00Z: ",
                             err));
          }
          *ms = absl::ToUnixMillis(t);
        }
        return DownloadReport(c, *output, *device, from_ms, to_ms);
      });
  download->add_option("--output", *output, "CSV file to write")->required();
  download->add_option("--device", *device, "only this device id");
  download->add_option("--from", *from, "start time (RFC 3339)");
  download->add_option("--to", *to, "end time (RFC 3339; default now)");

  CLI::App* error = Noun(app, "error",
                         "error reports grouped into issues (component, "
                         "version, kind, exit code)");
  CLI::App* issue = Noun(error, "issue", "issues of the last 14 days");
  auto max = std::make_shared<uint32_t>(100);
  CLI::App* list = Verb(
      issue, ctx, "list", "list issues, most events first, from every shard",
      Access::kTenant, [max](Context& c) { return ListIssues(c, *max); });
  list->add_option("--max", *max, "at most N issues (default 100)")
      ->check(CLI::Range(1, 1000));
  auto id = std::make_shared<std::string>();
  CLI::App* show =
      Verb(issue, ctx, "show",
           "show one issue and its trend per release of the component",
           Access::kTenant, [id](Context& c) { return ShowIssue(c, *id); });
  show->add_option("--id", *id, "issue id from `error issue list`")->required();
}

}  // namespace sphere::cli
