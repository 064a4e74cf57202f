#include "securitysvc/management/catalog.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "securitysvc/management/catalog_internal.h"
#include "securitysvc/management/limits.h"

// The catalog's core: opening it, the transaction plumbing every resource
// file (catalog_*.cc) commits through, following a shared log, and
// compaction. Resources and access checks live in their own files.

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

namespace catalog_internal {

constexpr size_t kCompactChunk = 10000;

std::string RevisionKey(int64_t revision) {
  return absl::StrFormat("%020d", revision);
}

std::string NewId() {
  std::string b = crypto::RandomBytes(16);
  b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);  // UUID v4 layout
  b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
  std::string h = crypto::HexEncode(b);
  return absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4),
                      "-", h.substr(16, 4), "-", h.substr(20));
}

absl::Status ValidateName(absl::string_view kind, absl::string_view name) {
  return limits::ValidateName(absl::StrCat(kind, " name"), name);
}

absl::Status ValidateDescription(absl::string_view description) {
  return limits::ValidateDescription("description", description);
}

bool IsOsComponentKind(v1::ImageKind kind) {
  switch (kind) {
    case v1::IMAGE_KIND_PLUTON_RUNTIME:
    case v1::IMAGE_KIND_SECURITY_MONITOR:
    case v1::IMAGE_KIND_BOOTLOADER:
    case v1::IMAGE_KIND_KERNEL:
    case v1::IMAGE_KIND_OS_SERVICES:
      return true;
    default:
      return false;
  }
}

uint64_t DevicePrefix(absl::string_view id) {
  uint64_t v = 0;
  for (size_t i = 0; i < 16 && i < id.size(); ++i) {
    char c = id[i];
    v = (v << 4) | static_cast<uint64_t>(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return v;
}

bool IsHexId(absl::string_view id, size_t length) {
  if (id.size() != length) return false;
  for (char c : id) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

absl::StatusOr<std::optional<std::string>> GetIndex(store::Reader* store,
                                                    absl::string_view key) {
  absl::StatusOr<std::string> v = store->Get(kIndex, key);
  if (absl::IsNotFound(v.status())) return std::optional<std::string>();
  if (!v.ok()) return v.status();
  return std::optional<std::string>(*std::move(v));
}

absl::StatusOr<v1::ShardMap> ReadShardMap(store::Reader* reader,
                                          uint32_t virtual_nodes) {
  v1::ShardMap map;
  map.set_virtual_nodes(virtual_nodes);
  absl::StatusOr<std::string> rev = reader->Get(kMeta, kMetaShardMapRevision);
  if (rev.ok()) {
    int64_t r = 0;
    if (absl::SimpleAtoi(*rev, &r)) map.set_revision(r);
  } else if (!absl::IsNotFound(rev.status())) {
    return rev.status();
  }
  absl::Status s =
      ScanPrefix<v1::Shard>(reader, kShards, "", [&](const v1::Shard& shard) {
        *map.add_shards() = shard;
        return true;
      });
  if (!s.ok()) return s;
  return map;
}

// ---- Page tokens
// --------------------------------------------------------------- A token is
// web-safe base64 of "p1" NUL list NUL scope NUL last-key: opaque to callers,
// checked field by field here.

namespace {
constexpr char kTokenVersion[] = "p1";
constexpr size_t kMaxPageTokenBytes = 1024;

absl::Status BadToken() {
  return absl::InvalidArgumentError(
      "page token is malformed or belongs to another listing; pass back "
      "next_page_token unchanged, with the same tenant and filters");
}
}  // namespace

std::string EncodePageToken(absl::string_view list, absl::string_view scope,
                            absl::string_view last_key) {
  const char nul = '\0';
  return absl::WebSafeBase64Escape(absl::StrCat(
      kTokenVersion, absl::string_view(&nul, 1), list,
      absl::string_view(&nul, 1), scope, absl::string_view(&nul, 1), last_key));
}

absl::StatusOr<Page> ParsePage(uint32_t page_size, absl::string_view page_token,
                               absl::string_view list, absl::string_view scope,
                               absl::string_view prefix) {
  Page page;
  page.size = page_size == 0 ? kDefaultPageSize
                             : std::min<size_t>(page_size, kMaxPageSize);
  if (page_token.empty()) return page;
  if (page_token.size() > kMaxPageTokenBytes) return BadToken();
  std::string raw;
  if (!absl::WebSafeBase64Unescape(page_token, &raw)) return BadToken();
  std::vector<std::string> parts =
      absl::StrSplit(raw, absl::MaxSplits('\0', 3));
  if (parts.size() != 4 || parts[0] != kTokenVersion || parts[1] != list ||
      parts[2] != scope || parts[3].empty() ||
      !absl::StartsWith(parts[3], prefix)) {
    return BadToken();
  }
  page.after = std::move(parts[3]);
  return page;
}

}  // namespace catalog_internal

// ---- Transactions
// ------------------------------------------------------------

void Catalog::Txn::Put(absl::string_view cf, absl::string_view key,
                       const google::protobuf::Message& m) {
  std::string value = m.SerializeAsString();
  if (value.size() > limits::kMaxRecordBytes && error_.ok()) {
    error_ = absl::InvalidArgumentError(absl::StrFormat(
        "the %s record would be %d bytes; the limit is %d bytes; nothing "
        "changed",
        cf, value.size(), limits::kMaxRecordBytes));
  }
  batch_.Put(cf, key, value);
}

absl::Status Catalog::Commit(Txn& txn) {
  // Limits are checked before anything is written: a refused transaction
  // leaves the store and the revision unchanged.
  if (!txn.error_.ok()) return txn.error_;
  for (const v1::WatchEvent& e : txn.events_) {
    std::string bytes = e.SerializeAsString();
    if (bytes.size() > limits::kMaxWatchEventBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the change would be a %d-byte catalog event; the limit is %d "
          "bytes (far below the 8 MiB channel limit, so every follower can "
          "receive it); nothing changed",
          bytes.size(), limits::kMaxWatchEventBytes));
    }
    txn.batch_.Put(kLog, RevisionKey(e.revision()), bytes);
  }
  const int64_t last =
      txn.events_.empty() ? revision_ : txn.events_.back().revision();
  if (!txn.events_.empty()) {
    txn.batch_.Put(kMeta, kMetaRevision, absl::StrCat(last));
  }
  // Optimistic concurrency: the Txn applies only if nobody (another replica
  // on a shared log) committed since this catalog's revision_.
  txn.compares_.push_back({kMeta, kMetaRevision, revision_mod_});
  absl::StatusOr<RevisionLog::TxnResult> r =
      store_->Txn(txn.compares_, txn.batch_);
  // A failed write may still have reached the store: either way, claims
  // that read devices before taking mu_ read this commit's devices again.
  if (!r.ok() || r->succeeded) RecordDeviceWritesLocked(txn.batch_);
  if (!r.ok()) {
    return absl::Status(r.status().code(),
                        absl::StrCat("catalog write failed; nothing changed: ",
                                     r.status().message()));
  }
  if (!r->succeeded) {
    // Learn what the other writer committed so that a retry sees it.
    absl::Status caught_up =
        store_->shared() ? CatchUpLocked() : absl::OkStatus();
    return absl::AbortedError(absl::StrFormat(
        "another management replica changed the catalog at the same time "
        "(now at revision %d); nothing changed; retry the request%s",
        revision_,
        caught_up.ok() ? "" : absl::StrCat(" (", caught_up.message(), ")")));
  }
  if (txn.events_.empty()) return absl::OkStatus();
  revision_ = last;
  revision_mod_ = r->revision;
  for (const v1::WatchEvent& e : txn.events_) Notify(e);
  return absl::OkStatus();
}

void Catalog::RecordDeviceWritesLocked(const store::WriteBatch& batch) {
  size_t n = 0;
  for (const store::WriteBatch::Op& op : batch.ops()) n += op.cf == kDevices;
  if (n == 0) return;
  const uint64_t seq = device_write_seq_.load(std::memory_order_relaxed) + 1;
  if (n > kRecentDeviceWriteIds) {
    // Too many to remember (a large import): forget every commit, so a
    // claim that read before this one reads all its devices again.
    recent_device_writes_.clear();
    recent_device_write_ids_ = 0;
  } else {
    DeviceWrites w;
    w.seq = seq;
    w.ids.reserve(n);
    for (const store::WriteBatch::Op& op : batch.ops()) {
      if (op.cf == kDevices) w.ids.push_back(op.key);
    }
    recent_device_write_ids_ += n;
    recent_device_writes_.push_back(std::move(w));
    while (recent_device_write_ids_ > kRecentDeviceWriteIds) {
      recent_device_write_ids_ -= recent_device_writes_.front().ids.size();
      recent_device_writes_.pop_front();
    }
  }
  // Published after the store write: a reader that loads this value or a
  // later one reads (at least) what this commit wrote.
  device_write_seq_.store(seq, std::memory_order_release);
}

std::optional<absl::flat_hash_set<absl::string_view>>
Catalog::DevicesWrittenSinceLocked(uint64_t seq) const {
  absl::flat_hash_set<absl::string_view> ids;
  const uint64_t now = device_write_seq_.load(std::memory_order_relaxed);
  if (now == seq) return ids;
  // Commits seq+1 .. now must all still be remembered.
  if (recent_device_writes_.empty() ||
      recent_device_writes_.front().seq > seq + 1) {
    return std::nullopt;
  }
  for (const DeviceWrites& w : recent_device_writes_) {
    if (w.seq > seq) ids.insert(w.ids.begin(), w.ids.end());
  }
  return ids;
}

absl::Status Catalog::CatchUpLocked() {
  absl::StatusOr<RevisionLog::KeyInfo> info =
      store_->Stat(kMeta, kMetaRevision);
  if (!info.ok()) return info.status();
  int64_t target = 0;
  if (info->mod_revision != 0 && !absl::SimpleAtoi(info->value, &target)) {
    return absl::DataLossError("catalog meta \"revision\" is corrupt");
  }
  if (target <= revision_) return absl::OkStatus();
  absl::StatusOr<std::string> compacted = store_->Get(kMeta, kMetaCompacted);
  if (compacted.ok()) {
    int64_t c = 0;
    if (absl::SimpleAtoi(*compacted, &c) && c > compacted_) compacted_ = c;
  }
  int64_t next = revision_ + 1;
  absl::Status parse_error;
  bool gap = false;
  absl::Status s = store_->Scan(
      kLog, "",
      [&](absl::string_view key, absl::string_view value) {
        // Runs inside this call, which holds mu_ (thread-safety analysis
        // does not carry a caller's lock into a lambda).
        mu_.AssertHeld();
        absl::StatusOr<v1::WatchEvent> e =
            Parse<v1::WatchEvent>(value, absl::StrCat("log/", key));
        if (!e.ok()) {
          parse_error = e.status();
          return false;
        }
        if (e->revision() > target) return false;
        if (e->revision() != next) {
          gap = true;
          return false;
        }
        Notify(*e);
        ++next;
        return true;
      },
      RevisionKey(next));
  if (!s.ok()) return s;
  if (!parse_error.ok()) return parse_error;
  if (gap || next <= target) {
    FailLiveWatchersLocked(absl::AbortedError(absl::StrFormat(
        "the catalog change log was compacted past revision %d by another "
        "management replica; resume with Watch(start_revision=%d), which "
        "answers with a fresh snapshot",
        next, next)));
  }
  revision_ = target;
  revision_mod_ = info->mod_revision;
  return absl::OkStatus();
}

void Catalog::OnLogChanges(int64_t log_revision,
                           const std::vector<RevisionLog::Change>& changes) {
  absl::MutexLock lock(&mu_);
  bool advances = false;
  for (const RevisionLog::Change& c : changes) {
    if (c.cf == kDevices && !c.is_delete) {
      known_device_prefixes_.insert(DevicePrefix(c.key));
    } else if (c.cf == kMeta && c.key == kMetaCompacted && !c.is_delete) {
      int64_t v = 0;
      if (absl::SimpleAtoi(c.value, &v) && v > compacted_) compacted_ = v;
    } else if (c.cf == kMeta && c.key == kMetaRevision && !c.is_delete) {
      int64_t v = 0;
      if (absl::SimpleAtoi(c.value, &v) && v > revision_) advances = true;
    }
  }
  if (!advances) return;
  // The events are in this very Txn; CatchUpLocked reads them in order (and
  // anything committed since), so a follower never skips one.
  if (absl::Status s = CatchUpLocked(); !s.ok()) {
    FailLiveWatchersLocked(absl::UnavailableError(absl::StrCat(
        "management lost its catalog log (", s.message(),
        "); resume the watch from the last revision received + 1")));
  }
  (void)log_revision;
}

void Catalog::FailLiveWatchersLocked(const absl::Status& status) {
  for (WatchStream* w : live_watchers_) w->Kill(status);
  live_watchers_.clear();
}

// ---- Construction ----------------------------------------------------------

std::vector<std::string> Catalog::ColumnFamilies() {
  return {kTenants,      kProducts, kGroups,      kDevices,    kTenantDevices,
          kGroupDevices, kImages,   kDeployments, kOsReleases, kShards,
          kIndex,        kMeta,     kLog};
}

Catalog::Catalog(RevisionLog* log, Clock* clock, CatalogOptions options)
    : store_(log), clock_(clock), options_(std::move(options)) {}

Catalog::~Catalog() { follower_.reset(); }

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Open(store::Store* store,
                                                       Clock* clock,
                                                       CatalogOptions options) {
  EmbeddedRevisionLog::Options log_options;
  log_options.meta_cf = kMeta;
  log_options.versioned_column_families = {kMeta};
  absl::StatusOr<std::unique_ptr<EmbeddedRevisionLog>> log =
      EmbeddedRevisionLog::Open(store, log_options);
  if (!log.ok()) return log.status();
  absl::StatusOr<std::unique_ptr<Catalog>> c =
      Open(log->get(), clock, std::move(options));
  if (!c.ok()) return c.status();
  (*c)->owned_log_ = *std::move(log);
  return c;
}

absl::StatusOr<std::unique_ptr<Catalog>> Catalog::Open(RevisionLog* store,
                                                       Clock* clock,
                                                       CatalogOptions options) {
  if (options.master_key.size() != 32) {
    return absl::InvalidArgumentError(
        "catalog: master key must be 32 bytes (pki/master.key)");
  }
  if (!options.root_key.valid() || options.root_cert_pem.empty()) {
    return absl::InvalidArgumentError(
        "catalog: the platform root CA key and certificate are required "
        "(pki/root.key, pki/root.pem)");
  }
  std::unique_ptr<Catalog> c(new Catalog(store, clock, std::move(options)));
  absl::MutexLock lock(&c->mu_);
  // The revision and the mod revision the next Txn compares on, read together.
  absl::StatusOr<RevisionLog::KeyInfo> rev = store->Stat(kMeta, kMetaRevision);
  if (!rev.ok()) return rev.status();
  c->revision_mod_ = rev->mod_revision;
  for (auto [key, field] : {std::pair{kMetaRevision, &c->revision_},
                            std::pair{kMetaCompacted, &c->compacted_}}) {
    absl::StatusOr<std::string> v = store->Get(kMeta, key);
    if (absl::IsNotFound(v.status())) continue;
    if (!v.ok()) return v.status();
    if (!absl::SimpleAtoi(*v, field)) {
      return absl::DataLossError(
          absl::StrFormat("catalog meta \"%s\" is corrupt: \"%s\"", key, *v));
    }
  }
  absl::Status s =
      store->Scan(kDevices, "", [&](absl::string_view key, absl::string_view) {
        c->mu_.AssertHeld();  // held by Open's MutexLock around this Scan
        c->known_device_prefixes_.insert(DevicePrefix(key));
        return true;
      });
  if (!s.ok()) return s;
  if (store->shared()) {
    // Another replica may have committed between the reads above: catch up,
    // then follow every later Txn.
    if (auto caught_up = c->CatchUpLocked(); !caught_up.ok()) return caught_up;
    Catalog* raw = c.get();
    RevisionLog::WatchCallbacks callbacks;
    callbacks.on_changes = [raw](int64_t revision,
                                 const std::vector<RevisionLog::Change>& ch) {
      raw->OnLogChanges(revision, ch);
    };
    callbacks.on_error = [raw](const absl::Status& status) {
      absl::MutexLock lock(&raw->mu_);
      raw->FailLiveWatchersLocked(absl::UnavailableError(absl::StrCat(
          "management stopped following the catalog log (", status.message(),
          "); resume the watch from the last revision received + 1")));
    };
    absl::StatusOr<std::unique_ptr<RevisionLog::Watcher>> w =
        store->Watch(rev->revision + 1, std::move(callbacks));
    if (!w.ok()) return w.status();
    c->follower_ = *std::move(w);
  }
  return c;
}

int64_t Catalog::revision() const {
  absl::MutexLock lock(&mu_);
  return revision_;
}

int64_t Catalog::compacted_revision() const {
  absl::MutexLock lock(&mu_);
  return compacted_;
}

absl::Status Catalog::Compact(int64_t revision) {
  absl::MutexLock lock(&mu_);
  if (revision < 1 || revision > revision_ + 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cannot compact to revision %d; it must be between 1 and %d (the "
        "current revision + 1)",
        revision, revision_ + 1));
  }
  if (revision <= compacted_) return absl::OkStatus();
  // Record the new floor first: if we crash while deleting, the leftover
  // entries below it are simply never served.
  store::WriteBatch floor;
  floor.Put(kMeta, kMetaCompacted, absl::StrCat(revision));
  absl::StatusOr<RevisionLog::TxnResult> floor_written = store_->Txn({}, floor);
  if (!floor_written.ok()) return floor_written.status();
  compacted_ = revision;
  const std::string end = RevisionKey(revision);
  const size_t chunk = std::min(kCompactChunk, store_->MaxTxnOps());
  int64_t log_revision = floor_written->revision;
  while (true) {
    store::WriteBatch batch;
    size_t n = 0;
    absl::Status s =
        store_->Scan(kLog, "", [&](absl::string_view key, absl::string_view) {
          if (key >= end || n >= chunk) return false;
          batch.Delete(kLog, key);
          ++n;
          return true;
        });
    if (!s.ok()) return s;
    if (batch.empty()) break;
    absl::StatusOr<RevisionLog::TxnResult> w = store_->Txn({}, batch);
    if (!w.ok()) return w.status();
    log_revision = w->revision;
    if (n < chunk) break;
  }
  // Let the log forget the overwritten history too (etcd's MVCC history;
  // a no-op on the embedded log, which keeps none).
  return store_->Compact(log_revision);
}

}  // namespace sphere::management
