#include "securitysvc/management/catalog.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "securitysvc/management/limits.h"

namespace sphere::management {
namespace {

// IsOsComponentKind: boot-chain images reach devices through OS feeds only.
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

constexpr char kTenants[] = "tenants";
constexpr char kProducts[] = "products";
constexpr char kGroups[] = "groups";
constexpr char kDevices[] = "devices";
constexpr char kTenantDevices[] = "tenant_devices";  // tenant/device -> ""
constexpr char kImages[] = "images";
constexpr char kDeployments[] = "deployments";
constexpr char kOsReleases[] = "os_releases";
constexpr char kShards[] = "shards";
constexpr char kMeta[] = "meta";
constexpr char kLog[] = "log";  // %020d revision -> WatchEvent

constexpr char kMetaRevision[] = "revision";
constexpr char kMetaCompacted[] = "compacted";
constexpr char kMetaShardMapRevision[] = "shard_map_revision";

using limits::kMaxNameLength;
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

// ValidateName: see limits::ValidateName.
absl::Status ValidateName(absl::string_view kind, absl::string_view name) {
  return limits::ValidateName(absl::StrCat(kind, " name"), name);
}

absl::Status ValidateDescription(absl::string_view description) {
  return limits::ValidateDescription("description", description);
}

// ImageKey: images are keyed by their owner ("<tenant id>/<image id>"; the
// platform's OS images under "platform/<image id>"), so byte-identical
// uploads by two tenants are two records and neither blocks the other.
std::string ImageKey(absl::string_view tenant_id, absl::string_view image_id) {
  return absl::StrCat(tenant_id.empty() ? "platform" : tenant_id, "/",
                      image_id);
}

// Dedupe returns `ids` without repeats, in first-seen order.
std::vector<std::string> Dedupe(
    const google::protobuf::RepeatedPtrField<std::string>& ids) {
  std::vector<std::string> out;
  absl::flat_hash_set<absl::string_view> seen;
  for (const std::string& id : ids) {
    if (seen.insert(id).second) out.push_back(id);
  }
  return out;
}

// DevicePrefix: the first 8 bytes of a (64-hex) device id as an integer.
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

template <typename Message>
absl::StatusOr<Message> Parse(absl::string_view bytes, absl::string_view what) {
  Message m;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(
        absl::StrFormat("catalog record %s is corrupt", what));
  }
  return m;
}

template <typename Message>
absl::StatusOr<std::optional<Message>> GetRecord(store::Reader* store,
                                                 absl::string_view cf,
                                                 absl::string_view key) {
  absl::StatusOr<std::string> value = store->Get(cf, key);
  if (absl::IsNotFound(value.status())) return std::optional<Message>();
  if (!value.ok()) return value.status();
  absl::StatusOr<Message> m =
      Parse<Message>(*value, absl::StrCat(cf, "/", key));
  if (!m.ok()) return m.status();
  return std::optional<Message>(*std::move(m));
}

// ScanAll parses every record of `cf` and passes it to `fn`.
template <typename Message>
absl::Status ScanAll(store::Reader* store, absl::string_view cf,
                     const std::function<bool(const Message&)>& fn) {
  absl::Status parse_error;
  absl::Status s =
      store->Scan(cf, "", [&](absl::string_view key, absl::string_view value) {
        absl::StatusOr<Message> m =
            Parse<Message>(value, absl::StrCat(cf, "/", key));
        if (!m.ok()) {
          parse_error = m.status();
          return false;
        }
        return fn(*m);
      });
  if (!s.ok()) return s;
  return parse_error;
}

// CollectIf returns every record of `cf` that `keep` accepts, in key order.
template <typename Message>
absl::StatusOr<std::vector<Message>> CollectIf(
    store::Reader* store, absl::string_view cf,
    const std::function<bool(const Message&)>& keep) {
  std::vector<Message> out;
  absl::Status s = ScanAll<Message>(store, cf, [&](const Message& m) {
    if (keep(m)) out.push_back(m);
    return true;
  });
  if (!s.ok()) return s;
  return out;
}

// ---- Access control --------------------------------------------------------
// Internal callers (the shard credential) get least privilege: see catalog.h.

absl::Status ShardDenied(absl::string_view what) {
  return absl::PermissionDeniedError(absl::StrFormat(
      "%s is not allowed with the shard credential (urn:sphere:scope:shard); "
      "shards may only watch the catalog, register themselves, read the "
      "shard map, tenants and devices, and revoke devices automatically. Use "
      "an operator credential",
      what));
}

// NotForShards: tenant and platform operators only.
absl::Status NotForShards(const Caller& caller, absl::string_view what) {
  if (caller.is_internal()) return ShardDenied(what);
  return absl::OkStatus();
}

// PlatformOnly: platform operators only.
absl::Status PlatformOnly(const Caller& caller, absl::string_view what) {
  if (caller.kind == Caller::Kind::kPlatformOperator) return absl::OkStatus();
  if (caller.is_internal()) return ShardDenied(what);
  return absl::PermissionDeniedError(absl::StrFormat(
      "%s needs a platform-operator credential; tenant operator credentials "
      "cannot do it",
      what));
}

// PlatformOrShard: platform operators and internal callers (shards).
absl::Status PlatformOrShard(const Caller& caller, absl::string_view what) {
  if (caller.is_platform()) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrFormat(
      "%s needs a platform-operator credential; tenant operator credentials "
      "cannot do it",
      what));
}

// ReadShardMap reads the shard map from `reader` (the store or a snapshot).
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
  absl::Status s = ScanAll<v1::Shard>(reader, kShards, [&](const auto& shard) {
    *map.add_shards() = shard;
    return true;
  });
  if (!s.ok()) return s;
  return map;
}

v1::DeviceGroup DefaultGroup(const v1::Product& product, absl::string_view name,
                             absl::string_view description, v1::OsFeed feed,
                             v1::AppUpdatePolicy policy) {
  v1::DeviceGroup g;
  g.set_id(NewId());
  g.set_tenant_id(product.tenant_id());
  g.set_product_id(product.id());
  g.set_name(std::string(name));
  g.set_description(std::string(description));
  g.set_os_feed(feed);
  g.set_app_update_policy(policy);
  return g;
}

}  // namespace

// ---- Key wrapping and device ids -------------------------------------------

absl::StatusOr<std::string> WrapTenantCaKey(absl::string_view master_key,
                                            absl::string_view tenant_id,
                                            const crypto::EcPrivateKey& key) {
  if (master_key.size() != 32) {
    return absl::FailedPreconditionError(
        "master key must be 32 bytes; check the cluster's pki/master.key");
  }
  std::string nonce = crypto::RandomBytes(12);
  absl::StatusOr<std::string> sealed =
      crypto::AesGcmSeal(master_key, nonce, key.scalar(),
                         absl::StrCat("sphere-tenant-ca:", tenant_id));
  if (!sealed.ok()) return sealed.status();
  return absl::StrCat(nonce, *sealed);
}

absl::StatusOr<crypto::EcPrivateKey> UnwrapTenantCaKey(
    absl::string_view master_key, absl::string_view tenant_id,
    absl::string_view wrapped) {
  if (wrapped.size() < 12 + 16) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "wrapped CA key of tenant \"%s\" is truncated", tenant_id));
  }
  absl::StatusOr<std::string> scalar =
      crypto::AesGcmOpen(master_key, wrapped.substr(0, 12), wrapped.substr(12),
                         absl::StrCat("sphere-tenant-ca:", tenant_id));
  if (!scalar.ok()) {
    return absl::UnauthenticatedError(absl::StrFormat(
        "cannot unwrap the CA key of tenant \"%s\": %s (wrong master key?)",
        tenant_id, scalar.status().message()));
  }
  return crypto::EcPrivateKey::FromScalar(*scalar);
}

bool IsValidDevicePublicKey(absl::string_view public_key) {
  return public_key.size() == 65 && public_key[0] == 0x04;
}

std::string DeviceIdForKey(absl::string_view public_key) {
  return crypto::HexEncode(crypto::Sha256(public_key));
}

// ---- Transactions --------------------------------------------------------

// Txn collects the records and change-log events of one mutation.
class Catalog::Txn {
 public:
  explicit Txn(int64_t current_revision) : next_(current_revision + 1) {}

  // Put stages a record; one larger than limits::kMaxRecordBytes fails the
  // whole transaction at Commit (nothing is written).
  void Put(absl::string_view cf, absl::string_view key,
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
  void PutRaw(absl::string_view cf, absl::string_view key,
              absl::string_view value) {
    batch_.Put(cf, key, value);
  }
  void Delete(absl::string_view cf, absl::string_view key) {
    batch_.Delete(cf, key);
  }
  // RequireAbsent makes the commit fail (Aborted) if the key exists by then.
  void RequireAbsent(absl::string_view cf, absl::string_view key) {
    compares_.push_back({std::string(cf), std::string(key), 0});
  }
  // Emit appends an event with the next revision; the pointer stays valid.
  v1::WatchEvent* Emit() {
    events_.emplace_back();
    events_.back().set_revision(next_++);
    return &events_.back();
  }
  int64_t next_revision() const { return next_; }

 private:
  friend class Catalog;
  store::WriteBatch batch_;
  std::vector<RevisionLog::Compare> compares_;
  std::deque<v1::WatchEvent> events_;
  int64_t next_;
  absl::Status error_;
};

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

absl::Status Catalog::CatchUpLocked() {
  absl::StatusOr<RevisionLog::KeyInfo> info = store_->Stat(kMeta, kMetaRevision);
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
  return {kTenants,       kProducts, kGroups,      kDevices,
          kTenantDevices, kImages,   kDeployments, kOsReleases,
          kShards,        kMeta,     kLog};
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

// ---- Lookups
// -----------------------------------------------------------------

absl::StatusOr<v1::Tenant> Catalog::FindTenant(absl::string_view id_or_name) {
  if (auto s = limits::ValidateReference("tenant", id_or_name); !s.ok()) {
    return s;
  }
  auto by_id = GetRecord<v1::Tenant>(store_, kTenants, id_or_name);
  if (!by_id.ok()) return by_id.status();
  if (by_id->has_value()) return **by_id;
  std::optional<v1::Tenant> found;
  absl::Status s = ScanAll<v1::Tenant>(store_, kTenants, [&](const auto& t) {
    if (absl::EqualsIgnoreCase(t.name(), id_or_name)) found = t;
    return !found.has_value();
  });
  if (!s.ok()) return s;
  if (!found) {
    return absl::NotFoundError(absl::StrFormat(
        "tenant \"%s\" not found; list tenants with 'spherectl tenant list'",
        id_or_name));
  }
  return *found;
}

absl::StatusOr<v1::Tenant> Catalog::ResolveTenant(const Caller& caller,
                                                  absl::string_view tenant) {
  if (auto s = limits::ValidateReference("tenant", tenant); !s.ok()) return s;
  if (caller.is_tenant()) {
    auto own = GetRecord<v1::Tenant>(store_, kTenants, caller.tenant_id);
    if (!own.ok()) return own.status();
    if (!own->has_value()) {
      return absl::UnauthenticatedError(absl::StrFormat(
          "your credential names tenant id \"%s\", which does not exist; ask "
          "a platform operator for a new credential",
          caller.tenant_id));
    }
    const v1::Tenant& t = **own;
    if (tenant.empty() || tenant == t.id() ||
        absl::EqualsIgnoreCase(tenant, t.name())) {
      return t;
    }
    return absl::PermissionDeniedError(absl::StrFormat(
        "tenant \"%s\": your credential is scoped to tenant \"%s\" and cannot "
        "access other tenants",
        limits::EscapedPrefix(tenant), t.name()));
  }
  if (tenant.empty()) {
    return absl::InvalidArgumentError(
        "a tenant is required for platform operators; pass --tenant NAME");
  }
  return FindTenant(tenant);
}

absl::StatusOr<v1::Product> Catalog::FindProduct(const v1::Tenant& tenant,
                                                 absl::string_view id_or_name) {
  if (id_or_name.empty()) {
    return absl::InvalidArgumentError(
        "a product is required; pass --product NAME (list them with "
        "'spherectl product list')");
  }
  if (auto s = limits::ValidateReference("product", id_or_name); !s.ok()) {
    return s;
  }
  auto by_id = GetRecord<v1::Product>(store_, kProducts, id_or_name);
  if (!by_id.ok()) return by_id.status();
  // Another tenant's product answers exactly like a missing one.
  if (by_id->has_value() && (*by_id)->tenant_id() == tenant.id()) {
    return **by_id;
  }
  std::optional<v1::Product> found;
  absl::Status s = ScanAll<v1::Product>(store_, kProducts, [&](const auto& p) {
    if (p.tenant_id() == tenant.id() &&
        absl::EqualsIgnoreCase(p.name(), id_or_name)) {
      found = p;
    }
    return !found.has_value();
  });
  if (!s.ok()) return s;
  if (!found) {
    return absl::NotFoundError(absl::StrFormat(
        "product \"%s\" not found in tenant \"%s\"; list products with "
        "'spherectl product list'",
        id_or_name, tenant.name()));
  }
  return *found;
}

absl::StatusOr<v1::DeviceGroup> Catalog::FindGroup(const v1::Tenant& tenant,
                                                   absl::string_view group) {
  if (group.empty()) {
    return absl::InvalidArgumentError(
        "a device group is required; pass --device-group ID or "
        "PRODUCT/GROUP (list them with 'spherectl device-group list')");
  }
  if (auto s = limits::ValidateReference("device group", group); !s.ok()) {
    return s;
  }
  auto by_id = GetRecord<v1::DeviceGroup>(store_, kGroups, group);
  if (!by_id.ok()) return by_id.status();
  // Another tenant's group answers exactly like a missing one.
  if (by_id->has_value() && (*by_id)->tenant_id() == tenant.id()) {
    return **by_id;
  }
  std::vector<std::string> parts =
      absl::StrSplit(group, absl::MaxSplits('/', 1));
  if (parts.size() == 2) {
    absl::StatusOr<v1::Product> product = FindProduct(tenant, parts[0]);
    if (absl::IsNotFound(product.status())) {
      return absl::NotFoundError(absl::StrFormat(
          "device group \"%s\" not found in tenant \"%s\"; name it by id or "
          "as PRODUCT/GROUP (list them with 'spherectl device-group list "
          "--product NAME')",
          group, tenant.name()));
    }
    if (!product.ok()) return product.status();
    std::optional<v1::DeviceGroup> found;
    absl::Status s =
        ScanAll<v1::DeviceGroup>(store_, kGroups, [&](const auto& g) {
          if (g.product_id() == product->id() &&
              absl::EqualsIgnoreCase(g.name(), parts[1])) {
            found = g;
          }
          return !found.has_value();
        });
    if (!s.ok()) return s;
    if (found) return *found;
  }
  return absl::NotFoundError(absl::StrFormat(
      "device group \"%s\" not found in tenant \"%s\"; name it by id or as "
      "PRODUCT/GROUP (list them with 'spherectl device-group list --product "
      "NAME')",
      group, tenant.name()));
}

absl::StatusOr<v1::Device> Catalog::LoadDevice(absl::string_view device_id) {
  if (auto s = limits::ValidateDeviceId("device id", device_id); !s.ok()) {
    return s;
  }
  auto d = GetRecord<v1::Device>(store_, kDevices, device_id);
  if (!d.ok()) return d.status();
  if (!d->has_value()) {
    return absl::NotFoundError(absl::StrFormat(
        "device \"%s\" is not in the factory registry; check the device id",
        device_id));
  }
  return **d;
}

absl::Status Catalog::DeviceNotFound(const v1::Tenant& tenant,
                                     absl::string_view device_id) {
  return absl::NotFoundError(absl::StrFormat(
      "device \"%s\" not found in tenant \"%s\"; check the id with "
      "'spherectl device list', or claim a new device with 'spherectl device "
      "claim --device ID'",
      device_id, tenant.name()));
}

absl::StatusOr<v1::Device> Catalog::FindOwnedDevice(
    const Caller& caller, const v1::Tenant& tenant,
    absl::string_view device_id) {
  absl::StatusOr<v1::Device> d = LoadDevice(device_id);
  if (d.ok() && d->tenant_id() == tenant.id()) return d;
  if (!d.ok() && !absl::IsNotFound(d.status())) return d;
  // Missing, unclaimed and another tenant's devices answer identically: an
  // operator learns nothing about devices it may not see.
  return DeviceNotFound(tenant, device_id);
}

// ---- Tenants
// -------------------------------------------------------------------

absl::StatusOr<v1::Tenant> Catalog::CreateTenant(const Caller& caller,
                                                 absl::string_view name) {
  if (auto s = PlatformOnly(caller, "creating a tenant"); !s.ok()) return s;
  if (auto s = ValidateName("tenant", name); !s.ok()) return s;

  absl::MutexLock lock(&mu_);
  std::optional<v1::Tenant> existing;
  absl::Status s = ScanAll<v1::Tenant>(store_, kTenants, [&](const auto& t) {
    if (absl::EqualsIgnoreCase(t.name(), name)) existing = t;
    return !existing.has_value();
  });
  if (!s.ok()) return s;
  if (existing) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "tenant \"%s\" already exists (id %s); tenant names are unique "
        "ignoring case",
        existing->name(), existing->id()));
  }

  v1::Tenant tenant;
  tenant.set_id(NewId());
  tenant.set_name(std::string(name));
  crypto::EcPrivateKey ca_key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = absl::StrCat("Sphere Tenant CA ", name);
  spec.organization = std::string(name);
  spec.subject_public_key = ca_key.PublicKey();
  spec.not_before = clock_->Now() - absl::Hours(1);
  spec.not_after = clock_->Now() + options_.tenant_ca_validity;
  spec.usage = crypto::KeyUsage::kCa;
  spec.path_len = 0;
  absl::StatusOr<std::string> cert =
      crypto::IssueCertificate(spec, options_.root_key, options_.root_cert_pem);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> wrapped =
      WrapTenantCaKey(options_.master_key, tenant.id(), ca_key);
  if (!wrapped.ok()) return wrapped.status();
  tenant.set_ca_certificate_pem(*cert);
  tenant.set_wrapped_ca_key(*wrapped);

  Txn txn(revision_);
  v1::WatchEvent* e = txn.Emit();
  tenant.set_create_revision(e->revision());
  *e->mutable_tenant() = tenant;
  txn.Put(kTenants, tenant.id(), tenant);
  if (auto s = Commit(txn); !s.ok()) return s;
  tenant.clear_wrapped_ca_key();
  return tenant;
}

absl::StatusOr<std::vector<v1::Tenant>> Catalog::ListTenants(
    const Caller& caller) {
  if (auto s = NotForShards(caller, "listing tenants"); !s.ok()) return s;
  std::vector<v1::Tenant> out;
  absl::Status s = ScanAll<v1::Tenant>(store_, kTenants, [&](const auto& t) {
    if (caller.is_platform() || t.id() == caller.tenant_id) {
      out.push_back(t);
      out.back().clear_wrapped_ca_key();  // operators never see CA keys
    }
    return true;
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<v1::Tenant> Catalog::GetTenant(const Caller& caller,
                                              absl::string_view tenant) {
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (t.ok() && caller.kind != Caller::Kind::kInternal) {
    t->clear_wrapped_ca_key();
  }
  return t;
}

absl::StatusOr<std::string> Catalog::IssueOperatorCredential(
    const Caller& caller, absl::string_view tenant,
    absl::string_view operator_name, absl::string_view public_key) {
  if (auto s = PlatformOnly(caller, "issuing operator credentials"); !s.ok()) {
    return s;
  }
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  if (auto s = ValidateName("operator", operator_name); !s.ok()) return s;
  if (!IsValidDevicePublicKey(public_key)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "operator public key must be a 65-byte uncompressed P-256 point "
        "(0x04||X||Y); got %d bytes",
        public_key.size()));
  }
  crypto::CertificateSpec spec;
  spec.common_name = absl::StrCat("operator ", operator_name);
  spec.organization = t->name();
  spec.subject_public_key = std::string(public_key);
  spec.not_before = clock_->Now() - absl::Hours(1);
  spec.not_after = clock_->Now() + options_.operator_credential_validity;
  spec.usage = crypto::KeyUsage::kClientAuth;
  spec.claims.tenant_id = t->id();
  return crypto::IssueCertificate(spec, options_.root_key,
                                  options_.root_cert_pem);
}

absl::StatusOr<v1::CaCertificate> Catalog::GetCaCertificate(
    const Caller& caller, absl::string_view tenant) {
  if (auto s = NotForShards(caller, "reading a tenant's CA certificates");
      !s.ok())
    return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  v1::CaCertificate out;
  out.set_tenant_ca_pem(t->ca_certificate_pem());
  out.set_root_ca_pem(options_.root_cert_pem);
  return out;
}

// ---- Products and device groups -------------------------------------------

absl::StatusOr<v1::Product> Catalog::CreateProduct(
    const Caller& caller, absl::string_view tenant, absl::string_view name,
    absl::string_view description) {
  if (auto s = NotForShards(caller, "creating a product"); !s.ok()) return s;
  if (auto s = ValidateName("product", name); !s.ok()) return s;
  if (auto s = ValidateDescription(description); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  std::optional<v1::Product> existing;
  absl::Status s = ScanAll<v1::Product>(store_, kProducts, [&](const auto& p) {
    if (p.tenant_id() == t->id() && absl::EqualsIgnoreCase(p.name(), name)) {
      existing = p;
    }
    return !existing.has_value();
  });
  if (!s.ok()) return s;
  if (existing) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "product \"%s\" already exists in tenant \"%s\" (id %s)",
        existing->name(), t->name(), existing->id()));
  }
  v1::Product product;
  product.set_id(NewId());
  product.set_tenant_id(t->id());
  product.set_name(std::string(name));
  product.set_description(std::string(description));

  Txn txn(revision_);
  txn.Put(kProducts, product.id(), product);
  *txn.Emit()->mutable_product() = product;
  const v1::DeviceGroup defaults[] = {
      DefaultGroup(product, "Development", "Default development group",
                   v1::RETAIL, v1::NO_3RD_PARTY_APP_UPDATES),
      DefaultGroup(product, "Field Test", "Default test group", v1::RETAIL,
                   v1::UPDATE_ALL),
      DefaultGroup(product, "Field Test OS Evaluation",
                   "Default group that receives the Retail Evaluation OS "
                   "for field testing",
                   v1::RETAIL_EVAL, v1::UPDATE_ALL),
      DefaultGroup(product, "Production", "Default production group",
                   v1::RETAIL, v1::UPDATE_ALL),
      DefaultGroup(product, "Production OS Evaluation",
                   "Default group that receives the Retail Evaluation OS "
                   "for production devices",
                   v1::RETAIL_EVAL, v1::UPDATE_ALL),
  };
  for (const v1::DeviceGroup& g : defaults) {
    txn.Put(kGroups, g.id(), g);
    *txn.Emit()->mutable_device_group() = g;
  }
  if (auto s = Commit(txn); !s.ok()) return s;
  return product;
}

absl::StatusOr<std::vector<v1::Product>> Catalog::ListProducts(
    const Caller& caller, absl::string_view tenant) {
  if (auto s = NotForShards(caller, "listing products"); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  return CollectIf<v1::Product>(store_, kProducts, [&](const v1::Product& p) {
    return p.tenant_id() == t->id();
  });
}

absl::StatusOr<v1::Product> Catalog::GetProduct(const Caller& caller,
                                                absl::string_view tenant,
                                                absl::string_view product) {
  if (auto s = NotForShards(caller, "reading a product"); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  return FindProduct(*t, product);
}

absl::StatusOr<v1::DeviceGroup> Catalog::CreateDeviceGroup(
    const Caller& caller, const v1::CreateDeviceGroupRequest& request) {
  if (auto s = NotForShards(caller, "creating a device group"); !s.ok())
    return s;
  if (auto s = ValidateName("device group", request.name()); !s.ok()) return s;
  if (auto s = ValidateDescription(request.description()); !s.ok()) return s;
  if (!v1::OsFeed_IsValid(request.os_feed()) ||
      !v1::AppUpdatePolicy_IsValid(request.app_update_policy())) {
    return absl::InvalidArgumentError(
        "unknown OS feed or app update policy; use Retail|RetailEval and "
        "UpdateAll|No3rdPartyAppUpdates|NoUpdates");
  }
  if (!(request.rollout_failure_threshold() >= 0 &&
        request.rollout_failure_threshold() <= 1)) {
    return absl::InvalidArgumentError(
        "a rollout failure threshold is a fraction in [0, 1] (0 = never "
        "halt)");
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Product> product = FindProduct(*t, request.product());
  if (!product.ok()) return product.status();
  std::optional<v1::DeviceGroup> existing;
  absl::Status s =
      ScanAll<v1::DeviceGroup>(store_, kGroups, [&](const auto& g) {
        if (g.product_id() == product->id() &&
            absl::EqualsIgnoreCase(g.name(), request.name())) {
          existing = g;
        }
        return !existing.has_value();
      });
  if (!s.ok()) return s;
  if (existing) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "device group \"%s\" already exists in product \"%s\" (id %s)",
        existing->name(), product->name(), existing->id()));
  }
  v1::DeviceGroup g = DefaultGroup(
      *product, request.name(), request.description(),
      request.os_feed() == v1::OS_FEED_UNSPECIFIED ? v1::RETAIL
                                                   : request.os_feed(),
      request.app_update_policy() == v1::APP_UPDATE_POLICY_UNSPECIFIED
          ? v1::UPDATE_ALL
          : request.app_update_policy());
  g.set_rollout_failure_threshold(request.rollout_failure_threshold());
  Txn txn(revision_);
  txn.Put(kGroups, g.id(), g);
  *txn.Emit()->mutable_device_group() = g;
  if (auto s = Commit(txn); !s.ok()) return s;
  return g;
}

absl::StatusOr<std::vector<v1::DeviceGroup>> Catalog::ListDeviceGroups(
    const Caller& caller, absl::string_view tenant, absl::string_view product) {
  if (auto s = NotForShards(caller, "listing device groups"); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  std::string product_id;
  if (!product.empty()) {
    absl::StatusOr<v1::Product> p = FindProduct(*t, product);
    if (!p.ok()) return p.status();
    product_id = p->id();
  }
  return CollectIf<v1::DeviceGroup>(
      store_, kGroups, [&](const v1::DeviceGroup& g) {
        return g.tenant_id() == t->id() &&
               (product_id.empty() || g.product_id() == product_id);
      });
}

absl::StatusOr<v1::DeviceGroup> Catalog::GetDeviceGroup(
    const Caller& caller, absl::string_view tenant, absl::string_view group) {
  if (auto s = NotForShards(caller, "reading a device group"); !s.ok())
    return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  return FindGroup(*t, group);
}

absl::StatusOr<v1::DeviceGroup> Catalog::UpdateDeviceGroup(
    const Caller& caller, const v1::UpdateDeviceGroupRequest& request) {
  if (auto s = NotForShards(caller, "updating a device group"); !s.ok())
    return s;
  if (!v1::OsFeed_IsValid(request.os_feed()) ||
      !v1::AppUpdatePolicy_IsValid(request.app_update_policy())) {
    return absl::InvalidArgumentError(
        "unknown OS feed or app update policy; use Retail|RetailEval and "
        "UpdateAll|No3rdPartyAppUpdates|NoUpdates");
  }
  if (auto s = ValidateDescription(request.description()); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, request.device_group_id());
  if (!g.ok()) return g.status();
  v1::DeviceGroup updated = *g;
  if (request.os_feed() != v1::OS_FEED_UNSPECIFIED) {
    updated.set_os_feed(request.os_feed());
  }
  if (request.app_update_policy() != v1::APP_UPDATE_POLICY_UNSPECIFIED) {
    updated.set_app_update_policy(request.app_update_policy());
  }
  if (!request.description().empty()) {
    updated.set_description(request.description());
  }
  if (updated.SerializeAsString() == g->SerializeAsString()) return updated;
  Txn txn(revision_);
  txn.Put(kGroups, updated.id(), updated);
  *txn.Emit()->mutable_device_group() = updated;
  if (auto s = Commit(txn); !s.ok()) return s;
  return updated;
}

// ---- Factory registry and devices ------------------------------------------

absl::StatusOr<ImportResult> Catalog::ImportDevices(
    const Caller& caller, const std::vector<v1::FactoryDevice>& devices) {
  if (auto s = PlatformOnly(caller, "importing factory devices"); !s.ok()) {
    return s;
  }
  if (auto s =
          limits::ValidateCount("ImportDevices message devices", devices.size(),
                                limits::kMaxDevicesPerImport);
      !s.ok()) {
    return s;
  }
  std::vector<std::string> ids;
  ids.reserve(devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    const v1::FactoryDevice& d = devices[i];
    if (!IsValidDevicePublicKey(d.public_key())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "factory device #%d: public key must be a 65-byte uncompressed "
          "P-256 point (0x04||X||Y), got %d bytes%s; nothing was imported",
          i, d.public_key().size(),
          d.public_key().empty()
              ? ""
              : absl::StrFormat(" starting 0x%02x", static_cast<unsigned char>(
                                                        d.public_key()[0]))));
    }
    if (d.device_type().size() > limits::kMaxDeviceTypeLength) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "factory device #%d: device type is longer than %d characters; "
          "nothing was imported",
          i, limits::kMaxDeviceTypeLength));
    }
    ids.push_back(DeviceIdForKey(d.public_key()));
  }

  ImportResult result;
  absl::MutexLock lock(&mu_);
  Txn txn(revision_);
  absl::flat_hash_set<absl::string_view> seen;
  seen.reserve(ids.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    if (!seen.insert(ids[i]).second) {
      ++result.already_known;
      continue;
    }
    if (known_device_prefixes_.contains(DevicePrefix(ids[i]))) {
      absl::StatusOr<std::string> existing = store_->Get(kDevices, ids[i]);
      if (existing.ok()) {
        ++result.already_known;
        continue;
      }
      if (!absl::IsNotFound(existing.status())) return existing.status();
    }
    v1::Device d;
    d.set_id(ids[i]);
    d.set_public_key(devices[i].public_key());
    d.set_device_type(devices[i].device_type());
    d.set_state(v1::UNCLAIMED);
    txn.Put(kDevices, d.id(), d);
    // Another replica may have imported it a moment ago.
    if (store_->shared()) txn.RequireAbsent(kDevices, d.id());
    ++result.imported;
  }
  if (result.imported > 0) {
    txn.Emit()->set_factory_devices_imported(result.imported);
    if (auto s = Commit(txn); !s.ok()) return s;
    for (absl::string_view id : seen) {
      known_device_prefixes_.insert(DevicePrefix(id));
    }
  }
  return result;
}

absl::StatusOr<v1::Device> Catalog::ClaimDevice(const Caller& caller,
                                                absl::string_view tenant,
                                                absl::string_view device_id) {
  if (auto s = NotForShards(caller, "claiming a device"); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = LoadDevice(device_id);
  // A device another tenant claimed answers exactly like one the factory
  // never registered: claiming must not probe other tenants' fleets.
  const auto claim_not_found = [&] {
    return absl::NotFoundError(absl::StrFormat(
        "device \"%s\" is not in the factory registry or is not available "
        "for claiming; check the device id (a claimed device's owner can "
        "transfer it with 'spherectl device transfer request')",
        device_id));
  };
  if (absl::IsNotFound(d.status())) return claim_not_found();
  if (!d.ok()) return d.status();
  if (d->state() != v1::UNCLAIMED) {
    if (d->tenant_id() == t->id()) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "device \"%s\" is already claimed by tenant \"%s\"; a device can be "
          "claimed only once",
          device_id, t->name()));
    }
    return claim_not_found();
  }
  d->set_tenant_id(t->id());
  d->set_state(v1::CLAIMED);
  Txn txn(revision_);
  txn.Put(kDevices, d->id(), *d);
  txn.PutRaw(kTenantDevices, absl::StrCat(t->id(), "/", d->id()), "");
  *txn.Emit()->mutable_device() = *d;
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::ListDevicesResponse> Catalog::ListDevices(
    const Caller& caller, const v1::ListDevicesRequest& request) {
  if (auto s = NotForShards(caller, "listing devices"); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  std::string group_id;
  if (!request.device_group_id().empty()) {
    absl::StatusOr<v1::DeviceGroup> g =
        FindGroup(*t, request.device_group_id());
    if (!g.ok()) return g.status();
    group_id = g->id();
  }
  size_t page_size = request.page_size() == 0 ? 100 : request.page_size();
  if (page_size > 1000) page_size = 1000;
  const std::string prefix = absl::StrCat(t->id(), "/");
  std::string start;
  if (!request.page_token().empty()) {
    if (!IsHexId(request.page_token(), 64)) {
      return absl::InvalidArgumentError(
          "page token is malformed; pass back next_page_token unchanged");
    }
    start = prefix + request.page_token();
  }
  v1::ListDevicesResponse out;
  absl::Status error;
  absl::Status s = store_->Scan(
      kTenantDevices, prefix,
      [&](absl::string_view key, absl::string_view) {
        if (key == start) return true;
        absl::StatusOr<v1::Device> d = LoadDevice(key.substr(prefix.size()));
        if (!d.ok()) {
          error = d.status();
          return false;
        }
        if (!group_id.empty() && d->device_group_id() != group_id) return true;
        *out.add_devices() = *std::move(d);
        return static_cast<size_t>(out.devices_size()) <= page_size;
      },
      start);
  if (!s.ok()) return s;
  if (!error.ok()) return error;
  if (static_cast<size_t>(out.devices_size()) > page_size) {
    out.mutable_devices()->RemoveLast();
    out.set_next_page_token(out.devices(out.devices_size() - 1).id());
  }
  return out;
}

absl::StatusOr<v1::Device> Catalog::GetDevice(const Caller& caller,
                                              absl::string_view tenant,
                                              absl::string_view device_id) {
  if (caller.is_platform() && tenant.empty()) return LoadDevice(device_id);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = LoadDevice(device_id);
  if (d.ok() && d->state() == v1::TRANSFER_PENDING &&
      d->pending_tenant_id() == t->id()) {
    return d;  // the transfer's target may look before accepting
  }
  return FindOwnedDevice(caller, *t, device_id);
}

absl::StatusOr<v1::Device> Catalog::AssignDevice(const Caller& caller,
                                                 absl::string_view tenant,
                                                 absl::string_view device_id,
                                                 absl::string_view group) {
  if (auto s = NotForShards(caller, "assigning a device to a device group");
      !s.ok())
    return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = FindOwnedDevice(caller, *t, device_id);
  if (!d.ok()) return d.status();
  if (d->state() != v1::CLAIMED) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device \"%s\" is %s; only claimed devices can be assigned to a "
        "device group",
        device_id, v1::DeviceState_Name(d->state())));
  }
  absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, group);
  if (!g.ok()) return g.status();
  if (!d->product_id().empty() && d->product_id() != g->product_id()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device group \"%s\" belongs to another product than device \"%s\" "
        "(product id %s); pick a group of that product",
        g->name(), device_id, d->product_id()));
  }
  if (d->device_group_id() == g->id()) return d;
  d->set_product_id(g->product_id());
  d->set_device_group_id(g->id());
  Txn txn(revision_);
  txn.Put(kDevices, d->id(), *d);
  *txn.Emit()->mutable_device() = *d;
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::Device> Catalog::RevokeDevice(const Caller& caller,
                                                 absl::string_view tenant,
                                                 absl::string_view device_id,
                                                 absl::string_view reason) {
  if (auto s = ValidateDescription(reason); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = FindOwnedDevice(caller, *t, device_id);
  if (!d.ok()) return d.status();
  if (d->state() == v1::REVOKED) return d;  // idempotent
  d->set_state(v1::REVOKED);
  d->clear_pending_tenant_id();
  std::string why(reason);
  if (caller.kind == Caller::Kind::kInternal &&
      !absl::StartsWith(why, "automatic: ")) {
    why = absl::StrCat("automatic: ", why);
  }
  d->set_revocation_reason(why);
  Txn txn(revision_);
  txn.Put(kDevices, d->id(), *d);
  *txn.Emit()->mutable_device() = *d;
  txn.Emit()->set_revoked_device_id(d->id());
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::Device> Catalog::RequestDeviceTransfer(
    const Caller& caller, absl::string_view tenant, absl::string_view device_id,
    absl::string_view to_tenant) {
  if (auto s = NotForShards(caller, "requesting a device transfer"); !s.ok())
    return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = FindOwnedDevice(caller, *t, device_id);
  if (!d.ok()) return d.status();
  if (d->state() != v1::CLAIMED) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "device \"%s\" is %s; only claimed devices can be transferred",
        device_id, v1::DeviceState_Name(d->state())));
  }
  if (to_tenant.empty()) {
    return absl::InvalidArgumentError(
        "the target tenant is required; pass --to-tenant NAME");
  }
  absl::StatusOr<v1::Tenant> to = FindTenant(to_tenant);
  if (!to.ok()) return to.status();
  if (to->id() == t->id()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("device \"%s\" already belongs to tenant \"%s\"",
                        device_id, t->name()));
  }
  d->set_state(v1::TRANSFER_PENDING);
  d->set_pending_tenant_id(to->id());
  Txn txn(revision_);
  txn.Put(kDevices, d->id(), *d);
  *txn.Emit()->mutable_device() = *d;
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::Device> Catalog::AcceptDeviceTransfer(
    const Caller& caller, absl::string_view tenant,
    absl::string_view device_id) {
  if (auto s = NotForShards(caller, "accepting a device transfer"); !s.ok())
    return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Device> d = LoadDevice(device_id);
  if (!d.ok() && !absl::IsNotFound(d.status())) return d.status();
  // A missing device answers like one with no transfer pending.
  if (!d.ok() || d->state() != v1::TRANSFER_PENDING ||
      d->pending_tenant_id() != t->id()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "no transfer of device \"%s\" to tenant \"%s\" is pending; its "
        "current owner must first run 'spherectl device transfer request'",
        device_id, t->name()));
  }
  const std::string old_tenant = d->tenant_id();
  d->set_tenant_id(t->id());
  d->clear_pending_tenant_id();
  d->clear_product_id();
  d->clear_device_group_id();
  d->set_state(v1::CLAIMED);
  d->set_ownership_epoch(d->ownership_epoch() + 1);
  Txn txn(revision_);
  txn.Put(kDevices, d->id(), *d);
  txn.Delete(kTenantDevices, absl::StrCat(old_tenant, "/", d->id()));
  txn.PutRaw(kTenantDevices, absl::StrCat(t->id(), "/", d->id()), "");
  txn.Emit()->set_revoked_device_id(d->id());
  *txn.Emit()->mutable_device() = *d;
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

// ---- Images, deployments, OS releases
// ----------------------------------------

absl::Status Catalog::CheckImageQuotaLocked(const v1::Tenant& tenant,
                                            const v1::Image& image) {
  size_t count = 0;
  uint64_t bytes = 0;
  bool already_held = false;
  absl::Status s = ScanAll<v1::Image>(store_, kImages, [&](const v1::Image& i) {
    if (i.tenant_id() != tenant.id()) return true;
    ++count;
    bytes += i.size();
    if (i.id() == image.id()) already_held = true;
    return true;
  });
  if (!s.ok()) return s;
  if (already_held) return absl::OkStatus();  // a re-upload costs nothing
  if (count + 1 > options_.max_images_per_tenant) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "tenant \"%s\" already has %d images; the quota is %d images. Nothing "
        "was stored; ask a platform operator to raise the quota",
        tenant.name(), count, options_.max_images_per_tenant));
  }
  if (bytes + image.size() > options_.max_image_bytes_per_tenant) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "tenant \"%s\" images would total %d bytes; the quota is %d bytes. "
        "Nothing was stored; ask a platform operator to raise the quota",
        tenant.name(), bytes + image.size(),
        options_.max_image_bytes_per_tenant));
  }
  return absl::OkStatus();
}

absl::Status Catalog::CheckImageQuota(const Caller& caller,
                                      absl::string_view tenant,
                                      uint64_t package_bytes) {
  if (auto s = limits::ValidateSize("image package", package_bytes,
                                    limits::kMaxImagePackageBytes);
      !s.ok()) {
    return s;
  }
  // Platform OS images (a platform operator naming no tenant) have no quota.
  if (tenant.empty() && !caller.is_tenant()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  v1::Image probe;  // a new image of (at most) this size
  probe.set_size(package_bytes);
  return CheckImageQuotaLocked(*t, probe);
}

absl::StatusOr<v1::Image> Catalog::RecordImage(const Caller& caller,
                                               const v1::Image& image) {
  if (auto s = NotForShards(caller, "recording an image"); !s.ok()) return s;
  if (image.tenant_id().empty()) {
    if (auto s = PlatformOnly(caller, "recording a platform OS image");
        !s.ok()) {
      return s;
    }
  }
  if (!IsHexId(image.id(), 64)) {
    return absl::InvalidArgumentError(
        "image id must be the 64-hex-character SHA-256 of the signed package");
  }
  if (auto s =
          limits::ValidateComponentId("image component", image.component());
      !s.ok()) {
    return s;
  }
  if (image.image_hash().size() != 32 ||
      image.kind() == v1::IMAGE_KIND_UNSPECIFIED ||
      !v1::ImageKind_IsValid(image.kind())) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "image %s needs a component name, a kind and a 32-byte image hash",
        image.id()));
  }
  absl::MutexLock lock(&mu_);
  if (!image.tenant_id().empty()) {
    absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, image.tenant_id());
    if (!t.ok()) return t.status();
    if (t->id() != image.tenant_id()) {
      return absl::InvalidArgumentError(
          "an image record names its owning tenant by id");
    }
    if (auto s = CheckImageQuotaLocked(*t, image); !s.ok()) return s;
  }
  const std::string key = ImageKey(image.tenant_id(), image.id());
  auto existing = GetRecord<v1::Image>(store_, kImages, key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    if ((*existing)->SerializeAsString() == image.SerializeAsString()) {
      return image;  // idempotent re-upload
    }
    return absl::AlreadyExistsError(absl::StrFormat(
        "image %s already exists with different metadata", image.id()));
  }
  Txn txn(revision_);
  txn.Put(kImages, key, image);
  *txn.Emit()->mutable_image() = image;
  if (auto s = Commit(txn); !s.ok()) return s;
  return image;
}

absl::StatusOr<std::vector<v1::Image>> Catalog::ListImages(
    const Caller& caller, absl::string_view tenant) {
  if (auto s = NotForShards(caller, "listing images"); !s.ok()) return s;
  std::string tenant_id;
  if (caller.is_tenant() || !tenant.empty()) {
    absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
    if (!t.ok()) return t.status();
    tenant_id = t->id();
  }
  return CollectIf<v1::Image>(store_, kImages, [&](const v1::Image& i) {
    return tenant_id.empty() || i.tenant_id() == tenant_id;
  });
}

absl::StatusOr<v1::Deployment> Catalog::CreateDeployment(
    const Caller& caller, const v1::CreateDeploymentRequest& request) {
  if (auto s = NotForShards(caller, "creating a deployment"); !s.ok()) return s;
  if (request.image_ids().empty()) {
    return absl::InvalidArgumentError(
        "a deployment needs at least one image id (upload images first)");
  }
  // Limits before any lookup: repeated ids are removed, then capped, and
  // every id must look like one (64 lowercase hex).
  // The raw count is capped first (127k copies of one id are refused, not
  // silently shrunk), then repeats are dropped.
  if (auto s = limits::ValidateCount("deployment image_ids",
                                     request.image_ids_size(),
                                     limits::kMaxImagesPerDeployment);
      !s.ok()) {
    return s;
  }
  const std::vector<std::string> image_ids = Dedupe(request.image_ids());
  for (const std::string& id : image_ids) {
    if (!IsHexId(id, 64)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "deployment image id \"%s\" is not 64 lowercase hex characters "
          "(see 'spherectl image list')",
          limits::EscapedPrefix(id)));
    }
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, request.tenant_id());
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, request.device_group_id());
  if (!g.ok()) return g.status();
  std::set<std::string> components;
  for (const std::string& id : image_ids) {
    // Only the tenant's own images are visible: another tenant's image
    // answers exactly like a missing one.
    auto image = GetRecord<v1::Image>(store_, kImages, ImageKey(t->id(), id));
    if (!image.ok()) return image.status();
    if (!image->has_value()) {
      return absl::NotFoundError(absl::StrFormat(
          "image \"%s\" not found in tenant \"%s\"; list images with "
          "'spherectl image list'",
          id, t->name()));
    }
    if (!components.insert((*image)->component()).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "a deployment carries one image per component; %s appears twice",
          (*image)->component()));
    }
    if (IsOsComponentKind((*image)->kind())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "image \"%s\" is an OS component; OS images reach devices through "
          "their group's OS feed, not through deployments",
          id));
    }
  }
  v1::Deployment dep;
  dep.set_id(NewId());
  dep.set_tenant_id(t->id());
  dep.set_device_group_id(g->id());
  for (const std::string& id : image_ids) dep.add_image_ids(id);
  dep.set_rollout_fraction(options_.new_deployment_rollout_fraction);
  Txn txn(revision_);
  v1::WatchEvent* e = txn.Emit();
  dep.set_create_revision(e->revision());
  *e->mutable_deployment() = dep;
  txn.Put(kDeployments, dep.id(), dep);
  if (auto s = Commit(txn); !s.ok()) return s;
  return dep;
}

absl::StatusOr<std::vector<v1::Deployment>> Catalog::ListDeployments(
    const Caller& caller, absl::string_view tenant, absl::string_view group) {
  if (auto s = NotForShards(caller, "listing deployments"); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  std::string group_id;
  if (!group.empty()) {
    absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, group);
    if (!g.ok()) return g.status();
    group_id = g->id();
  }
  return CollectIf<v1::Deployment>(
      store_, kDeployments, [&](const v1::Deployment& d) {
        return d.tenant_id() == t->id() &&
               (group_id.empty() || d.device_group_id() == group_id);
      });
}

absl::StatusOr<v1::OsRelease> Catalog::ReleaseOs(
    const Caller& caller, const v1::ReleaseOsRequest& request) {
  if (auto s = PlatformOnly(caller, "releasing an OS"); !s.ok()) return s;
  if (request.feed() == v1::OS_FEED_UNSPECIFIED ||
      !v1::OsFeed_IsValid(request.feed())) {
    return absl::InvalidArgumentError(
        "an OS release needs a feed: Retail or RetailEval");
  }
  if (auto s = limits::ValidateVersion("OS release version", request.version());
      !s.ok()) {
    return s;
  }
  if (request.image_ids().empty()) {
    return absl::InvalidArgumentError(
        "an OS release needs at least one OS component image id");
  }
  // Capped before anything else; a repeated image is refused below (one
  // image per component).
  if (auto s = limits::ValidateCount("OS release image_ids",
                                     request.image_ids_size(),
                                     limits::kMaxImagesPerOsRelease);
      !s.ok()) {
    return s;
  }
  const auto& image_ids = request.image_ids();
  for (const std::string& id : image_ids) {
    if (!IsHexId(id, 64)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "OS release image id \"%s\" is not 64 lowercase hex characters",
          limits::EscapedPrefix(id)));
    }
  }
  absl::MutexLock lock(&mu_);
  std::map<std::string, v1::Image> components;  // the new release's images
  for (const std::string& id : image_ids) {
    auto image = GetRecord<v1::Image>(store_, kImages, ImageKey("", id));
    if (!image.ok()) return image.status();
    if (!image->has_value() || !(*image)->tenant_id().empty() ||
        !IsOsComponentKind((*image)->kind())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "image \"%s\" is not a platform OS component image; upload OS "
          "images as a platform operator first",
          id));
    }
    const v1::Image& img = **image;
    if (!components.emplace(img.component(), img).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "an OS release carries one image per component; %s appears twice",
          img.component()));
    }
  }
  const std::string feed_name = v1::OsFeed_Name(request.feed());
  const std::string key = absl::StrCat(feed_name, "/", request.version());
  auto existing = GetRecord<v1::OsRelease>(store_, kOsReleases, key);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "OS %s is already released on feed %s; pick a new version",
        request.version(), feed_name));
  }
  // No rollback through a feed: devices refuse older images (anti-rollback
  // counters), so a release older than what the feed already shipped could
  // never install and would leave the feed's devices UPDATE_REQUIRED for
  // good. Compare with the highest version of each component released on
  // this feed so far (and the release that shipped it).
  std::map<std::string, std::pair<uint32_t, std::string>> highest;
  absl::Status read_error;
  absl::Status scan =
      ScanAll<v1::OsRelease>(store_, kOsReleases, [&](const auto& r) {
        if (r.feed() != request.feed()) return true;
        for (const std::string& id : r.image_ids()) {
          auto image = GetRecord<v1::Image>(store_, kImages, ImageKey("", id));
          if (!image.ok()) {
            read_error = image.status();
            return false;
          }
          if (!image->has_value()) continue;  // released images are kept
          auto& h = highest[(*image)->component()];
          if ((*image)->version() >= h.first) {
            h = {(*image)->version(), r.version()};
          }
        }
        return true;
      });
  if (!scan.ok()) return scan;
  if (!read_error.ok()) return read_error;
  for (const auto& [component, image] : components) {
    auto it = highest.find(component);
    if (it != highest.end() && image.version() < it->second.first) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "OS %s would roll back %s on feed %s from version %d (released in "
          "OS %s) to %d; an OS release must not carry older components than "
          "the feed already shipped",
          request.version(), component, feed_name, it->second.first,
          it->second.second, image.version()));
    }
  }
  v1::OsRelease release;
  release.set_feed(request.feed());
  release.set_version(request.version());
  for (const std::string& id : image_ids) release.add_image_ids(id);
  Txn txn(revision_);
  v1::WatchEvent* e = txn.Emit();
  release.set_create_revision(e->revision());
  *e->mutable_os_release() = release;
  txn.Put(kOsReleases, key, release);
  if (auto s = Commit(txn); !s.ok()) return s;
  return release;
}

// ---- Shard map
// ----------------------------------------------------------------

absl::StatusOr<v1::ShardMap> Catalog::GetShardMap(const Caller& caller) {
  if (auto s = PlatformOrShard(caller, "reading the shard map"); !s.ok()) {
    return s;
  }
  return ReadShardMap(store_, options_.virtual_nodes);
}

absl::StatusOr<v1::ShardMap> Catalog::RegisterShard(const Caller& caller,
                                                    const v1::Shard& shard) {
  if (auto s = PlatformOrShard(caller, "registering a shard"); !s.ok()) {
    return s;
  }
  if (shard.id().empty() || shard.id().size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        "a shard needs an id such as \"shard-0\" (at most 64 characters)");
  }
  for (char c : shard.id()) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "shard id \"%s\" may contain only letters, digits, '-' and '_'",
          limits::EscapedPrefix(shard.id())));
    }
  }
  bool printable = shard.address().size() <= limits::kMaxShardAddressLength;
  for (char c : shard.address()) {
    if (c <= ' ' || c > '~') printable = false;
  }
  if (!printable || shard.address().find(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shard \"%s\": address \"%s\" must be host:port (printable, at most "
        "%d characters)",
        shard.id(), limits::EscapedPrefix(shard.address()),
        limits::kMaxShardAddressLength));
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::ShardMap> map = GetShardMap(caller);
  if (!map.ok()) return map.status();
  bool replaced = false;
  for (v1::Shard& s : *map->mutable_shards()) {
    if (s.id() == shard.id()) {
      if (s.SerializeAsString() == shard.SerializeAsString()) return map;
      s = shard;
      replaced = true;
    }
  }
  if (!replaced) {
    if (auto s = limits::ValidateCount("shard map", map->shards_size() + 1,
                                       limits::kMaxShards);
        !s.ok()) {
      return s;
    }
    *map->add_shards() = shard;
  }
  Txn txn(revision_);
  v1::WatchEvent* e = txn.Emit();
  map->set_revision(e->revision());
  *e->mutable_shard_map() = *map;
  txn.Put(kShards, shard.id(), shard);
  txn.PutRaw(kMeta, kMetaShardMapRevision, absl::StrCat(e->revision()));
  if (auto s = Commit(txn); !s.ok()) return s;
  return map;
}

absl::StatusOr<v1::ShardMap> Catalog::RemoveShard(const Caller& caller,
                                                  absl::string_view shard_id) {
  if (auto s = PlatformOrShard(caller, "removing a shard"); !s.ok()) return s;
  if (shard_id.empty() || shard_id.size() > kMaxNameLength) {
    return absl::InvalidArgumentError("a shard id has 1 to 64 characters");
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::ShardMap> map = GetShardMap(caller);
  if (!map.ok()) return map.status();
  auto* shards = map->mutable_shards();
  auto it = std::find_if(shards->begin(), shards->end(),
                         [&](const v1::Shard& s) { return s.id() == shard_id; });
  if (it == shards->end()) {
    return absl::NotFoundError(absl::StrFormat(
        "shard \"%s\" is not in the shard map", limits::EscapedPrefix(shard_id)));
  }
  shards->erase(it);
  Txn txn(revision_);
  v1::WatchEvent* e = txn.Emit();
  map->set_revision(e->revision());
  *e->mutable_shard_map() = *map;
  txn.Delete(kShards, shard_id);
  txn.PutRaw(kMeta, kMetaShardMapRevision, absl::StrCat(e->revision()));
  if (auto s = Commit(txn); !s.ok()) return s;
  return map;
}

// ---- Change log
// -------------------------------------------------------------------

void Catalog::Notify(const v1::WatchEvent& event) {
  for (auto it = live_watchers_.begin(); it != live_watchers_.end();) {
    if ((*it)->Push(event)) {
      ++it;
    } else {
      it = live_watchers_.erase(it);
    }
  }
}

absl::StatusOr<std::unique_ptr<Catalog::WatchStream>> Catalog::OpenWatch(
    const Caller& caller, int64_t start_revision, WatchOptions options) {
  if (auto s = PlatformOrShard(caller, "watching the catalog"); !s.ok()) {
    return s;
  }
  if (options.live_queue_limit == 0) options.live_queue_limit = 1;
  std::unique_ptr<WatchStream> w(
      new WatchStream(this, caller, std::move(options)));
  // O(1) under the mutex: every store write happens under it, so the store
  // snapshot taken here is exactly the catalog at revision_.
  bool need_snapshot = false;
  {
    absl::MutexLock lock(&mu_);
    absl::MutexLock wlock(&w->mu_);
    need_snapshot = start_revision <= 0 || start_revision < compacted_;
    if (!need_snapshot) {
      w->phase_ = WatchStream::Phase::kReplay;
      w->next_revision_ = std::min(start_revision, revision_ + 1);
      return w;
    }
  }
  // The snapshot's own revision key says which catalog revision it holds
  // (on a shared log it may be newer than revision_; Push skips the rest).
  absl::StatusOr<std::unique_ptr<RevisionLog::Snapshot>> snapshot =
      store_->NewSnapshot();
  if (!snapshot.ok()) return snapshot.status();
  absl::StatusOr<std::string> rev = (*snapshot)->Get(kMeta, kMetaRevision);
  int64_t snapshot_revision = 0;
  if (rev.ok()) {
    if (!absl::SimpleAtoi(*rev, &snapshot_revision)) {
      return absl::DataLossError("catalog meta \"revision\" is corrupt");
    }
  } else if (!absl::IsNotFound(rev.status())) {
    return rev.status();
  }
  absl::MutexLock wlock(&w->mu_);
  w->snapshot_ = *std::move(snapshot);
  w->snapshot_revision_ = snapshot_revision;
  w->phase_ = WatchStream::Phase::kSnapshot;
  w->next_revision_ = 0;
  return w;
}

// ---- WatchStream
// -------------------------------------------------------------

namespace {

// SnapshotSection: one column family of the snapshot and the WatchEvent
// field its records go to.
struct SnapshotSection {
  const char* cf;
  google::protobuf::Message* (*field)(v1::WatchEvent*);
};

const SnapshotSection kSnapshotSections[] = {
    {kTenants,
     [](v1::WatchEvent* e) -> google::protobuf::Message* {
       return e->mutable_tenant();
     }},
    {kProducts,
     [](v1::WatchEvent* e) -> google::protobuf::Message* {
       return e->mutable_product();
     }},
    {kGroups,
     [](v1::WatchEvent* e) -> google::protobuf::Message* {
       return e->mutable_device_group();
     }},
    {kDevices,
     [](v1::WatchEvent* e) -> google::protobuf::Message* {
       return e->mutable_device();
     }},
    {kImages,
     [](v1::WatchEvent* e) -> google::protobuf::Message* {
       return e->mutable_image();
     }},
    {kDeployments,
     [](v1::WatchEvent* e) -> google::protobuf::Message* {
       return e->mutable_deployment();
     }},
    {kOsReleases,
     [](v1::WatchEvent* e) -> google::protobuf::Message* {
       return e->mutable_os_release();
     }},
};
constexpr size_t kNumRecordSections =
    sizeof(kSnapshotSections) / sizeof(kSnapshotSections[0]);
// After the record sections: the shard map, then the end marker.
constexpr size_t kShardMapSection = kNumRecordSections;
constexpr size_t kEndSection = kNumRecordSections + 1;

}  // namespace

Catalog::WatchStream::WatchStream(Catalog* catalog, Caller caller,
                                  WatchOptions options)
    : catalog_(catalog),
      caller_(std::move(caller)),
      options_(std::move(options)) {}

Catalog::WatchStream::~WatchStream() {
  absl::MutexLock lock(&catalog_->mu_);
  catalog_->live_watchers_.erase(this);
}

int64_t Catalog::WatchStream::NextRevision() const {
  absl::MutexLock lock(&mu_);
  return next_revision_;
}

v1::WatchEvent Catalog::WatchStream::Visible(v1::WatchEvent event) const {
  if (event.has_tenant() && !caller_.is_internal()) {
    event.mutable_tenant()->clear_wrapped_ca_key();
  }
  return event;
}

absl::Status Catalog::WatchStream::Fail(absl::Status status) {
  absl::MutexLock lock(&mu_);
  phase_ = Phase::kFailed;
  failure_ = status;
  live_.clear();
  snapshot_.reset();
  return status;
}

absl::Status Catalog::WatchStream::Next(size_t max_events,
                                        std::vector<v1::WatchEvent>* out) {
  if (max_events == 0) max_events = 1;
  const size_t before = out->size();
  int empty_replays = 0;  // replay pages that found nothing, this call
  while (true) {
    Phase phase;
    {
      absl::MutexLock lock(&mu_);
      phase = phase_;
      if (phase == Phase::kFailed) return failure_;
      if (phase == Phase::kLive) {
        while (!live_.empty() && out->size() - before < max_events) {
          out->push_back(std::move(live_.front()));
          live_.pop_front();
          next_revision_ = out->back().revision() + 1;
        }
        if (out->size() == before) wake_armed_ = true;
        return absl::OkStatus();
      }
    }
    if (phase == Phase::kSnapshot) {
      if (auto s = SnapshotPage(max_events, out); !s.ok()) return Fail(s);
      if (out->size() > before) return absl::OkStatus();
      continue;
    }
    // Replay: read the log; when it has nothing more, try to go live.
    if (auto s = ReplayPage(max_events, out); !s.ok()) return Fail(s);
    if (out->size() > before) return absl::OkStatus();
    absl::StatusOr<bool> live = TryGoLive();
    if (!live.ok()) return Fail(live.status());
    // Not live: the catalog is at or past next_revision_. Commit writes a
    // log entry before it advances the revision, so the next page finds it;
    // a second empty page means the log lacks it (a damaged store, found by
    // fuzz/catalog_records_fuzzer): fail instead of spinning forever.
    if (!*live && ++empty_replays > 1) {
      return Fail(absl::DataLossError(absl::StrFormat(
          "the catalog change log has no entry for revision %d although the "
          "catalog is at revision %d: the store is damaged; restore it from "
          "a backup",
          NextRevision(), catalog_->revision())));
    }
  }
}

absl::Status Catalog::WatchStream::SnapshotPage(
    size_t max_events, std::vector<v1::WatchEvent>* out) {
  size_t added = 0;
  auto snapshot_event = [&](v1::WatchEvent e) {
    e.set_revision(snapshot_revision_);
    e.set_snapshot(true);
    out->push_back(Visible(std::move(e)));
    ++added;
  };
  while (added < max_events) {
    if (section_ < kNumRecordSections) {
      const SnapshotSection& section = kSnapshotSections[section_];
      absl::Status parse_error;
      bool full = false;
      absl::Status s = snapshot_->Scan(
          section.cf, "",
          [&](absl::string_view key, absl::string_view value) {
            resume_key_ = absl::StrCat(key, absl::string_view("\0", 1));
            v1::WatchEvent e;
            google::protobuf::Message* m = section.field(&e);
            if (!m->ParseFromArray(value.data(),
                                   static_cast<int>(value.size()))) {
              parse_error = absl::DataLossError(absl::StrFormat(
                  "catalog record %s/%s is corrupt", section.cf, key));
              return false;
            }
            // Unclaimed factory devices are not part of the snapshot (see
            // WatchEvent.factory_devices_imported); claimed ones are.
            if (e.has_device() && e.device().state() == v1::UNCLAIMED) {
              return true;
            }
            snapshot_event(std::move(e));
            full = added >= max_events;
            return !full;
          },
          resume_key_);
      if (!s.ok()) return s;
      if (!parse_error.ok()) return parse_error;
      if (full) return absl::OkStatus();
      ++section_;
      resume_key_.clear();
    } else if (section_ == kShardMapSection) {
      absl::StatusOr<v1::ShardMap> map =
          ReadShardMap(snapshot_.get(), catalog_->options_.virtual_nodes);
      if (!map.ok()) return map.status();
      if (map->shards_size() > 0) {
        v1::WatchEvent e;
        *e.mutable_shard_map() = *std::move(map);
        snapshot_event(std::move(e));
      }
      ++section_;
    } else {
      v1::WatchEvent end;
      end.set_snapshot_end(true);
      snapshot_event(std::move(end));
      snapshot_.reset();  // releases the pinned store state
      absl::MutexLock lock(&mu_);
      phase_ = Phase::kReplay;
      next_revision_ = snapshot_revision_ + 1;
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status Catalog::WatchStream::ReplayPage(
    size_t max_events, std::vector<v1::WatchEvent>* out) {
  int64_t next;
  {
    absl::MutexLock lock(&mu_);
    next = next_revision_;
  }
  const int64_t first = next;
  absl::Status parse_error;
  bool gap = false;
  size_t added = 0;
  absl::Status s = catalog_->store_->Scan(
      kLog, "",
      [&](absl::string_view key, absl::string_view value) {
        absl::StatusOr<v1::WatchEvent> e =
            Parse<v1::WatchEvent>(value, absl::StrCat("log/", key));
        if (!e.ok()) {
          parse_error = e.status();
          return false;
        }
        if (e->revision() != next) {
          gap = true;
          return false;
        }
        ++next;
        out->push_back(Visible(*std::move(e)));
        return ++added < max_events;
      },
      RevisionKey(first));
  if (!s.ok()) return s;
  if (!parse_error.ok()) return parse_error;
  {
    absl::MutexLock lock(&mu_);
    next_revision_ = next;
  }
  if (gap) {
    return absl::AbortedError(absl::StrFormat(
        "the catalog change log was compacted past revision %d while this "
        "watcher was replaying it; resume with Watch(start_revision=%d), "
        "which answers with a fresh snapshot",
        next, next));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Catalog::WatchStream::TryGoLive() {
  absl::MutexLock lock(&catalog_->mu_);
  absl::MutexLock wlock(&mu_);
  // Commit writes the log and advances revision_ under catalog_->mu_, so
  // every event <= revision_ is in the log, and every later one will be
  // pushed to us once we are registered: no gap, no duplicate.
  if (next_revision_ <= catalog_->revision_) {
    if (next_revision_ < catalog_->compacted_) {
      return absl::AbortedError(absl::StrFormat(
          "the catalog change log was compacted past revision %d while this "
          "watcher was replaying it; resume with Watch(start_revision=%d), "
          "which answers with a fresh snapshot",
          next_revision_, next_revision_));
    }
    return false;  // more was committed meanwhile: keep replaying
  }
  catalog_->live_watchers_.insert(this);
  phase_ = Phase::kLive;
  push_floor_ = next_revision_;
  return true;
}

bool Catalog::WatchStream::Push(const v1::WatchEvent& event) {
  bool keep = true;
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ != Phase::kLive) return false;
    if (event.revision() < push_floor_) return true;  // already delivered
    push_floor_ = event.revision() + 1;
    if (live_.size() >= options_.live_queue_limit) {
      phase_ = Phase::kFailed;
      failure_ = absl::ResourceExhaustedError(absl::StrFormat(
          "watcher fell more than %d events behind at revision %d; resume "
          "with Watch(start_revision=%d) (the last revision received + 1)",
          options_.live_queue_limit, event.revision(), next_revision_));
      live_.clear();
      keep = false;
    } else {
      live_.push_back(Visible(event));
    }
    wake = wake_armed_;
    wake_armed_ = false;
  }
  if (wake && options_.wakeup) options_.wakeup();
  return keep;
}

void Catalog::WatchStream::Kill(const absl::Status& status) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (phase_ == Phase::kFailed) return;
    phase_ = Phase::kFailed;
    failure_ = status;
    live_.clear();
    wake = wake_armed_;
    wake_armed_ = false;
  }
  if (wake && options_.wakeup) options_.wakeup();
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
  absl::StatusOr<RevisionLog::TxnResult> floor_written =
      store_->Txn({}, floor);
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


// ---- Deletes ---------------------------------------------------------------
// Each delete is one batch with its watch events, like every mutation. What
// the caller cannot see (another tenant's object, or none) is NotFound,
// never naming an owner; what is still in use is FailedPrecondition naming
// the use and what to do first.

namespace {

// Invisible turns "belongs to another tenant" into NotFound: a delete does
// not confirm that another tenant's object exists.
absl::Status Invisible(absl::Status s, absl::string_view what,
                       absl::string_view name) {
  if (absl::IsPermissionDenied(s)) {
    return absl::NotFoundError(
        absl::StrFormat("%s \"%s\" not found", what, name));
  }
  return s;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> Catalog::DevicesInGroups(
    const v1::Tenant& tenant, const std::set<std::string>& group_ids,
    size_t limit) {
  std::vector<std::string> out;
  const std::string prefix = absl::StrCat(tenant.id(), "/");
  absl::Status error;
  absl::Status s = store_->Scan(
      kTenantDevices, prefix, [&](absl::string_view key, absl::string_view) {
        absl::StatusOr<v1::Device> d = LoadDevice(key.substr(prefix.size()));
        if (!d.ok()) {
          error = d.status();
          return false;
        }
        if (group_ids.count(d->device_group_id()) > 0) out.push_back(d->id());
        return out.size() < limit;
      });
  if (!s.ok()) return s;
  if (!error.ok()) return error;
  return out;
}

absl::Status Catalog::CheckGroupsUnused(const v1::Tenant& tenant,
                                        const std::set<std::string>& group_ids,
                                        absl::string_view what) {
  absl::StatusOr<std::vector<std::string>> devices =
      DevicesInGroups(tenant, group_ids, 1);
  if (!devices.ok()) return devices.status();
  if (!devices->empty()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s still has devices (e.g. %s); move them to another group with "
        "'spherectl device update' first",
        what, devices->front()));
  }
  std::optional<v1::Deployment> dep;
  absl::Status s = ScanAll<v1::Deployment>(
      store_, kDeployments, [&](const v1::Deployment& d) {
        if (group_ids.count(d.device_group_id()) > 0) dep = d;
        return !dep.has_value();
      });
  if (!s.ok()) return s;
  if (dep) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s still has deployment %s; delete it with 'spherectl deployment "
        "delete --deployment %s' first",
        what, dep->id(), dep->id()));
  }
  return absl::OkStatus();
}

absl::Status Catalog::DeleteProduct(const Caller& caller,
                                    absl::string_view tenant,
                                    absl::string_view product) {
  if (auto s = NotForShards(caller, "deleting a product"); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::Product> p = FindProduct(*t, product);
  if (!p.ok()) return Invisible(p.status(), "product", product);
  absl::StatusOr<std::vector<v1::DeviceGroup>> groups =
      CollectIf<v1::DeviceGroup>(store_, kGroups, [&](const v1::DeviceGroup& g) {
        return g.product_id() == p->id();
      });
  if (!groups.ok()) return groups.status();
  std::set<std::string> ids;
  for (const v1::DeviceGroup& g : *groups) ids.insert(g.id());
  if (auto s = CheckGroupsUnused(
          *t, ids, absl::StrFormat("product \"%s\"", p->name()));
      !s.ok()) {
    return s;
  }
  Txn txn(revision_);
  for (const v1::DeviceGroup& g : *groups) {
    txn.Delete(kGroups, g.id());
    txn.Emit()->set_deleted_device_group_id(g.id());
  }
  txn.Delete(kProducts, p->id());
  txn.Emit()->set_deleted_product_id(p->id());
  return Commit(txn);
}

absl::Status Catalog::DeleteDeviceGroup(const Caller& caller,
                                        absl::string_view tenant,
                                        absl::string_view group) {
  if (auto s = NotForShards(caller, "deleting a device group"); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  absl::StatusOr<v1::DeviceGroup> g = FindGroup(*t, group);
  if (!g.ok()) return Invisible(g.status(), "device group", group);
  if (auto s = CheckGroupsUnused(
          *t, {g->id()}, absl::StrFormat("device group \"%s\"", g->name()));
      !s.ok()) {
    return s;
  }
  Txn txn(revision_);
  txn.Delete(kGroups, g->id());
  txn.Emit()->set_deleted_device_group_id(g->id());
  return Commit(txn);
}

absl::Status Catalog::DeleteDeployment(const Caller& caller,
                                       absl::string_view tenant,
                                       absl::string_view deployment_id) {
  if (auto s = NotForShards(caller, "deleting a deployment"); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  auto dep = GetRecord<v1::Deployment>(store_, kDeployments, deployment_id);
  if (!dep.ok()) return dep.status();
  if (!dep->has_value() || (*dep)->tenant_id() != t->id()) {
    return absl::NotFoundError(absl::StrFormat(
        "deployment \"%s\" not found in tenant \"%s\"; list them with "
        "'spherectl deployment list'",
        deployment_id, t->name()));
  }
  // The group's newest remaining deployment becomes current again: shards
  // keep only the newest per group, so it is sent once more after the
  // delete.
  std::optional<v1::Deployment> previous;
  absl::Status s = ScanAll<v1::Deployment>(
      store_, kDeployments, [&](const v1::Deployment& d) {
        if (d.device_group_id() == (*dep)->device_group_id() &&
            d.id() != (*dep)->id() &&
            (!previous || d.create_revision() > previous->create_revision())) {
          previous = d;
        }
        return true;
      });
  if (!s.ok()) return s;
  Txn txn(revision_);
  txn.Delete(kDeployments, (*dep)->id());
  txn.Emit()->set_deleted_deployment_id((*dep)->id());
  if (previous) *txn.Emit()->mutable_deployment() = *previous;
  return Commit(txn);
}

absl::Status Catalog::DeleteImage(const Caller& caller,
                                  absl::string_view tenant,
                                  absl::string_view image_id) {
  if (auto s = NotForShards(caller, "deleting an image"); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  // Platform operators without a tenant delete platform OS images.
  std::string owner;
  std::string owner_name = "the platform";
  if (caller.is_tenant() || !tenant.empty()) {
    absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
    if (!t.ok()) return t.status();
    owner = t->id();
    owner_name = absl::StrCat("tenant \"", t->name(), "\"");
  }
  const std::string key = ImageKey(owner, image_id);
  auto image = GetRecord<v1::Image>(store_, kImages, key);
  if (!image.ok()) return image.status();
  if (!image->has_value() || (*image)->tenant_id() != owner) {
    return absl::NotFoundError(absl::StrFormat(
        "image \"%s\" not found among the images of %s; list them with "
        "'spherectl image list'",
        image_id, owner_name));
  }
  std::optional<std::string> used_by;
  absl::Status s = ScanAll<v1::Deployment>(
      store_, kDeployments, [&](const v1::Deployment& d) {
        if (d.tenant_id() != owner) return true;  // names only its own images
        for (const std::string& id : d.image_ids()) {
          if (id == image_id) {
            used_by = absl::StrFormat(
                "deployment %s; delete it with 'spherectl deployment delete "
                "--deployment %s' first",
                d.id(), d.id());
          }
        }
        return !used_by.has_value();
      });
  if (!s.ok()) return s;
  if (!used_by && owner.empty()) {  // OS releases name platform images only
    s = ScanAll<v1::OsRelease>(
        store_, kOsReleases, [&](const v1::OsRelease& r) {
          for (const std::string& id : r.image_ids()) {
            if (id == image_id) {
              used_by = absl::StrFormat(
                  "OS release %s on feed %s; released OS images stay",
                  r.version(), v1::OsFeed_Name(r.feed()));
            }
          }
          return !used_by.has_value();
        });
    if (!s.ok()) return s;
  }
  if (used_by) {
    return absl::FailedPreconditionError(
        absl::StrFormat("image \"%s\" is in use by %s", image_id, *used_by));
  }
  Txn txn(revision_);
  txn.Delete(kImages, key);
  txn.Emit()->set_deleted_image_id(key);
  return Commit(txn);
}


}  // namespace sphere::management

// ---- Staged rollout ---------------------------------------------------------

namespace sphere::management {

absl::StatusOr<v1::Deployment> Catalog::SetDeploymentRollout(
    const Caller& caller, const v1::Deployment& update) {
  if (auto s = PlatformOnly(caller, "publishing a rollout stage"); !s.ok()) {
    return s;
  }
  if (!(update.rollout_fraction() >= 0 && update.rollout_fraction() <= 1)) {
    return absl::InvalidArgumentError(
        "a rollout fraction must be in [0, 1]; nothing changed");
  }
  if (auto s = limits::ValidateSize("rollout halt reason",
                                      update.halt_reason().size(),
                                      limits::kMaxRolloutReasonBytes);
      !s.ok()) {
    return s;
  }
  if (auto s = limits::ValidateSize("rollout status",
                                      update.rollout_status().size(),
                                      limits::kMaxRolloutStatusBytes);
      !s.ok()) {
    return s;
  }
  if (auto s = limits::ValidateReference("deployment", update.id()); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  auto dep = GetRecord<v1::Deployment>(store_, kDeployments, update.id());
  if (!dep.ok()) return dep.status();
  if (!dep->has_value()) {
    return absl::NotFoundError(absl::StrFormat(
        "deployment \"%s\" not found; it may have been deleted",
        update.id()));
  }
  v1::Deployment d = **dep;
  d.set_rollout_fraction(update.rollout_fraction());
  d.set_halted(update.halted());
  d.set_halt_reason(update.halt_reason());
  d.set_rollout_status(update.rollout_status());
  Txn txn(revision_);
  *txn.Emit()->mutable_deployment() = d;
  txn.Put(kDeployments, d.id(), d);
  if (auto s = Commit(txn); !s.ok()) return s;
  return d;
}

absl::StatusOr<v1::Deployment> Catalog::GetDeployment(
    const Caller& caller, absl::string_view tenant, absl::string_view id) {
  if (auto s = NotForShards(caller, "reading a deployment"); !s.ok()) return s;
  if (auto s = limits::ValidateReference("deployment", id); !s.ok()) return s;
  absl::StatusOr<v1::Tenant> t = ResolveTenant(caller, tenant);
  if (!t.ok()) return t.status();
  auto dep = GetRecord<v1::Deployment>(store_, kDeployments, id);
  if (!dep.ok()) return dep.status();
  if (!dep->has_value() || (*dep)->tenant_id() != t->id()) {
    return absl::NotFoundError(absl::StrFormat(
        "deployment \"%s\" not found in tenant \"%s\"; list them with "
        "'spherectl deployment list'",
        id, t->name()));
  }
  return **dep;
}

absl::StatusOr<std::vector<v1::Deployment>> Catalog::AllDeployments(
    const Caller& caller) {
  if (auto s = PlatformOnly(caller, "listing every deployment"); !s.ok()) {
    return s;
  }
  return CollectIf<v1::Deployment>(store_, kDeployments,
                                   [](const v1::Deployment&) { return true; });
}

}  // namespace sphere::management
