// common/store: the small key-value interface every process stores through.
// A store has named column families (one per record kind), atomic write
// batches, ordered prefix scans and consistent point-in-time snapshots.
// RocksStore is the durable implementation (RocksDB, encrypted at rest, every
// acknowledged Write synced to the WAL); MemoryStore is for tests and supports
// fault injection.
//
// Thread-safety: all methods may be called concurrently.
//
// Example:
//   auto store = OpenMemoryStore({"devices"});
//   WriteBatch b; b.Put("devices", id, record);
//   RETURN_IF_ERROR((*store)->Write(b));
#ifndef SPHERE_COMMON_STORE_STORE_H_
#define SPHERE_COMMON_STORE_STORE_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sphere::store {

// WriteBatch collects puts and deletes applied atomically by Store::Write.
class WriteBatch {
 public:
  struct Op {
    bool is_delete;
    std::string cf;
    std::string key;
    std::string value;
  };
  void Put(absl::string_view cf, absl::string_view key,
           absl::string_view value) {
    ops_.push_back(
        {false, std::string(cf), std::string(key), std::string(value)});
  }
  void Delete(absl::string_view cf, absl::string_view key) {
    ops_.push_back({true, std::string(cf), std::string(key), ""});
  }
  const std::vector<Op>& ops() const { return ops_; }
  // Append moves `other`'s operations to the end of this batch (no copy of
  // keys or values; `other` is left empty).
  void Append(WriteBatch&& other) {
    if (ops_.empty()) {
      ops_ = std::move(other.ops_);
    } else {
      // No reserve(size + n) here: an exact reserve on every Append makes a
      // group of k batches cost O(k^2) moves (group commit joins hundreds);
      // push_back grows geometrically.
      for (Op& op : other.ops_) ops_.push_back(std::move(op));
    }
    other.ops_.clear();
  }
  // Slice copies operations [begin, end) into a new batch.
  WriteBatch Slice(size_t begin, size_t end) const {
    WriteBatch b;
    b.ops_.assign(ops_.begin() + begin, ops_.begin() + end);
    return b;
  }
  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }
  // ApproximateBytes is the size of the keys and values in the batch.
  size_t ApproximateBytes() const {
    size_t n = 0;
    for (const Op& op : ops_)
      n += op.cf.size() + op.key.size() + op.value.size();
    return n;
  }

 private:
  std::vector<Op> ops_;
};

// Reader is the read side shared by a Store and its Snapshots.
class Reader {
 public:
  virtual ~Reader() = default;

  // Get returns the value, NotFound if absent, InvalidArgument for an unknown
  // column family.
  virtual absl::StatusOr<std::string> Get(absl::string_view cf,
                                          absl::string_view key) = 0;

  // Scan calls `fn` for every key starting with `prefix`, in key order,
  // starting at `start` if non-empty (start must itself have the prefix);
  // stops early when `fn` returns false.
  virtual absl::Status Scan(
      absl::string_view cf, absl::string_view prefix,
      const std::function<bool(absl::string_view key, absl::string_view value)>&
          fn,
      absl::string_view start = "") = 0;

  // LastKey returns the greatest key starting with `prefix` (NotFound if
  // there is none). The default scans the prefix; a store may override it
  // with a reverse seek.
  virtual absl::StatusOr<std::string> LastKey(absl::string_view cf,
                                              absl::string_view prefix) {
    std::string last;
    bool found = false;
    absl::Status s = Scan(cf, prefix, [&](absl::string_view k,
                                          absl::string_view) {
      last.assign(k.data(), k.size());
      found = true;
      return true;
    });
    if (!s.ok()) return s;
    if (!found) return absl::NotFoundError("no key with this prefix");
    return last;
  }
};

// Snapshot is a consistent read-only view of a Store as of the moment
// Store::NewSnapshot returned: later writes are invisible to it. It must not
// outlive its Store. Reads from one snapshot may run concurrently.
//
// Example (page through a column family at a fixed point in time):
//   std::unique_ptr<Snapshot> snap = store->NewSnapshot();
//   snap->Scan("devices", "", fn, /*start=*/after_last_key);
class Snapshot : public Reader {};

class Store : public Reader {
 public:
  ~Store() override = default;

  // NewSnapshot pins the current state (RocksStore: a RocksDB snapshot;
  // MemoryStore: copy-on-write tables). Cheap to take; release it promptly,
  // as it keeps overwritten data alive.
  virtual std::unique_ptr<Snapshot> NewSnapshot() = 0;

  // Write applies `batch` atomically. When it returns OK the batch is durable
  // (survives kill -9 and power loss per the implementation's contract).
  virtual absl::Status Write(const WriteBatch& batch) = 0;

  // Flush persists buffered state into the implementation's files (RocksStore:
  // memtables to SST files). Durability never depends on it — Write already
  // made every acknowledged batch durable. The default is a no-op.
  virtual absl::Status Flush() { return absl::OkStatus(); }

  // CompactRange rewrites the keys of `cf` in [begin, end) (empty: unbounded)
  // so deleted and overwritten data is physically dropped (RocksStore:
  // DB::CompactRange; retention sweeps call it after deleting expired keys).
  // The default is a no-op (MemoryStore drops deleted keys at once).
  virtual absl::Status CompactRange(absl::string_view cf,
                                    absl::string_view begin = "",
                                    absl::string_view end = "") {
    (void)cf;
    (void)begin;
    (void)end;
    return absl::OkStatus();
  }

  // Convenience single-key helpers.
  absl::Status Put(absl::string_view cf, absl::string_view key,
                   absl::string_view value) {
    WriteBatch b;
    b.Put(cf, key, value);
    return Write(b);
  }
  absl::Status Delete(absl::string_view cf, absl::string_view key) {
    WriteBatch b;
    b.Delete(cf, key);
    return Write(b);
  }
};

struct RocksOptions {
  // When non-empty (32 bytes), every file is encrypted with AES-256-CTR under
  // this data key (RocksDB EncryptedEnv over common/crypto).
  std::string data_key;
  // Sync the WAL on every acknowledged write (default; group commit amortises).
  bool sync = true;
  // Memory for many small records (issue 14, a shard's memory per device).
  // 0 keeps RocksDB's defaults (64 MiB memtable per column family, two of
  // them, and an 8 MiB block cache). When set, all memtables together are
  // capped at memtable_budget_bytes (a shared WriteBufferManager flushes the
  // largest when the budget is reached; each column family's memtable is a
  // quarter of it), and SST blocks are cached in one block_cache_bytes LRU
  // cache that also holds index and filter blocks (so they are bounded too).
  size_t memtable_budget_bytes = 0;
  size_t block_cache_bytes = 0;
  // The bound on the live write-ahead logs (RocksDB's max_total_wal_size).
  // A log stays live while any column family holds unflushed data written
  // into it, so a rarely written column family (management's tenants) would
  // keep every log since its last write, which a restart replays. Past the
  // bound, the column families holding data in the oldest live log are
  // flushed so that log can go. 0 keeps RocksDB's default (4 x the sum of
  // every column family's write buffers: gigabytes with many families).
  size_t max_total_wal_bytes = 0;
};

// OpenRocksStore opens (creating if needed) a RocksDB at `path` with the given
// column families.
absl::StatusOr<std::unique_ptr<Store>> OpenRocksStore(
    const std::string& path, const std::vector<std::string>& column_families,
    const RocksOptions& options = {});

// OpenMemoryStore returns an in-memory store for tests.
absl::StatusOr<std::unique_ptr<Store>> OpenMemoryStore(
    const std::vector<std::string>& column_families);

}  // namespace sphere::store

#endif  // SPHERE_COMMON_STORE_STORE_H_
