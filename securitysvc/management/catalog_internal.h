// Private to the catalog's own files (catalog*.cc): the record layout (column
// families and keys), record parsing and scans, the transaction type every
// mutation builds, and server-side paging. Nothing outside
// securitysvc/management/catalog*.cc includes it.
//
// Record layout: every record a tenant owns is keyed under its tenant id (and
// then its product or group), so each List is a prefix scan of one tenant
// and no lookup scans another tenant's records:
//   tenants         <tenant id>
//   products        <tenant id>/<product id>
//   groups          <tenant id>/<product id>/<group id>
//   devices         <device id>                      (the factory registry)
//   tenant_devices  <tenant id>/<device id>          -> ""
//   group_devices   <tenant id>/<group id>/<device id> -> ""
//   images          <tenant id>/<image id>, platform/<image id>
//   deployments     <tenant id>/<group id>/<deployment id>
//   os_releases     <feed>/<version>
//   shards          <shard id>
//   index           tenant-name/<lower-case name>               -> tenant id
//                   product-name/<tenant>/<lower-case name>     -> product id
//                   group-name/<tenant>/<product>/<lower name>  -> group id
//                   group/<tenant id>/<group id>                -> product id
//                   deployment/<deployment id>     -> deployments key
//   meta, log       the revision counters and the change log (catalog.cc)
// Names are unique ignoring case because their index key is the lower-cased
// name and every create requires it absent in the same Txn (so two replicas
// on etcd cannot both create "Contoso" and "contoso").
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_INTERNAL_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_INTERNAL_H_

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/store/store.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/limits.h"
#include "securitysvc/management/revision_log.h"

namespace sphere::management::catalog_internal {

inline constexpr char kTenants[] = "tenants";
inline constexpr char kProducts[] = "products";
inline constexpr char kGroups[] = "groups";
inline constexpr char kDevices[] = "devices";
inline constexpr char kTenantDevices[] = "tenant_devices";
inline constexpr char kGroupDevices[] = "group_devices";
inline constexpr char kImages[] = "images";
inline constexpr char kDeployments[] = "deployments";
inline constexpr char kOsReleases[] = "os_releases";
inline constexpr char kShards[] = "shards";
inline constexpr char kIndex[] = "index";
inline constexpr char kMeta[] = "meta";
inline constexpr char kLog[] = "log";  // %020d revision -> WatchEvent

inline constexpr char kMetaRevision[] = "revision";
inline constexpr char kMetaCompacted[] = "compacted";
inline constexpr char kMetaShardMapRevision[] = "shard_map_revision";

// ---- Keys -------------------------------------------------------------------
inline std::string Lower(absl::string_view s) {
  return absl::AsciiStrToLower(s);
}
inline std::string TenantPrefix(absl::string_view tenant_id) {
  return absl::StrCat(tenant_id, "/");
}
inline std::string ProductKey(absl::string_view tenant_id,
                              absl::string_view product_id) {
  return absl::StrCat(tenant_id, "/", product_id);
}
inline std::string GroupPrefix(absl::string_view tenant_id,
                               absl::string_view product_id) {
  return absl::StrCat(tenant_id, "/", product_id, "/");
}
inline std::string GroupKey(absl::string_view tenant_id,
                            absl::string_view product_id,
                            absl::string_view group_id) {
  return absl::StrCat(tenant_id, "/", product_id, "/", group_id);
}
inline std::string TenantDeviceKey(absl::string_view tenant_id,
                                   absl::string_view device_id) {
  return absl::StrCat(tenant_id, "/", device_id);
}
inline std::string GroupMembersPrefix(absl::string_view tenant_id,
                                      absl::string_view group_id) {
  return absl::StrCat(tenant_id, "/", group_id, "/");
}
inline std::string GroupDeviceKey(absl::string_view tenant_id,
                                  absl::string_view group_id,
                                  absl::string_view device_id) {
  return absl::StrCat(tenant_id, "/", group_id, "/", device_id);
}
// ImageKey: "<tenant id>/<image id>"; the platform's OS images under
// "platform/<image id>", so byte-identical uploads by two tenants are two
// records and neither blocks the other.
inline std::string ImageKey(absl::string_view tenant_id,
                            absl::string_view image_id) {
  return absl::StrCat(tenant_id.empty() ? "platform" : tenant_id, "/",
                      image_id);
}
inline std::string DeploymentPrefix(absl::string_view tenant_id,
                                    absl::string_view group_id) {
  return absl::StrCat(tenant_id, "/", group_id, "/");
}
inline std::string DeploymentKey(const v1::Deployment& d) {
  return absl::StrCat(d.tenant_id(), "/", d.device_group_id(), "/", d.id());
}
inline std::string TenantNameIndex(absl::string_view name) {
  return absl::StrCat("tenant-name/", Lower(name));
}
inline std::string ProductNameIndex(absl::string_view tenant_id,
                                    absl::string_view name) {
  return absl::StrCat("product-name/", tenant_id, "/", Lower(name));
}
inline std::string GroupNameIndex(absl::string_view tenant_id,
                                  absl::string_view product_id,
                                  absl::string_view name) {
  return absl::StrCat("group-name/", tenant_id, "/", product_id, "/",
                      Lower(name));
}
inline std::string GroupIdIndex(absl::string_view tenant_id,
                                absl::string_view group_id) {
  return absl::StrCat("group/", tenant_id, "/", group_id);
}
inline std::string DeploymentIdIndex(absl::string_view deployment_id) {
  return absl::StrCat("deployment/", deployment_id);
}
std::string RevisionKey(int64_t revision);

// ---- Small helpers
// ------------------------------------------------------------
std::string NewId();
bool IsHexId(absl::string_view id, size_t length);
// DevicePrefix: the first 8 bytes of a (64-hex) device id as an integer.
uint64_t DevicePrefix(absl::string_view id);
absl::Status ValidateName(absl::string_view kind, absl::string_view name);
absl::Status ValidateDescription(absl::string_view description);
// IsOsComponentKind: boot-chain images reach devices through OS feeds only.
bool IsOsComponentKind(v1::ImageKind kind);

// ---- Records
// ------------------------------------------------------------------
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

// ParseDevice parses a devices/<id> record as read from the store: NotFound
// (naming the id) when the read found nothing, the read's error otherwise.
absl::StatusOr<v1::Device> ParseDevice(absl::string_view device_id,
                                       absl::StatusOr<std::string> record);

// GetIndex reads an index entry; nullopt when absent.
absl::StatusOr<std::optional<std::string>> GetIndex(store::Reader* store,
                                                    absl::string_view key);

// ScanPrefix parses every record of `cf` under `prefix` (in key order) and
// passes it to `fn` until it returns false.
template <typename Message>
absl::Status ScanPrefix(store::Reader* store, absl::string_view cf,
                        absl::string_view prefix,
                        const std::function<bool(const Message&)>& fn) {
  absl::Status parse_error;
  absl::Status s = store->Scan(
      cf, prefix, [&](absl::string_view key, absl::string_view value) {
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

// CollectPrefix returns every record of `cf` under `prefix`, in key order.
template <typename Message>
absl::StatusOr<std::vector<Message>> CollectPrefix(store::Reader* store,
                                                   absl::string_view cf,
                                                   absl::string_view prefix) {
  std::vector<Message> out;
  absl::Status s =
      ScanPrefix<Message>(store, cf, prefix, [&](const Message& m) {
        out.push_back(m);
        return true;
      });
  if (!s.ok()) return s;
  return out;
}

// ReadShardMap reads the shard map from `reader` (the store or a snapshot).
absl::StatusOr<v1::ShardMap> ReadShardMap(store::Reader* reader,
                                          uint32_t virtual_nodes);

// ---- Server-side paging -----------------------------------------------------
// Every List reads one page: at most `size` records after the key `after`
// (the last key of the previous page), found by a prefix scan. The page token
// is opaque to callers: it names the listing (`list` + `scope`, which holds
// the tenant and the filters) and the last key, so a token from another
// listing, another tenant or other filters is refused, not misread.
inline constexpr size_t kDefaultPageSize = 100;
inline constexpr size_t kMaxPageSize = 1000;

struct Page {
  size_t size = kDefaultPageSize;
  std::string after;  // empty: from the start of `prefix`
};

// ParsePage checks page_size (0: default, capped at kMaxPageSize) and
// decodes page_token; InvalidArgument for a malformed token, one of another
// listing/scope, or one whose key is not under `prefix`.
absl::StatusOr<Page> ParsePage(uint32_t page_size, absl::string_view page_token,
                               absl::string_view list, absl::string_view scope,
                               absl::string_view prefix);
std::string EncodePageToken(absl::string_view list, absl::string_view scope,
                            absl::string_view last_key);

// ScanPage reads one page of `cf` under `prefix`: `load(key, value)` turns a
// key into a record, or nullopt to skip it (a filter). Fills `out` with at
// most page.size records and *next_token with the token of the next page
// (empty when nothing follows).
template <typename Message>
absl::Status ScanPage(
    store::Reader* store, absl::string_view cf, absl::string_view prefix,
    const Page& page, absl::string_view list, absl::string_view scope,
    const std::function<absl::StatusOr<std::optional<Message>>(
        absl::string_view key, absl::string_view value)>& load,
    google::protobuf::RepeatedPtrField<Message>* out, std::string* next_token) {
  absl::Status error;
  std::string last_key;
  bool more = false;
  absl::Status s = store->Scan(
      cf, prefix,
      [&](absl::string_view key, absl::string_view value) {
        if (!page.after.empty() && key <= page.after) return true;
        absl::StatusOr<std::optional<Message>> m = load(key, value);
        if (!m.ok()) {
          error = m.status();
          return false;
        }
        if (!m->has_value()) return true;
        if (static_cast<size_t>(out->size()) == page.size) {
          more = true;  // one more exists: the page ends at last_key
          return false;
        }
        *out->Add() = **std::move(m);
        last_key = std::string(key);
        return true;
      },
      page.after.empty() ? std::string(prefix) : page.after);
  if (!s.ok()) return s;
  if (!error.ok()) return error;
  next_token->clear();
  if (more) *next_token = EncodePageToken(list, scope, last_key);
  return absl::OkStatus();
}

// ParseValue is a ScanPage loader for records stored under the scanned key.
template <typename Message>
absl::StatusOr<std::optional<Message>> ParseValue(absl::string_view cf,
                                                  absl::string_view key,
                                                  absl::string_view value) {
  absl::StatusOr<Message> m = Parse<Message>(value, absl::StrCat(cf, "/", key));
  if (!m.ok()) return m.status();
  return std::optional<Message>(*std::move(m));
}

}  // namespace sphere::management::catalog_internal

namespace sphere::management {

// Catalog::Txn collects the records and change-log events of one mutation;
// Catalog::Commit writes them as one RevisionLog Txn.
class Catalog::Txn {
 public:
  explicit Txn(int64_t current_revision) : next_(current_revision + 1) {}

  // Put stages a record; one larger than limits::kMaxRecordBytes fails the
  // whole transaction at Commit (nothing is written).
  void Put(absl::string_view cf, absl::string_view key,
           const google::protobuf::Message& m);
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

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_CATALOG_INTERNAL_H_
