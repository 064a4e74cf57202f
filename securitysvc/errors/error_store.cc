#include "securitysvc/errors/error_store.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
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

// Padded: `v` in decimal, zero-padded to `width` digits (wider if it needs
// more). Hot on ingest (several per batch): no format-string parsing.
std::string Padded(uint64_t v, size_t width) {
  char buf[24];
  char* end = buf + sizeof(buf);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (static_cast<size_t>(end - p) < width) *--p = '0';
  return std::string(p, end);
}
// Exit codes are int32: offset to sort numerically as text.
std::string Exit(int32_t code) {
  return Padded(
      static_cast<uint64_t>(static_cast<int64_t>(code) + int64_t{2147483648}),
      10);
}

// ---- Format-2 keys (error_store.h). Devices inside the store are their
// 32 id bytes ("bin"); the API and error_devices use 64 lowercase hex.

constexpr size_t kDeviceBytes = 32;
constexpr size_t kBatchTail = 8 + kDeviceBytes + 8;      // ms, device, first
constexpr size_t kIssueTail = 2 + 4 + kDeviceBytes + 8;  // kind, exit, ...

void AppendBE(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}
uint64_t ReadBE(absl::string_view s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  }
  return v;
}
uint64_t MsBits(int64_t ms) {
  return static_cast<uint64_t>(std::max<int64_t>(ms, 0));
}
uint32_t ExitBits(int32_t code) {
  return static_cast<uint32_t>(static_cast<int64_t>(code) + int64_t{2147483648});
}
int32_t ExitFromBits(uint64_t bits) {
  return static_cast<int32_t>(static_cast<int64_t>(bits) - int64_t{2147483648});
}

// DeviceBin: the 32 bytes of a valid (64 lowercase hex) device id.
std::string DeviceBin(absl::string_view hex) {
  auto nibble = [](char c) {
    return c <= '9' ? c - '0' : c - 'a' + 10;
  };
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<char>((nibble(hex[2 * i]) << 4) |
                               nibble(hex[2 * i + 1]));
  }
  return out;
}
std::string DeviceHex(absl::string_view bin) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(bin.size() * 2, '0');
  for (size_t i = 0; i < bin.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(bin[i]);
    out[2 * i] = kHex[c >> 4];
    out[2 * i + 1] = kHex[c & 0xf];
  }
  return out;
}

std::string DeviceKeyBin(absl::string_view device_bin, uint64_t last) {
  std::string k;
  k.reserve(kDeviceBytes + 8);
  k.append(device_bin.data(), device_bin.size());
  AppendBE(&k, last, 8);
  return k;
}
std::string BatchKeyBin(absl::string_view tenant, int64_t ms,
                        absl::string_view device_bin, uint64_t first) {
  std::string k;
  k.reserve(tenant.size() + 1 + kBatchTail);
  k.append(tenant.data(), tenant.size());
  k.push_back('/');
  AppendBE(&k, MsBits(ms), 8);
  k.append(device_bin.data(), device_bin.size());
  AppendBE(&k, first, 8);
  return k;
}
std::string IssueKeyBin(absl::string_view tenant, absl::string_view component,
                        absl::string_view version, int kind, int32_t exit_code,
                        absl::string_view device_bin, uint64_t first) {
  std::string k;
  k.reserve(tenant.size() + component.size() + version.size() + 3 +
            kIssueTail);
  absl::StrAppend(&k, tenant, "/", component, "/", version, "/");
  AppendBE(&k, static_cast<uint64_t>(std::max(kind, 0)), 2);
  AppendBE(&k, ExitBits(exit_code), 4);
  k.append(device_bin.data(), device_bin.size());
  AppendBE(&k, first, 8);
  return k;
}
std::string Signature(absl::string_view component, absl::string_view version,
                      int kind, int32_t exit_code) {
  return absl::StrCat(component, "/", version, "/",
                      Padded(static_cast<uint64_t>(std::max(kind, 0)), 3), "/",
                      Exit(exit_code));
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
      "os",          "kernel",         "bootloader",  "security-monitor",
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

// ParseIssueKey: a format-2 errors_by_issue key (`device` is its 32 bytes).
bool ParseIssueKey(absl::string_view key, absl::string_view* tenant,
                   IssueHit* out, uint64_t* first) {
  if (key.size() < kIssueTail + 4) return false;
  const absl::string_view head = key.substr(0, key.size() - kIssueTail);
  std::vector<absl::string_view> p = absl::StrSplit(head, '/');
  if (p.size() != 4 || !p[3].empty()) return false;
  const size_t at = head.size();
  *tenant = p[0];
  out->component = p[1];
  out->version = p[2];
  out->kind = static_cast<int>(ReadBE(key, at, 2));
  out->exit_code = ExitFromBits(ReadBE(key, at + 2, 4));
  out->device = key.substr(at + 6, kDeviceBytes);
  *first = ReadBE(key, at + 6 + kDeviceBytes, 8);
  return true;
}

bool ParseIssue(absl::string_view key, absl::string_view value, IssueHit* out) {
  absl::string_view tenant;
  uint64_t first = 0;
  if (!ParseIssueKey(key, &tenant, out, &first)) return false;
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

// ---- Batch layout helpers ----

// ParseBatchKey: tenant/ms/device (32 bytes)/first of a format-2
// errors_by_tenant key.
bool ParseBatchKey(absl::string_view key, absl::string_view* tenant,
                   int64_t* ms, absl::string_view* device, uint64_t* first) {
  if (key.size() < kBatchTail + 2 || key[key.size() - kBatchTail - 1] != '/') {
    return false;
  }
  const size_t at = key.size() - kBatchTail;
  *tenant = key.substr(0, at - 1);
  *ms = static_cast<int64_t>(ReadBE(key, at, 8));
  *device = key.substr(at + 8, kDeviceBytes);
  *first = ReadBE(key, at + 8 + kDeviceBytes, 8);
  return *ms >= 0;
}

// Format-1 key parsers (MigrateFormat1 only): printable keys, device as
// 64 hex.
bool ParseBatchKeyV1(absl::string_view key, absl::string_view* tenant,
                     int64_t* ms, absl::string_view* device, uint64_t* first) {
  std::vector<absl::string_view> p = absl::StrSplit(key, '/');
  if (p.size() != 4) return false;
  *tenant = p[0];
  *device = p[2];
  return ValidDeviceId(*device) && absl::SimpleAtoi(p[1], ms) &&
         absl::SimpleAtoi(p[3], first);
}
bool ParseDeviceKeyV1(absl::string_view key, absl::string_view* device,
                      uint64_t* last) {
  std::vector<absl::string_view> p = absl::StrSplit(key, '/');
  if (p.size() != 2) return false;
  *device = p[0];
  return ValidDeviceId(*device) && absl::SimpleAtoi(p[1], last);
}
bool ParseIssueKeyV1(absl::string_view key, std::string* out) {
  std::vector<absl::string_view> p = absl::StrSplit(key, '/');
  if (p.size() != 7) return false;
  int kind = 0;
  int64_t exit = 0;
  uint64_t first = 0;
  if (!absl::SimpleAtoi(p[3], &kind) || !absl::SimpleAtoi(p[4], &exit) ||
      !ValidDeviceId(p[5]) || !absl::SimpleAtoi(p[6], &first)) {
    return false;
  }
  *out = IssueKeyBin(p[0], p[1], p[2], kind,
                     static_cast<int32_t>(exit - int64_t{2147483648}),
                     DeviceBin(p[5]), first);
  return true;
}

// Device index value: "<first>,<ms>,<tenant>".
bool ParseDeviceIndex(absl::string_view value, uint64_t* first, int64_t* ms,
                      absl::string_view* tenant) {
  std::vector<absl::string_view> p =
      absl::StrSplit(value, absl::MaxSplits(',', 2));
  if (p.size() != 3) return false;
  *tenant = p[2];
  return absl::SimpleAtoi(p[0], first) && absl::SimpleAtoi(p[1], ms);
}

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// EncodeEvents: the bytes of an UploadErrorsRequest holding only `events`
// (field 2, length-delimited), written without copying the events.
std::string EncodeEvents(const std::vector<const v1::ErrorEvent*>& events,
                         size_t begin, size_t end) {
  std::string out;
  size_t bytes = 0;
  for (size_t i = begin; i < end; ++i) bytes += events[i]->ByteSizeLong() + 6;
  out.reserve(bytes);
  for (size_t i = begin; i < end; ++i) {
    out.push_back(static_cast<char>((2 << 3) | 2));
    AppendVarint(&out, events[i]->GetCachedSize());
    events[i]->AppendToString(&out);
  }
  return out;
}

// Device record value: "<dropped>,<hwm>".
bool ParseDeviceRecord(absl::string_view v, uint64_t* dropped, uint64_t* hwm) {
  std::pair<absl::string_view, absl::string_view> p =
      absl::StrSplit(v, absl::MaxSplits(',', 1));
  *hwm = 0;
  if (!absl::SimpleAtoi(p.first, dropped)) return false;
  return p.second.empty() || absl::SimpleAtoi(p.second, hwm);
}

// Page tokens: "<key in hex>#<index of the next event in that batch>"
// (format-2 keys are binary; a token is a proto string).
std::string PageToken(absl::string_view key, int index) {
  return absl::StrCat(absl::BytesToHexString(key), "#", index);
}
bool ParsePageToken(absl::string_view token, std::string* key, int* index) {
  size_t hash = token.rfind('#');
  if (hash == absl::string_view::npos || hash % 2 != 0) return false;
  const absl::string_view hex = token.substr(0, hash);
  if (!std::all_of(hex.begin(), hex.end(),
                   [](char c) { return absl::ascii_isxdigit(c); })) {
    return false;
  }
  *key = absl::HexStringToBytes(hex);
  return absl::SimpleAtoi(token.substr(hash + 1), index) && *index >= 0 &&
         *index <= kMaxEventsPerBatch;
}

metrics::CounterMetric* SlowPath() {
  static auto* m = metrics::Counter(
      "sphere_error_ingest_slow_path_total",
      "Uploads resolved on the ingest worker (device state read or a "
      "sequence at or below the device's high-water mark)");
  return m;
}
metrics::CounterMetric* FilteredFirstUploads() {
  static auto* m = metrics::Counter(
      "sphere_error_ingest_first_uploads_total",
      "Uploads of devices not in memory that the filter of devices with "
      "stored batches showed to have none (no read)");
  return m;
}
metrics::CounterMetric* QuotaRefused() {
  static auto* m =
      metrics::Counter("sphere_error_quota_refused_total",
                       "Uploads refused by the per-device quota, by reason");
  return m;
}

}  // namespace

std::vector<std::string> ColumnFamilies() {
  return {kByDevice,   kByTenant,   kByIssue,  kDevices,
          kByDeviceV1, kByTenantV1, kByIssueV1};
}

std::string BatchKey(absl::string_view tenant, int64_t received_ms,
                     absl::string_view device_hex, uint64_t first) {
  return BatchKeyBin(tenant, received_ms, DeviceBin(device_hex), first);
}
std::string DeviceIndexKey(absl::string_view device_hex, uint64_t last) {
  return DeviceKeyBin(DeviceBin(device_hex), last);
}
std::string IssueKey(absl::string_view tenant, absl::string_view component,
                     absl::string_view version, int kind, int32_t exit_code,
                     absl::string_view device_hex, uint64_t first) {
  return IssueKeyBin(tenant, component, version, kind, exit_code,
                     DeviceBin(device_hex), first);
}

absl::StatusOr<int64_t> MigrateFormat1(store::Store* store) {
  constexpr int kPerWrite = 10000;
  struct Move {
    const char* from;
    const char* to;
    // The format-2 key of a format-1 key (false: unparseable).
    bool (*convert)(absl::string_view key, std::string* out);
  };
  const Move moves[] = {
      {kByTenantV1, kByTenant,
       [](absl::string_view key, std::string* out) {
         absl::string_view tenant, device;
         int64_t ms = 0;
         uint64_t first = 0;
         if (!ParseBatchKeyV1(key, &tenant, &ms, &device, &first)) {
           return false;
         }
         *out = BatchKeyBin(tenant, ms, DeviceBin(device), first);
         return true;
       }},
      {kByDeviceV1, kByDevice,
       [](absl::string_view key, std::string* out) {
         absl::string_view device;
         uint64_t last = 0;
         if (!ParseDeviceKeyV1(key, &device, &last)) return false;
         *out = DeviceKeyBin(DeviceBin(device), last);
         return true;
       }},
      {kByIssueV1, kByIssue, &ParseIssueKeyV1},
  };
  int64_t moved = 0;
  for (const Move& m : moves) {
    std::string start;
    for (;;) {
      store::WriteBatch batch;
      absl::Status problem;
      int n = 0;
      absl::Status s = store->Scan(
          m.from, "",
          [&](absl::string_view key, absl::string_view value) {
            std::string to;
            if (!m.convert(key, &to)) {
              problem = absl::DataLossError(absl::StrCat(
                  "format-1 key in ", m.from, " is corrupt: ",
                  absl::CHexEscape(key.substr(0, 200))));
              return false;
            }
            batch.Put(m.to, to, value);
            batch.Delete(m.from, key);
            start.assign(key.data(), key.size());
            start.push_back('\0');  // just after this key
            return ++n < kPerWrite;
          },
          start);
      if (!s.ok()) return s;
      if (!problem.ok()) return problem;
      if (n == 0) break;
      if (absl::Status w = store->Write(batch); !w.ok()) return w;
      moved += n;
      if (n < kPerWrite) break;
    }
  }
  return moved;
}

absl::Status ForEachStoredEvent(
    store::Reader& reader,
    const std::function<void(absl::string_view, absl::string_view,
                             const v1::ErrorEvent&)>& fn) {
  absl::Status problem;
  absl::Status s = reader.Scan(
      kByTenant, "", [&](absl::string_view key, absl::string_view value) {
        absl::string_view tenant, device;
        int64_t ms = 0;
        uint64_t first = 0;
        v1::UploadErrorsRequest events;
        if (!ParseBatchKey(key, &tenant, &ms, &device, &first) ||
            !events.ParseFromArray(value.data(),
                                   static_cast<int>(value.size()))) {
          problem = absl::DataLossError(
              absl::StrCat("error batch under key ",
                           absl::BytesToHexString(key), " is corrupt"));
          return false;
        }
        const std::string device_hex = DeviceHex(device);
        for (const v1::ErrorEvent& e : events.events()) {
          fn(device_hex, tenant, e);
        }
        return true;
      });
  return s.ok() ? problem : s;
}

absl::Status ValidateTenantId(absl::string_view tenant_id) {
  if (!ValidName(tenant_id, kMaxTenantIdBytes, false)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tenant_id must be 1..", kMaxTenantIdBytes,
                     " bytes of letters, digits and . _ - + : (got ",
                     tenant_id.size(), " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBatch(const v1::UploadErrorsRequest& request) {
  if (request.events_size() == 0) {
    return absl::InvalidArgumentError("upload errors: the batch has no events");
  }
  if (request.events_size() > kMaxEventsPerBatch) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload errors: at most ", kMaxEventsPerBatch,
                     " events per batch; got ", request.events_size(),
                     " (split the batch)"));
  }
  // Repeated sequences: sorted (sequence, index) pairs, on the stack for a
  // device's ring (no hash set per upload); the first repeat in event order
  // is the one named.
  absl::InlinedVector<std::pair<uint64_t, int>, 32> seqs;
  seqs.reserve(request.events_size());
  for (int i = 0; i < request.events_size(); ++i) {
    seqs.emplace_back(request.events(i).sequence(), i);
  }
  std::sort(seqs.begin(), seqs.end());
  int repeat = -1;  // index of the earliest event repeating an earlier one
  for (size_t k = 1; k < seqs.size(); ++k) {
    if (seqs[k].first == seqs[k - 1].first &&
        (repeat < 0 || seqs[k].second < repeat)) {
      repeat = seqs[k].second;
    }
  }
  for (int i = 0; i < request.events_size(); ++i) {
    const v1::ErrorEvent& e = request.events(i);
    auto bad = [&](absl::string_view what) {
      return absl::InvalidArgumentError(
          absl::StrCat("upload errors: event ", i, ": ", what));
    };
    if (e.sequence() == 0) return bad("sequence must be > 0");
    if (i == repeat) {
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
      return bad(
          absl::StrCat("count ", e.count(), " exceeds ", kMaxEventCount));
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

struct ErrorStore::Job {
  std::string device, tenant;
  std::string device_bin;  // `device`'s 32 bytes: the keys' form
  // The caller's request: valid until `done` runs (Ingest's contract), so
  // the worker reads it without a copy.
  const v1::UploadErrorsRequest* request = nullptr;
  std::string caller;  // set while the job waits in work_
  std::vector<const v1::ErrorEvent*> events;  // sorted by sequence
  uint64_t first = 0, last = 0;
  IngestDone done;
};

ErrorStore::ErrorStore(store::Store* store, store::GroupCommitWriter* writer,
                       Clock* clock, ErrorStoreOptions options)
    : ErrorStore(store, std::vector<store::GroupCommitWriter*>{writer}, clock,
                 options) {}

ErrorStore::ErrorStore(store::Store* store,
                       std::vector<store::GroupCommitWriter*> writers,
                       Clock* clock, ErrorStoreOptions options)
    : store_(store),
      writers_(std::move(writers)),
      clock_(clock),
      options_(options),
      max_queue_per_caller_(options.max_worker_queue_per_caller != 0
                                ? options.max_worker_queue_per_caller
                                : std::max<size_t>(options.max_worker_queue / 2,
                                                   1)),
      // Disabled: saturated from the start (no memory; never consulted).
      stored_(DeviceFilter::Options{
          .max_bytes = options.filter_stored_devices
                           ? options.stored_devices_filter_max_bytes
                           : 0}) {
  if (writers_.empty()) {
    std::fprintf(stderr, "ErrorStore: no group-commit writer\n");
    std::abort();
  }
  if (options_.device_events_per_second > 0) {
    event_quota_ = std::make_unique<RateLimiter>(
        clock_, RateLimiter::Options{options_.device_events_per_second,
                                     options_.device_event_burst,
                                     options_.max_cached_devices, 256});
  }
  if (options_.device_bytes_per_second > 0) {
    byte_quota_ = std::make_unique<RateLimiter>(
        clock_, RateLimiter::Options{options_.device_bytes_per_second,
                                     options_.device_byte_burst,
                                     options_.max_cached_devices, 256});
  }
  worker_ = std::thread([this] { WorkerLoop(); });
  if (options_.filter_stored_devices) {
    {
      absl::MutexLock lock(&mu_);
      filling_ = true;
    }
    filler_ = std::thread([this] { FillStoredDevices(); });
  }
}

ErrorStore::~ErrorStore() {
  stop_filling_.store(true, std::memory_order_relaxed);
  if (filler_.joinable()) filler_.join();
  {
    absl::MutexLock lock(&worker_mu_);
    stopping_ = true;
  }
  worker_.join();
}

void ErrorStore::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      absl::MutexLock lock(&worker_mu_);
      worker_mu_.Await(absl::Condition(
          +[](ErrorStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->worker_mu_) {
            return s->stopping_ || !s->work_.empty();
          },
          this));
      if (work_.empty()) return;  // stopping and drained
      job = std::move(work_.front());
      work_.pop_front();
      auto it = queued_by_caller_.find(job->caller);
      if (it != queued_by_caller_.end() && --it->second == 0) {
        queued_by_caller_.erase(it);
      }
    }
    Resolve(std::move(job));
  }
}

void ErrorStore::FillStoredDevices() {
  // Devices in groups per lock (Ingest takes mu_ on callback threads).
  constexpr size_t kPerLock = 4096;
  std::vector<std::string> pending;
  pending.reserve(kPerLock);
  std::string last;
  auto add_pending = [&] {
    absl::MutexLock lock(&mu_);
    for (const std::string& device : pending) stored_.Add(device);
    pending.clear();
  };
  absl::Status s = store_->Scan(
      kByDevice, "", [&](absl::string_view key, absl::string_view) {
        if (stop_filling_.load(std::memory_order_relaxed)) return false;
        // A key's first 32 bytes are the device whose LastKey finds it (a
        // malformed key too: the worker's read then reports it). A
        // device's keys are adjacent.
        if (key.size() < kDeviceBytes) return true;
        const absl::string_view device = key.substr(0, kDeviceBytes);
        if (device == last) return true;
        last.assign(device.data(), device.size());
        pending.push_back(last);
        if (pending.size() >= kPerLock) add_pending();
        return true;
      });
  // A failed or stopped scan leaves the filter unused: every device not in
  // memory is read by the worker, as without it.
  const bool complete =
      s.ok() && !stop_filling_.load(std::memory_order_relaxed);
  if (complete) add_pending();
  absl::MutexLock lock(&mu_);
  stored_ready_ = complete;
  filling_ = false;
}

bool ErrorStore::AwaitDeviceFilter() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](bool* filling) { return !*filling; }, &filling_));
  return stored_ready_;
}

store::GroupCommitWriter* ErrorStore::WriterFor(
    const std::string& device) const {
  if (writers_.size() == 1) return writers_[0];
  return writers_[absl::Hash<std::string>()(device) % writers_.size()];
}

int64_t ErrorStore::FloorMs() const {
  return absl::ToUnixMillis(clock_->Now() - kRetention);
}

ErrorStore::DeviceState& ErrorStore::StateLocked(absl::string_view device) {
  auto it = devices_.find(device);
  if (it != devices_.end()) return it->second;
  if (devices_.size() >= options_.max_cached_devices) {
    // Forget idle devices (their state is on disk; the worker re-reads it
    // when they upload again): an eighth of the bound at once, so the scan
    // (from the table's start, over the slots earlier rounds emptied) runs
    // once per many new devices, not once per new device.
    const size_t forget =
        std::max<size_t>(64, options_.max_cached_devices / 8);
    size_t forgotten = 0;
    for (auto i = devices_.begin();
         i != devices_.end() && forgotten < forget;) {
      if (i->second.in_flight.empty()) {
        devices_.erase(i++);
        ++forgotten;
      } else {
        ++i;
      }
    }
  }
  return devices_[device];
}

void ErrorStore::Unregister(absl::string_view device, uint64_t first,
                            uint64_t last) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(device);
  if (it == devices_.end()) return;
  auto& f = it->second.in_flight;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i].first == first && f[i].second == last) {
      f.erase(f.begin() + i);
      return;
    }
  }
}

absl::Status ErrorStore::TakeQuota(const std::string& device_id,
                                   const v1::UploadErrorsRequest& request) {
  const double n = request.events_size();
  const double bytes =
      byte_quota_ != nullptr ? static_cast<double>(request.ByteSizeLong()) : 0;
  if (byte_quota_ != nullptr &&
      byte_quota_->RetryAfter(device_id, bytes) > absl::ZeroDuration()) {
    QuotaRefused()->Increment("reason=\"bytes\"");
    return absl::ResourceExhaustedError(absl::StrCat(
        "upload errors: this device is over its upload quota of ",
        options_.device_bytes_per_second, " bytes/s; retry in ",
        absl::FormatDuration(byte_quota_->RetryAfter(device_id, bytes))));
  }
  if (event_quota_ != nullptr && !event_quota_->TryAcquire(device_id, n)) {
    QuotaRefused()->Increment("reason=\"events\"");
    return absl::ResourceExhaustedError(absl::StrCat(
        "upload errors: this device is over its upload quota of ",
        options_.device_events_per_second, " events/s; retry in ",
        absl::FormatDuration(event_quota_->RetryAfter(device_id, n))));
  }
  if (byte_quota_ != nullptr) (void)byte_quota_->TryAcquire(device_id, bytes);
  return absl::OkStatus();
}

void ErrorStore::Ingest(const std::string& device_id,
                        const std::string& tenant_id,
                        const v1::UploadErrorsRequest& request,
                        IngestDone done, absl::string_view caller) {
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
  auto job = std::make_shared<Job>();
  job->device = device_id;
  job->device_bin = DeviceBin(device_id);
  job->tenant = tenant_id;
  job->request = &request;
  job->done = std::move(done);
  job->events.reserve(request.events_size());
  for (const v1::ErrorEvent& e : request.events()) job->events.push_back(&e);
  auto by_seq = [](const v1::ErrorEvent* a, const v1::ErrorEvent* b) {
    return a->sequence() < b->sequence();
  };
  if (!std::is_sorted(job->events.begin(), job->events.end(), by_seq)) {
    std::sort(job->events.begin(), job->events.end(), by_seq);
  }
  job->first = job->events.front()->sequence();
  job->last = job->events.back()->sequence();

  bool fast = false, filtered = false;
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    DeviceState& st = StateLocked(job->device_bin);
    for (const auto& [lo, hi] : st.in_flight) {
      if (job->first <= hi && lo <= job->last) {
        refused = absl::AbortedError(
            absl::StrCat("upload errors: another upload of events ", lo, "..",
                         hi, " of this device is still being written; retry"));
        break;
      }
    }
    if (refused.ok() && static_cast<int>(st.in_flight.size()) >=
                            options_.max_in_flight_per_device) {
      QuotaRefused()->Increment("reason=\"in_flight\"");
      refused = absl::ResourceExhaustedError(absl::StrCat(
          "upload errors: this device already has ", st.in_flight.size(),
          " uploads being written (its share of the write queue); wait for "
          "their answers"));
    }
    if (refused.ok()) {
      if (!st.loaded && stored_ready_ &&
          !stored_.MayContain(job->device_bin)) {
        // Nothing of the device is stored, and nothing is in flight (a
        // batch enters the filter when built): its mark is 0, no read.
        st.loaded = true;
        filtered = true;
      }
      st.in_flight.emplace_back(job->first, job->last);
      fast = st.loaded && job->first > st.hwm &&
             (request.dropped_events() <= st.dropped || st.dropped_loaded);
    }
  }
  if (filtered) FilteredFirstUploads()->Increment();  // outside mu_
  if (!refused.ok()) {
    job->done(refused);
    return;
  }
  // Quota: events and bytes per device, taken only once the batch has its
  // place (a refused call takes nothing from the event bucket when the byte
  // bucket cannot pay).
  if (absl::Status q = TakeQuota(device_id, request); !q.ok()) {
    Unregister(job->device_bin, job->first, job->last);
    Events()->Increment("outcome=\"refused\"", request.events_size());
    job->done(q);
    return;
  }
  if (fast) {
    Build(job, {});
    return;
  }
  // Slow path: off the calling (gRPC callback) thread.
  SlowPath()->Increment();
  job->caller = caller.empty() ? device_id : std::string(caller);
  absl::Status full;
  const char* reason = "reason=\"queue\"";
  {
    absl::MutexLock lock(&worker_mu_);
    size_t& mine = queued_by_caller_[job->caller];
    if (stopping_ || work_.size() >= options_.max_worker_queue) {
      full = absl::ResourceExhaustedError(
          "upload errors: the ingest queue is full; retry later");
    } else if (mine >= max_queue_per_caller_) {
      reason = "reason=\"caller_queue\"";
      full = absl::ResourceExhaustedError(absl::StrCat(
          "upload errors: this caller already has ", mine,
          " uploads waiting for the ingest queue (its share of ",
          options_.max_worker_queue, "); retry once they are answered"));
    } else {
      ++mine;
      work_.push_back(job);
      return;
    }
    if (mine == 0) queued_by_caller_.erase(job->caller);
  }
  QuotaRefused()->Increment(reason);
  Unregister(job->device_bin, job->first, job->last);
  job->done(full);
}

void ErrorStore::Resolve(std::shared_ptr<Job> job) {
  auto fail = [&](absl::Status s) {
    Unregister(job->device_bin, job->first, job->last);
    job->done(std::move(s));
  };
  uint64_t hwm = 0;
  bool loaded = false, dropped_loaded = false, none_stored = false;
  {
    absl::MutexLock lock(&mu_);
    DeviceState& st = StateLocked(job->device_bin);
    // Queued before the filter was ready (or for its dropped count).
    none_stored = stored_ready_ && !stored_.MayContain(job->device_bin);
    loaded = st.loaded;
    dropped_loaded = st.dropped_loaded;
    hwm = st.hwm;
  }
  const std::string& prefix = job->device_bin;
  uint64_t disk_hwm = 0, dropped = 0;
  if (!loaded && !none_stored) {
    // The device's greatest stored sequence: its last index key.
    absl::StatusOr<std::string> last = store_->LastKey(kByDevice, prefix);
    if (last.ok()) {
      if (last->size() != kDeviceBytes + 8) {
        fail(absl::DataLossError(absl::StrCat(
            "error index key of device ", job->device, " is corrupt")));
        return;
      }
      disk_hwm = ReadBE(*last, kDeviceBytes, 8);
    } else if (!absl::IsNotFound(last.status())) {
      fail(last.status());
      return;
    }
  }
  const bool need_dropped =
      !dropped_loaded && job->request->dropped_events() > 0;
  if (need_dropped) {
    absl::StatusOr<std::string> rec = store_->Get(kDevices, job->device);
    uint64_t record_hwm = 0;
    if (rec.ok()) {
      if (!ParseDeviceRecord(*rec, &dropped, &record_hwm)) {
        fail(absl::DataLossError(absl::StrCat(
            "error-reporting record of device ", job->device, " is corrupt")));
        return;
      }
    } else if (!absl::IsNotFound(rec.status())) {
      fail(rec.status());
      return;
    }
  }
  if (!loaded || need_dropped) {
    absl::MutexLock lock(&mu_);
    DeviceState& st = StateLocked(job->device_bin);
    if (!loaded && !st.loaded) {
      st.loaded = true;
      st.hwm = std::max(st.hwm, disk_hwm);
    }
    if (need_dropped && !st.dropped_loaded) {
      st.dropped_loaded = true;
      st.dropped = std::max(st.dropped, dropped);
    }
    hwm = st.hwm;
  }
  std::vector<StoredBatch> stored;
  if (job->first <= hwm) {
    // The stored batches overlapping [first, last]: ranges are disjoint, so
    // sorted by last they are sorted by first too.
    absl::Status problem;
    int seen = 0;
    absl::Status s = store_->Scan(
        kByDevice, prefix,
        [&](absl::string_view key, absl::string_view value) {
          uint64_t first = 0;
          int64_t ms = 0;
          absl::string_view tenant;
          if (key.size() != kDeviceBytes + 8 ||
              !ParseDeviceIndex(value, &first, &ms, &tenant)) {
            problem = absl::DataLossError(absl::StrCat(
                "error index key of device ", job->device, " is corrupt"));
            return false;
          }
          const uint64_t last = ReadBE(key, kDeviceBytes, 8);
          if (first > job->last) return false;
          if (++seen > 2 * kMaxEventsPerBatch) {
            problem = absl::InvalidArgumentError(
                "upload errors: the batch's sequences span too many stored "
                "batches of this device; upload in sequence order");
            return false;
          }
          absl::StatusOr<std::string> batch = store_->Get(
              kByTenant, BatchKeyBin(tenant, ms, job->device_bin, first));
          v1::UploadErrorsRequest events;
          if (!batch.ok() || !events.ParseFromString(*batch)) {
            if (batch.ok() || absl::IsNotFound(batch.status())) {
              problem = absl::DataLossError(absl::StrCat(
                  "stored error batch ", first, "..", last, " of device ",
                  job->device, " is missing or corrupt"));
            } else {
              problem = batch.status();
            }
            return false;
          }
          StoredBatch b;
          b.first = first;
          b.last = last;
          for (const v1::ErrorEvent& e : events.events()) {
            b.seqs.push_back(e.sequence());
          }
          std::sort(b.seqs.begin(), b.seqs.end());
          stored.push_back(std::move(b));
          return true;
        },
        DeviceKeyBin(job->device_bin, job->first));
    if (s.ok()) s = problem;
    if (!s.ok()) {
      fail(s);
      return;
    }
  }
  Build(job, stored);
}

void ErrorStore::Build(const std::shared_ptr<Job>& job,
                       const std::vector<StoredBatch>& stored) {
  const v1::UploadErrorsRequest& request = *job->request;
  const std::vector<const v1::ErrorEvent*>& events = job->events;
  // Classify: duplicates (in a stored batch), refused (inside a stored
  // range but not in it), new; new events form runs not split by a stored
  // range, each run stored as one batch value.
  std::vector<std::pair<size_t, size_t>> runs;  // [begin, end) of `fresh`
  std::vector<const v1::ErrorEvent*> fresh;
  fresh.reserve(events.size());
  uint32_t duplicates = 0;
  size_t r = 0;  // first stored batch with last >= current sequence
  size_t run_range = SIZE_MAX;  // stored index the current run sits before
  for (const v1::ErrorEvent* e : events) {
    const uint64_t seq = e->sequence();
    while (r < stored.size() && stored[r].last < seq) ++r;
    if (r < stored.size() && stored[r].first <= seq) {
      if (std::binary_search(stored[r].seqs.begin(), stored[r].seqs.end(),
                             seq)) {
        ++duplicates;
        continue;
      }
      Unregister(job->device_bin, job->first, job->last);
      Events()->Increment("outcome=\"refused\"", request.events_size());
      job->done(absl::InvalidArgumentError(absl::StrCat(
          "upload errors: event sequence ", seq,
          " lies inside an already stored batch (", stored[r].first, "..",
          stored[r].last,
          ") of this device without being part of it; a device's sequence "
          "numbers must rise")));
      return;
    }
    if (runs.empty() || run_range != r) {
      runs.emplace_back(fresh.size(), fresh.size());
      run_range = r;
    }
    fresh.push_back(e);
    runs.back().second = fresh.size();
  }

  v1::UploadErrorsResponse response;
  response.set_stored(static_cast<uint32_t>(fresh.size()));
  response.set_duplicates(duplicates);
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  store::WriteBatch batch;
  for (const auto& [begin, end] : runs) {
    const uint64_t first = fresh[begin]->sequence();
    const uint64_t last = fresh[end - 1]->sequence();
    batch.Put(kByTenant, BatchKeyBin(job->tenant, now_ms, job->device_bin, first),
              EncodeEvents(fresh, begin, end));
    batch.Put(kByDevice, DeviceKeyBin(job->device_bin, last),
              absl::StrCat(first, ",", now_ms, ",", job->tenant));
    // One issue entry per signature in the run (formatted once per
    // signature, not per event).
    using Sig = std::tuple<absl::string_view, absl::string_view, int, int32_t>;
    absl::flat_hash_map<Sig, uint64_t> sigs;
    for (size_t i = begin; i < end; ++i) {
      const v1::ErrorEvent& e = *fresh[i];
      sigs[Sig(e.component(), e.component_version(), e.kind(),
               e.exit_code())] += e.count() == 0 ? 1 : e.count();
    }
    for (const auto& [sig, count] : sigs) {
      batch.Put(kByIssue,
                IssueKeyBin(job->tenant, std::get<0>(sig), std::get<1>(sig),
                            std::get<2>(sig), std::get<3>(sig),
                            job->device_bin, first),
                absl::StrCat(now_ms, ",", count));
    }
  }

  absl::Status queued;
  uint64_t new_hwm = 0, new_dropped = 0;
  {
    absl::MutexLock lock(&mu_);
    DeviceState& st = StateLocked(job->device_bin);
    // The record never moves the high-water mark down: include every batch
    // of the device in flight (they may commit in either order).
    new_hwm = st.hwm;
    for (const auto& range : st.in_flight) {
      new_hwm = std::max(new_hwm, range.second);
    }
    new_dropped = std::max(st.dropped, request.dropped_events());
    // The device record only when its dropped count rises (the high-water
    // mark is the device's last index key).
    const bool record_changes = new_dropped > st.dropped;
    if (fresh.empty() && !record_changes) {
      // All duplicates of durable writes: nothing to write.
      auto& f = st.in_flight;
      for (size_t i = 0; i < f.size(); ++i) {
        if (f[i].first == job->first && f[i].second == job->last) {
          f.erase(f.begin() + i);
          break;
        }
      }
      queued = absl::CancelledError();  // marker: answered below
    } else {
      // In the filter before its write can be durable (or the device be
      // forgotten): no later upload takes the device for one with
      // nothing stored.
      if (!fresh.empty()) stored_.Add(job->device_bin);
      if (record_changes) {
        batch.Put(kDevices, job->device,
                  absl::StrCat(new_dropped, ",", new_hwm));
      }
      // Submitted under mu_ so device records reach the queue in the order
      // their high-water marks were computed.
      queued =
          WriterFor(job->device)
              ->Submit(std::move(batch), [this, job, response, new_hwm,
                                          new_dropped](const absl::Status& s) {
                {
                  absl::MutexLock lock(&mu_);
                  DeviceState& st = StateLocked(job->device_bin);
                  auto& f = st.in_flight;
                  for (size_t i = 0; i < f.size(); ++i) {
                    if (f[i].first == job->first && f[i].second == job->last) {
                      f.erase(f.begin() + i);
                      break;
                    }
                  }
                  if (s.ok()) {
                    st.hwm = std::max(st.hwm, new_hwm);
                    st.dropped = std::max(st.dropped, new_dropped);
                  }
                }
                if (!s.ok()) {
                  job->done(s);
                  return;
                }
                // On the group-commit thread: no zero increments.
                if (response.stored() > 0) {
                  Events()->Increment("outcome=\"stored\"", response.stored());
                }
                if (response.duplicates() > 0) {
                  Events()->Increment("outcome=\"duplicate\"",
                                      response.duplicates());
                }
                job->done(response);
              });
    }
  }
  if (absl::IsCancelled(queued)) {
    Events()->Increment("outcome=\"duplicate\"", response.duplicates());
    job->done(response);
    return;
  }
  if (!queued.ok()) {
    Unregister(job->device_bin, job->first, job->last);
    job->done(queued);
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
    return absl::InvalidArgumentError(absl::StrCat("page_size must be at most ",
                                                   kMaxPageSize, "; got ",
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
  const std::string prefix = by_device ? DeviceBin(request.device_id())
                                       : absl::StrCat(request.tenant_id(), "/");
  std::string start;
  int skip = 0;  // events of the first batch already returned
  if (!request.page_token().empty()) {
    if (!ParsePageToken(request.page_token(), &start, &skip) ||
        !absl::StartsWith(start, prefix)) {
      return absl::InvalidArgumentError(
          "page_token does not belong to this query (tenant, device); start "
          "again without it");
    }
  } else if (!by_device) {
    start = prefix;
    AppendBE(&start, MsBits(from), 8);
  }
  v1::QueryErrorsResponse out;
  absl::Status problem;
  int scanned = 0;
  std::unique_ptr<store::Snapshot> snap = store_->NewSnapshot();
  absl::Status s = snap->Scan(
      cf, prefix,
      [&](absl::string_view key, absl::string_view value) {
        const int first_index = key == start ? skip : 0;
        if (++scanned > kMaxScanPerPage) {
          out.set_next_page_token(PageToken(key, first_index));
          return false;
        }
        std::string batch_value;
        absl::string_view tenant, device;
        int64_t ms = 0;
        uint64_t first = 0;
        if (by_device) {
          if (key.size() != kDeviceBytes + 8 ||
              !ParseDeviceIndex(value, &first, &ms, &tenant)) {
            problem = absl::DataLossError(
                absl::StrCat("error index key ", absl::BytesToHexString(key),
                             " is corrupt"));
            return false;
          }
          device = prefix;
          if (tenant != request.tenant_id() || ms < from || ms > to) {
            return true;  // another tenant's (device moved) or out of range
          }
          absl::StatusOr<std::string> b =
              snap->Get(kByTenant, BatchKeyBin(tenant, ms, device, first));
          if (!b.ok()) {
            problem = absl::IsNotFound(b.status())
                          ? absl::DataLossError(absl::StrCat(
                                "error batch of index key ",
                                absl::BytesToHexString(key), " is missing"))
                          : b.status();
            return false;
          }
          batch_value = *std::move(b);
          value = batch_value;
        } else {
          if (!ParseBatchKey(key, &tenant, &ms, &device, &first)) {
            problem = absl::DataLossError(absl::StrCat(
                "error batch key ", absl::BytesToHexString(key),
                " is corrupt"));
            return false;
          }
          if (ms > to) return false;  // time-ordered: done
          if (ms < from) return true;
        }
        v1::UploadErrorsRequest events;
        if (!events.ParseFromArray(value.data(),
                                   static_cast<int>(value.size()))) {
          problem = absl::DataLossError(
              absl::StrCat("error batch under key ",
                           absl::BytesToHexString(key), " is corrupt"));
          return false;
        }
        const std::string device_id = by_device ? request.device_id()
                                                : DeviceHex(device);
        const std::string tenant_id(tenant);
        for (int i = first_index; i < events.events_size(); ++i) {
          if (out.reports_size() >= static_cast<int>(page)) {
            out.set_next_page_token(PageToken(key, i));
            return false;
          }
          *out.add_reports() =
              ToReport(device_id, tenant_id, events.events(i), ms);
        }
        return true;
      },
      start);
  if (!s.ok()) return s;
  if (!problem.ok()) return problem;
  return out;
}

absl::StatusOr<v1::ListIssuesResponse> ErrorStore::ListIssues(
    const v1::ListIssuesRequest& request) const {
  if (auto s = ValidateTenantId(request.tenant_id()); !s.ok()) return s;
  if (request.max_issues() > kMaxIssues) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_issues must be at most ", kMaxIssues));
  }
  const uint32_t max =
      request.max_issues() == 0 ? kDefaultIssues : request.max_issues();
  const int64_t floor = FloorMs();
  std::map<std::string, Agg> groups;
  v1::ListIssuesResponse out;
  int scanned = 0;
  std::unique_ptr<store::Snapshot> snap = store_->NewSnapshot();
  absl::Status s =
      snap->Scan(kByIssue, absl::StrCat(request.tenant_id(), "/"),
                 [&](absl::string_view key, absl::string_view value) {
                   if (++scanned > kMaxIssueScan) {
                     out.set_truncated(true);
                     return false;
                   }
                   IssueHit h;
                   if (!ParseIssue(key, value, &h) || h.received < floor)
                     return true;
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
  std::stable_sort(
      sorted.begin(), sorted.end(),
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
        if (h.kind != kind ||
            h.exit_code != static_cast<int32_t>(exit - int64_t{2147483648})) {
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
    return absl::NotFoundError(absl::StrCat("no issue ", request.issue_id(),
                                            " for tenant ", request.tenant_id(),
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
    absl::Status problem;
    absl::Status s = store_->Scan(
        kByTenant, "",
        [&](absl::string_view key, absl::string_view value) {
          absl::string_view tenant, device;
          int64_t received = 0;
          uint64_t first = 0;
          if (!ParseBatchKey(key, &tenant, &received, &device, &first)) {
            return true;
          }
          if (received >= floor) {
            // The rest of this tenant is younger: jump to the next tenant.
            next_start = PrefixSuccessor(absl::StrCat(tenant, "/"));
            more = true;
            return false;
          }
          v1::UploadErrorsRequest events;
          if (!events.ParseFromArray(value.data(),
                                     static_cast<int>(value.size()))) {
            problem = absl::DataLossError(
                absl::StrCat("error batch under key ", absl::BytesToHexString(key), " is corrupt"));
            return false;
          }
          uint64_t last = first;
          absl::flat_hash_set<std::string> issue_keys;
          for (const v1::ErrorEvent& e : events.events()) {
            last = std::max<uint64_t>(last, e.sequence());
            issue_keys.insert(IssueKeyBin(tenant, e.component(),
                                          e.component_version(), e.kind(),
                                          e.exit_code(), device, first));
          }
          batch.Delete(kByTenant, key);
          batch.Delete(kByDevice, DeviceKeyBin(device, last));
          for (const std::string& k : issue_keys) batch.Delete(kByIssue, k);
          deleted += events.events_size();
          if (batch.size() >= 20000) {
            next_start = std::string(key);
            next_start.push_back('\0');  // just after this key
            more = true;
            return false;
          }
          return true;
        },
        start);
    if (!s.ok()) return s;
    if (!problem.ok()) return problem;
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
  uint64_t n = 0, hwm = 0;
  if (!ParseDeviceRecord(*v, &n, &hwm)) {
    return absl::DataLossError("dropped-events counter is corrupt");
  }
  return n;
}

}  // namespace sphere::errors
