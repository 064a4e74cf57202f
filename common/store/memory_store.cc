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
    if (!store->tables_.emplace(cf, std::make_shared<Table>()).second) {
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

absl::StatusOr<std::shared_ptr<const MemoryStore::Table>> MemoryStore::TableFor(
    absl::string_view cf) {
  absl::MutexLock lock(&mu_);
  if (fail_reads_ > 0) {
    --fail_reads_;
    return read_error_;
  }
  auto t = tables_.find(cf);
  if (t == tables_.end()) return UnknownCf(cf);
  return std::shared_ptr<const Table>(t->second);
}

namespace {
absl::StatusOr<std::string> GetFrom(
    const std::map<std::string, std::string, std::less<>>& table,
    absl::string_view cf, absl::string_view key) {
  auto it = table.find(key);
  if (it == table.end()) {
    return absl::NotFoundError(
        absl::StrCat("memory store: key not found in cf '", cf, "'"));
  }
  return it->second;
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
  return GetFrom(*t->second, cf, key);
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
    std::shared_ptr<Table>& t = tables_[op.cf];
    if (t.use_count() > 1) t = std::make_shared<Table>(*t);  // copy-on-write
    if (op.is_delete) {
      t->erase(op.key);
    } else {
      t->insert_or_assign(op.key, op.value);
    }
  }
  ++writes_;
  return absl::OkStatus();
}

absl::Status MemoryStore::ScanTable(
    const Table& table, absl::string_view prefix,
    const std::function<bool(absl::string_view, absl::string_view)>& fn,
    absl::string_view start) {
  if (!start.empty() && !absl::StartsWith(start, prefix)) {
    return absl::InvalidArgumentError(
        "memory store: scan start does not have the scan prefix");
  }
  for (auto it = table.lower_bound(start.empty() ? prefix : start);
       it != table.end() && absl::StartsWith(it->first, prefix); ++it) {
    if (!fn(it->first, it->second)) break;
  }
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
  // Holding a reference makes the table immutable for the scan: writes made
  // by `fn` go to a copy.
  absl::StatusOr<std::shared_ptr<const Table>> table = TableFor(cf);
  if (!table.ok()) return table.status();
  return ScanTable(**table, prefix, fn, start);
}

// MemorySnapshot holds references to every table as of NewSnapshot.
class MemoryStore::MemorySnapshot : public Snapshot {
 public:
  MemorySnapshot(
      MemoryStore* store,
      absl::flat_hash_map<std::string, std::shared_ptr<const Table>> tables)
      : store_(store), tables_(std::move(tables)) {}

  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override {
    absl::StatusOr<const Table*> t = Find(cf);
    if (!t.ok()) return t.status();
    return GetFrom(**t, cf, key);
  }
  absl::Status Scan(absl::string_view cf, absl::string_view prefix,
                    const std::function<bool(absl::string_view key,
                                             absl::string_view value)>& fn,
                    absl::string_view start) override {
    absl::StatusOr<const Table*> t = Find(cf);
    if (!t.ok()) return t.status();
    return ScanTable(**t, prefix, fn, start);
  }

 private:
  absl::StatusOr<const Table*> Find(absl::string_view cf) {
    {
      absl::MutexLock lock(&store_->mu_);
      if (store_->fail_reads_ > 0) {
        --store_->fail_reads_;
        return store_->read_error_;
      }
    }
    auto t = tables_.find(cf);
    if (t == tables_.end()) return UnknownCf(cf);
    return t->second.get();
  }

  MemoryStore* const store_;
  const absl::flat_hash_map<std::string, std::shared_ptr<const Table>> tables_;
};

std::unique_ptr<Snapshot> MemoryStore::NewSnapshot() {
  absl::flat_hash_map<std::string, std::shared_ptr<const Table>> tables;
  absl::MutexLock lock(&mu_);
  for (const auto& [cf, table] : tables_) tables.emplace(cf, table);
  return std::make_unique<MemorySnapshot>(this, std::move(tables));
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
  return t == tables_.end() ? 0 : t->second->size();
}

}  // namespace sphere::store
