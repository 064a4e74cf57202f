#include "common/store/memory_store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sphere::store {

absl::StatusOr<std::unique_ptr<MemoryStore>> MemoryStore::Create(
    const std::vector<std::string>& column_families) {
  std::unique_ptr<MemoryStore> store(new MemoryStore());
  absl::MutexLock lock(&store->mu_);
  for (const std::string& cf : column_families) {
    if (cf.empty()) {
      return absl::InvalidArgumentError("memory store: empty column family");
    }
    if (!store->tables_.emplace(cf, Table()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("memory store: duplicate column family '", cf, "'"));
    }
  }
  return store;
}

absl::StatusOr<std::unique_ptr<Store>> OpenMemoryStore(
    const std::vector<std::string>& column_families) {
  auto store = MemoryStore::Create(column_families);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(*store));
}

namespace {
absl::Status UnknownCf(absl::string_view cf) {
  return absl::InvalidArgumentError(
      absl::StrCat("memory store: unknown column family '", cf, "'"));
}
}  // namespace

absl::StatusOr<std::string> MemoryStore::Get(absl::string_view cf,
                                             absl::string_view key) {
  absl::MutexLock lock(&mu_);
  if (fail_reads_ > 0) {
    --fail_reads_;
    return read_error_;
  }
  auto t = tables_.find(cf);
  if (t == tables_.end()) return UnknownCf(cf);
  auto it = t->second.find(key);
  if (it == t->second.end()) {
    return absl::NotFoundError(
        absl::StrCat("memory store: key not found in cf '", cf, "'"));
  }
  return it->second;
}

absl::Status MemoryStore::Write(const WriteBatch& batch) {
  absl::MutexLock lock(&mu_);
  if (fail_writes_ > 0) {
    --fail_writes_;
    return write_error_;
  }
  // Validate everything first so the batch applies all-or-nothing.
  for (const WriteBatch::Op& op : batch.ops()) {
    if (!tables_.contains(op.cf)) return UnknownCf(op.cf);
  }
  for (const WriteBatch::Op& op : batch.ops()) {
    Table& t = tables_[op.cf];
    if (op.is_delete) {
      t.erase(op.key);
    } else {
      t.insert_or_assign(op.key, op.value);
    }
  }
  ++writes_;
  return absl::OkStatus();
}

absl::Status MemoryStore::Scan(
    absl::string_view cf, absl::string_view prefix,
    const std::function<bool(absl::string_view key, absl::string_view value)>&
        fn,
    absl::string_view start) {
  if (!start.empty() && !absl::StartsWith(start, prefix)) {
    return absl::InvalidArgumentError(
        "memory store: scan start does not have the scan prefix");
  }
  std::vector<std::pair<std::string, std::string>> snapshot;
  {
    absl::MutexLock lock(&mu_);
    if (fail_reads_ > 0) {
      --fail_reads_;
      return read_error_;
    }
    auto t = tables_.find(cf);
    if (t == tables_.end()) return UnknownCf(cf);
    for (auto it = t->second.lower_bound(start.empty() ? prefix : start);
         it != t->second.end() && absl::StartsWith(it->first, prefix); ++it) {
      snapshot.emplace_back(it->first, it->second);
    }
  }
  for (const auto& [k, v] : snapshot) {
    if (!fn(k, v)) break;
  }
  return absl::OkStatus();
}

namespace {
// An injected failure must fail: an OK status would silently drop writes.
absl::Status InjectedError(absl::Status status) {
  if (status.ok()) return absl::UnknownError("memory store: injected failure");
  return status;
}
}  // namespace

void MemoryStore::FailNextWrites(int n, absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_writes_ = n;
  write_error_ = InjectedError(std::move(status));
}

void MemoryStore::FailNextReads(int n, absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_reads_ = n;
  read_error_ = InjectedError(std::move(status));
}

void MemoryStore::ClearFaults() {
  absl::MutexLock lock(&mu_);
  fail_writes_ = 0;
  fail_reads_ = 0;
}

int64_t MemoryStore::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

size_t MemoryStore::Size(absl::string_view cf) const {
  absl::MutexLock lock(&mu_);
  auto t = tables_.find(cf);
  return t == tables_.end() ? 0 : t->second.size();
}

}  // namespace sphere::store
