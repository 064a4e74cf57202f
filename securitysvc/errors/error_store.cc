#include "securitysvc/errors/error_store.h"

#include <algorithm>
#include <map>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/util/metrics.h"

namespace sphere::errors {
namespace {

metrics::CounterMetric* Events() {
  static auto* m = metrics::Counter(
      "sphere_error_events_total",
      "Uploaded error events by outcome (stored, duplicate, refused)");
  return m;
}

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-' || c == '+' || c == ':';
}

// ValidName: 1..max (or 0.. when `may_be_empty`) bytes of name characters.
bool ValidName(absl::string_view s, size_t max, bool may_be_empty) {
  if (s.size() > max || (s.empty() && !may_be_empty)) return false;
  return std::all_of(s.begin(), s.end(), IsNameChar);
}

bool ValidDeviceId(absl::string_view id) {
  if (id.size() != 64) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Seq(uint64_t seq) { return absl::StrFormat("%020d", seq); }
std::string Ms(int64_t ms) {
  return absl::StrFormat("%013d", std::max<int64_t>(ms, 0));
}
// Exit codes are int32: offset to sort numerically as text.
std::string Exit(int32_t code) {
  return absl::StrFormat("%010d",
                         static_cast<int64_t>(code) + int64_t{2147483648});
}

std::string DeviceKey(absl::string_view device, uint64_t seq) {
  return absl::StrCat(device, "/", Seq(seq));
}
std::string TenantKey(const v1::ErrorReport& r) {
  return absl::StrCat(r.tenant_id(), "/", Ms(r.received_unix_ms()), "/",
                      r.device_id(), "/", Seq(r.event().sequence()));
}
std::string Signature(absl::string_view component, absl::string_view version,
                      int kind, int32_t exit_code) {
  return absl::StrCat(component, "/", version, "/",
                      absl::StrFormat("%03d", kind), "/", Exit(exit_code));
}
std::string IssueKey(const v1::ErrorReport& r) {
  const v1::ErrorEvent& e = r.event();
  return absl::StrCat(r.tenant_id(), "/",
                      Signature(e.component(), e.component_version(), e.kind(),
                                e.exit_code()),
                      "/", r.device_id(), "/", Seq(e.sequence()));
}

std::string PrefixSuccessor(std::string s) {
  while (!s.empty()) {
    unsigned char c = static_cast<unsigned char>(s.back());
    if (c != 0xff) {
      s.back() = static_cast<char>(c + 1);
      return s;
    }
    s.pop_back();
  }
  return s;
}

bool IsOsComponent(absl::string_view c) {
  static const char* const kOs[] = {
      "os",          "kernel",   "bootloader",   "security-monitor",
      "pluton",      "pluton-runtime", "os-services", "secure-boot",
      "attestation", "update-agent",   "factory",     "apps",
      "network",     "firewall"};
  for (const char* os : kOs) {
    if (c == os) return true;
  }
  return false;
}

struct Agg {
  std::string component, version;
  int kind = 0;
  int32_t exit_code = 0;
  int64_t first = 0, last = 0;
  uint64_t events = 0, devices = 0;
  std::string last_device;
  void Add(absl::string_view device, int64_t received, uint64_t count) {
    if (events == 0 || received < first) first = received;
    if (received > last) last = received;
    events += count;
    if (device != last_device) {  // keys are sorted by device within a group
      ++devices;
      last_device = std::string(device);
    }
  }
};

// IssueHit: one errors_by_issue key parsed.
struct IssueHit {
  absl::string_view component, version, device;
  int kind = 0;
  int32_t exit_code = 0;
  int64_t received = 0;
  uint64_t count = 1;
};

bool ParseIssue(absl::string_view key, absl::string_view value,
                IssueHit* out) {
  std::vector<absl::string_view> p = absl::StrSplit(key, '/');
  if (p.size() != 7) return false;
  int64_t exit = 0;
  if (!absl::SimpleAtoi(p[3], &out->kind) || !absl::SimpleAtoi(p[4], &exit)) {
    return false;
  }
  out->component = p[1];
  out->version = p[2];
  out->exit_code = static_cast<int32_t>(exit - int64_t{2147483648});
  out->device = p[5];
  std::pair<absl::string_view, absl::string_view> v =
      absl::StrSplit(value, absl::MaxSplits(',', 1));
  if (!absl::SimpleAtoi(v.first, &out->received) ||
      !absl::SimpleAtoi(v.second, &out->count)) {
    return false;
  }
  return true;
}

void FillIssue(const Agg& a, v1::Issue* i) {
  i->set_issue_id(absl::BytesToHexString(
      Signature(a.component, a.version, a.kind, a.exit_code)));
  i->set_component(a.component);
  i->set_version(a.version);
  i->set_kind(static_cast<v1::ErrorEvent::Kind>(a.kind));
  i->set_exit_code(a.exit_code);
  i->set_first_seen_unix_ms(a.first);
  i->set_last_seen_unix_ms(a.last);
  i->set_event_count(a.events);
  i->set_device_count(a.devices);
}

}  // namespace

std::vector<std::string> ColumnFamilies() {
  return {kByDevice, kByTenant, kByIssue, kDevices};
}

absl::Status ValidateTenantId(absl::string_view tenant_id) {
  if (!ValidName(tenant_id, kMaxTenantIdBytes, false)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tenant_id must be 1..", kMaxTenantIdBytes,
        " bytes of letters, digits and . _ - + : (got ", tenant_id.size(),
        " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBatch(const v1::UploadErrorsRequest& request) {
  if (request.events_size() == 0) {
    return absl::InvalidArgumentError("upload errors: the batch has no events");
  }
  if (request.events_size() > kMaxEventsPerBatch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "upload errors: at most ", kMaxEventsPerBatch,
        " events per batch; got ", request.events_size(),
        " (split the batch)"));
  }
  absl::flat_hash_set<uint64_t> seqs;
  for (int i = 0; i < request.events_size(); ++i) {
    const v1::ErrorEvent& e = request.events(i);
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("upload errors: event ", i, ": ", what));
    };
    if (e.sequence() == 0) return bad("sequence must be > 0");
    if (!seqs.insert(e.sequence()).second) {
      return bad(absl::StrCat("sequence ", e.sequence(),
                              " appears twice in the batch"));
    }
    if (e.kind() == v1::ErrorEvent::KIND_UNSPECIFIED ||
        !v1::ErrorEvent::Kind_IsValid(e.kind())) {
      return bad(absl::StrCat("kind ", static_cast<int>(e.kind()),
                              " is not a known event kind"));
    }
    if (!ValidName(e.component(), kMaxComponentBytes, false)) {
      return bad(absl::StrCat("component must be 1..", kMaxComponentBytes,
                              " bytes of letters, digits and . _ - + : (got ",
                              e.component().size(), " bytes)"));
    }
    if (!ValidName(e.component_version(), kMaxVersionBytes, true)) {
      return bad(absl::StrCat("component_version must be at most ",
                              kMaxVersionBytes,
                              " bytes of letters, digits and . _ - + : (got ",
                              e.component_version().size(), " bytes)"));
    }
    if (e.detail().size() > kMaxDetailBytes) {
      return bad(absl::StrCat("detail is ", e.detail().size(),
                              " bytes; at most ", kMaxDetailBytes));
    }
    if (e.count() > kMaxEventCount) {
      return bad(absl::StrCat("count ", e.count(), " exceeds ", kMaxEventCount));
    }
    if (e.time_unix_ms() < 0 || e.end_time_unix_ms() < 0) {
      return bad("times must not be negative");
    }
    if (e.end_time_unix_ms() != 0 && e.end_time_unix_ms() < e.time_unix_ms()) {
      return bad("end_time_unix_ms is before time_unix_ms");
    }
  }
  return absl::OkStatus();
}

v1::ErrorReport ToReport(const std::string& device_id,
                         const std::string& tenant_id,
                         const v1::ErrorEvent& event, int64_t received_ms) {
  v1::ErrorReport r;
  r.set_device_id(device_id);
  r.set_tenant_id(tenant_id);
  *r.mutable_event() = event;
  r.set_received_unix_ms(received_ms);
  r.set_event_type(event.kind() == v1::ErrorEvent::PLANNED_RESTART
                       ? "planned"
                       : "unplanned");
  r.set_event_class(IsOsComponent(event.component()) ? "os" : "app");
  r.set_event_count(event.count() == 0 ? 1 : event.count());
  std::string d = v1::ErrorEvent::Kind_Name(event.kind());
  if (event.kind() == v1::ErrorEvent::APP_CRASH || event.exit_code() != 0) {
    absl::StrAppend(&d, " exit_code=", event.exit_code());
  }
  if (event.signal() != 0) absl::StrAppend(&d, " signal=", event.signal());
  if (!event.detail().empty()) absl::StrAppend(&d, ": ", event.detail());
  r.set_description(d);
  r.set_start_unix_ms(event.time_unix_ms());
  r.set_end_unix_ms(event.end_time_unix_ms() != 0 ? event.end_time_unix_ms()
                                                  : event.time_unix_ms());
  return r;
}

int64_t ErrorStore::FloorMs() const {
  return absl::ToUnixMillis(clock_->Now() - kRetention);
}

void ErrorStore::Ingest(const std::string& device_id,
                        const std::string& tenant_id,
                        const v1::UploadErrorsRequest& request,
                        IngestDone done) {
  if (absl::Status s = ValidateBatch(request); !s.ok()) {
    Events()->Increment("outcome=\"refused\"", request.events_size());
    done(s);
    return;
  }
  if (!ValidDeviceId(device_id) || !ValidateTenantId(tenant_id).ok()) {
    done(absl::FailedPreconditionError(
        "upload errors: the device's credential names no tenant; claim the "
        "device and attest again"));
    return;
  }
  // Claim every (device, sequence) of the batch, and the device's stats.
  std::vector<std::string> claims;
  claims.reserve(request.events_size() + 1);
  for (const v1::ErrorEvent& e : request.events()) {
    claims.push_back(DeviceKey(device_id, e.sequence()));
  }
  const std::string stats_claim = absl::StrCat(device_id, "/#");
  bool update_stats = false;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& c : claims) {
      if (in_flight_.contains(c)) {
        done(absl::AbortedError(absl::StrCat(
            "upload errors: another upload of event ", c.substr(65),
            " of this device is still being written; retry")));
        return;
      }
    }
    for (const std::string& c : claims) in_flight_.insert(c);
    if (request.dropped_events() > 0) {
      update_stats = in_flight_.insert(stats_claim).second;
    }
  }
  auto release = [this, claims, stats_claim, update_stats] {
    absl::MutexLock lock(&mu_);
    for (const std::string& c : claims) in_flight_.erase(c);
    if (update_stats) in_flight_.erase(stats_claim);
  };

  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  v1::UploadErrorsResponse response;
  store::WriteBatch batch;
  for (int i = 0; i < request.events_size(); ++i) {
    absl::StatusOr<std::string> existing = store_->Get(kByDevice, claims[i]);
    if (existing.ok()) {
      response.set_duplicates(response.duplicates() + 1);
      continue;
    }
    if (!absl::IsNotFound(existing.status())) {
      release();
      done(existing.status());
      return;
    }
    v1::ErrorReport r =
        ToReport(device_id, tenant_id, request.events(i), now_ms);
    std::string value = r.SerializeAsString();
    batch.Put(kByDevice, claims[i], value);
    batch.Put(kByTenant, TenantKey(r), value);
    batch.Put(kByIssue, IssueKey(r),
              absl::StrCat(now_ms, ",", r.event_count()));
    response.set_stored(response.stored() + 1);
  }
  if (update_stats) {
    absl::StatusOr<std::string> old = store_->Get(kDevices, device_id);
    uint64_t prev = 0;
    if (old.ok()) (void)absl::SimpleAtoi(*old, &prev);
    if (request.dropped_events() > prev) {
      batch.Put(kDevices, device_id, absl::StrCat(request.dropped_events()));
    }
  }
  if (batch.empty()) {  // all duplicates, and stored (durably) before
    release();
    Events()->Increment("outcome=\"duplicate\"", response.duplicates());
    done(response);
    return;
  }
  absl::Status queued = writer_->Submit(
      std::move(batch),
      [release, response, done](const absl::Status& s) {
        release();
        if (!s.ok()) {
          done(s);
          return;
        }
        Events()->Increment("outcome=\"stored\"", response.stored());
        Events()->Increment("outcome=\"duplicate\"", response.duplicates());
        done(response);
      });
  if (!queued.ok()) {
    release();
    done(queued);
  }
}

absl::StatusOr<v1::QueryErrorsResponse> ErrorStore::Query(
    const v1::QueryErrorsRequest& request) const {
  if (auto s = ValidateTenantId(request.tenant_id()); !s.ok()) return s;
  if (!request.device_id().empty() && !ValidDeviceId(request.device_id())) {
    return absl::InvalidArgumentError(
        "device_id must be 64 lowercase hex characters");
  }
  if (request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size must be at most ", kMaxPageSize, "; got ",
        request.page_size()));
  }
  if (request.page_token().size() > kMaxPageTokenBytes) {
    return absl::InvalidArgumentError("page_token is too long");
  }
  if (request.from_unix_ms() < 0 || request.to_unix_ms() < 0) {
    return absl::InvalidArgumentError("times must not be negative");
  }
  const uint32_t page =
      request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  const int64_t now = absl::ToUnixMillis(clock_->Now());
  const int64_t from = std::max(request.from_unix_ms(), FloorMs());
  const int64_t to = request.to_unix_ms() == 0 ? now : request.to_unix_ms();
  const bool by_device = !request.device_id().empty();
  const std::string cf = by_device ? kByDevice : kByTenant;
  const std::string prefix = by_device
                                 ? absl::StrCat(request.device_id(), "/")
                                 : absl::StrCat(request.tenant_id(), "/");
  std::string start;
  if (!request.page_token().empty()) {
    if (!absl::StartsWith(request.page_token(), prefix)) {
      return absl::InvalidArgumentError(
          "page_token does not belong to this query (tenant, device); start "
          "again without it");
    }
    start = request.page_token();
  } else if (!by_device) {
    start = absl::StrCat(prefix, Ms(from));
  }
  v1::QueryErrorsResponse out;
  absl::Status parse_error;
  int scanned = 0;
  std::unique_ptr<store::Snapshot> snap = store_->NewSnapshot();
  absl::Status s = snap->Scan(
      cf, prefix,
      [&](absl::string_view key, absl::string_view value) {
        if (out.reports_size() >= static_cast<int>(page) ||
            ++scanned > kMaxScanPerPage) {
          out.set_next_page_token(std::string(key));
          return false;
        }
        v1::ErrorReport r;
        if (!r.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          parse_error = absl::DataLossError(
              absl::StrCat("error report under key ", key, " is corrupt"));
          return false;
        }
        if (!by_device && r.received_unix_ms() > to) return false;  // done
        if (r.tenant_id() != request.tenant_id() ||
            r.received_unix_ms() < from || r.received_unix_ms() > to) {
          return true;  // another tenant's (device moved) or out of range
        }
        *out.add_reports() = std::move(r);
        return true;
      },
      start);
  if (!s.ok()) return s;
  if (!parse_error.ok()) return parse_error;
  return out;
}

absl::StatusOr<v1::ListIssuesResponse> ErrorStore::ListIssues(
    const v1::ListIssuesRequest& request) const {
  if (auto s = ValidateTenantId(request.tenant_id()); !s.ok()) return s;
  if (request.max_issues() > kMaxIssues) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_issues must be at most ", kMaxIssues));
  }
  const uint32_t max =
      request.max_issues() == 0 ? kDefaultIssues : request.max_issues();
  const int64_t floor = FloorMs();
  std::map<std::string, Agg> groups;
  v1::ListIssuesResponse out;
  int scanned = 0;
  std::unique_ptr<store::Snapshot> snap = store_->NewSnapshot();
  absl::Status s = snap->Scan(
      kByIssue, absl::StrCat(request.tenant_id(), "/"),
      [&](absl::string_view key, absl::string_view value) {
        if (++scanned > kMaxIssueScan) {
          out.set_truncated(true);
          return false;
        }
        IssueHit h;
        if (!ParseIssue(key, value, &h) || h.received < floor) return true;
        std::string sig =
            Signature(h.component, h.version, h.kind, h.exit_code);
        Agg& a = groups[sig];
        if (a.events == 0) {
          a.component = std::string(h.component);
          a.version = std::string(h.version);
          a.kind = h.kind;
          a.exit_code = h.exit_code;
        }
        a.Add(h.device, h.received, h.count);
        return true;
      });
  if (!s.ok()) return s;
  std::vector<const Agg*> sorted;
  for (const auto& [sig, a] : groups) sorted.push_back(&a);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Agg* a, const Agg* b) { return a->events > b->events; });
  for (const Agg* a : sorted) {
    if (out.issues_size() >= static_cast<int>(max)) break;
    FillIssue(*a, out.add_issues());
  }
  return out;
}

absl::StatusOr<v1::GetIssueResponse> ErrorStore::GetIssue(
    const v1::GetIssueRequest& request) const {
  if (auto s = ValidateTenantId(request.tenant_id()); !s.ok()) return s;
  std::string sig;
  if (request.issue_id().size() > 2 * 160 || request.issue_id().empty() ||
      request.issue_id().size() % 2 != 0 ||
      !std::all_of(request.issue_id().begin(), request.issue_id().end(),
                   [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError(
        "issue_id is not an issue id (hex, from `spherectl error issue list`)");
  }
  sig = absl::HexStringToBytes(request.issue_id());
  std::vector<absl::string_view> p = absl::StrSplit(sig, '/');
  int kind = 0;
  int64_t exit = 0;
  if (p.size() != 4 || !ValidName(p[0], kMaxComponentBytes, false) ||
      !ValidName(p[1], kMaxVersionBytes, true) ||
      !absl::SimpleAtoi(p[2], &kind) || !absl::SimpleAtoi(p[3], &exit)) {
    return absl::InvalidArgumentError(
        "issue_id is not an issue id (hex, from `spherectl error issue list`)");
  }
  const int64_t floor = FloorMs();
  std::map<std::string, Agg> versions;
  v1::GetIssueResponse out;
  int scanned = 0;
  std::unique_ptr<store::Snapshot> snap = store_->NewSnapshot();
  absl::Status s = snap->Scan(
      kByIssue, absl::StrCat(request.tenant_id(), "/", p[0], "/"),
      [&](absl::string_view key, absl::string_view value) {
        if (++scanned > kMaxIssueScan) {
          out.set_truncated(true);
          return false;
        }
        IssueHit h;
        if (!ParseIssue(key, value, &h) || h.received < floor) return true;
        if (h.kind != kind || h.exit_code != static_cast<int32_t>(
                                                  exit - int64_t{2147483648})) {
          return true;
        }
        Agg& a = versions[std::string(h.version)];
        if (a.events == 0) {
          a.component = std::string(h.component);
          a.version = std::string(h.version);
          a.kind = h.kind;
          a.exit_code = h.exit_code;
        }
        a.Add(h.device, h.received, h.count);
        return true;
      });
  if (!s.ok()) return s;
  auto it = versions.find(std::string(p[1]));
  if (it == versions.end()) {
    return absl::NotFoundError(absl::StrCat(
        "no issue ", request.issue_id(), " for tenant ", request.tenant_id(),
        " on this shard (none retained)"));
  }
  FillIssue(it->second, out.mutable_issue());
  for (const auto& [version, a] : versions) {
    v1::ReleaseTrend* t = out.add_releases();
    t->set_version(version);
    t->set_event_count(a.events);
    t->set_device_count(a.devices);
    t->set_first_seen_unix_ms(a.first);
    t->set_last_seen_unix_ms(a.last);
  }
  return out;
}

absl::StatusOr<int64_t> ErrorStore::SweepExpired() {
  const int64_t floor = FloorMs();
  int64_t deleted = 0;
  std::string start;  // next key to look at in errors_by_tenant
  for (;;) {
    store::WriteBatch batch;
    std::string next_start;
    bool more = false;
    absl::Status parse_error;
    absl::Status s = store_->Scan(
        kByTenant, "",
        [&](absl::string_view key, absl::string_view value) {
          size_t slash = key.find('/');
          if (slash == absl::string_view::npos) return true;
          absl::string_view tenant = key.substr(0, slash);
          int64_t received = 0;
          if (!absl::SimpleAtoi(key.substr(slash + 1, 13), &received)) {
            return true;
          }
          if (received >= floor) {
            // The rest of this tenant is younger: jump to the next tenant.
            next_start = PrefixSuccessor(absl::StrCat(tenant, "/"));
            more = true;
            return false;
          }
          v1::ErrorReport r;
          if (!r.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
            parse_error = absl::DataLossError(
                absl::StrCat("error report under key ", key, " is corrupt"));
            return false;
          }
          batch.Delete(kByTenant, key);
          batch.Delete(kByDevice,
                       DeviceKey(r.device_id(), r.event().sequence()));
          batch.Delete(kByIssue, IssueKey(r));
          ++deleted;
          if (batch.size() >= 3 * 5000) {
            next_start = std::string(key);
            next_start.push_back('\0');  // just after this key
            more = true;
            return false;
          }
          return true;
        },
        start);
    if (!s.ok()) return s;
    if (!parse_error.ok()) return parse_error;
    if (!batch.empty()) {
      if (auto w = store_->Write(batch); !w.ok()) return w;
    }
    if (!more) break;
    start = next_start;
  }
  if (deleted > 0) {
    for (const char* cf : {kByTenant, kByDevice, kByIssue}) {
      if (auto c = store_->CompactRange(cf); !c.ok()) return c;
    }
  }
  return deleted;
}

absl::StatusOr<uint64_t> ErrorStore::DroppedEvents(
    const std::string& device_id) const {
  absl::StatusOr<std::string> v = store_->Get(kDevices, device_id);
  if (absl::IsNotFound(v.status())) return 0;
  if (!v.ok()) return v.status();
  uint64_t n = 0;
  if (!absl::SimpleAtoi(*v, &n)) {
    return absl::DataLossError("dropped-events counter is corrupt");
  }
  return n;
}

}  // namespace sphere::errors
