// Catalog: the shard map (shards register themselves; an expired lease
// removes one).
#include <algorithm>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

absl::StatusOr<v1::ShardMap> Catalog::GetShardMap(const Caller& caller) {
  if (auto s = Authorize(caller, Op::kGetShardMap); !s.ok()) return s;
  return ReadShardMap(store_, options_.virtual_nodes);
}

absl::StatusOr<v1::ShardMap> Catalog::RegisterShard(const Caller& caller,
                                                    const v1::Shard& shard) {
  if (auto s = Authorize(caller, Op::kRegisterShard); !s.ok()) return s;
  if (shard.id().empty() || shard.id().size() > limits::kMaxNameLength) {
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
  if (auto s = Authorize(caller, Op::kRemoveShard); !s.ok()) return s;
  if (shard_id.empty() || shard_id.size() > limits::kMaxNameLength) {
    return absl::InvalidArgumentError("a shard id has 1 to 64 characters");
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<v1::ShardMap> map = GetShardMap(caller);
  if (!map.ok()) return map.status();
  auto* shards = map->mutable_shards();
  auto it =
      std::find_if(shards->begin(), shards->end(),
                   [&](const v1::Shard& s) { return s.id() == shard_id; });
  if (it == shards->end()) {
    return absl::NotFoundError(
        absl::StrFormat("shard \"%s\" is not in the shard map",
                        limits::EscapedPrefix(shard_id)));
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

}  // namespace sphere::management
