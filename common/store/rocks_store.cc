// RocksStore: the durable Store (RocksDB, one column family per record kind,
// WAL synced on every acknowledged write, optionally encrypted at rest).

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/store/encrypted_env.h"
#include "common/store/store.h"
#include "common/util/metrics.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/env_encryption.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/statistics.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "rocksdb/write_buffer_manager.h"

namespace sphere::store {
namespace {

// FromRocks maps a RocksDB status to absl, naming the operation, the database
// path and (when relevant) the column family.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view op,
                       absl::string_view path, absl::string_view cf = "") {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("rocks store ", op, " (path ", path);
  if (!cf.empty()) absl::StrAppend(&msg, ", cf '", cf, "'");
  absl::StrAppend(&msg, "): ", s.ToString());
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return absl::NotFoundError(msg);
    case rocksdb::Status::kCorruption:
      return absl::DataLossError(msg);
    case rocksdb::Status::kNotSupported:
      return absl::UnimplementedError(msg);
    case rocksdb::Status::kInvalidArgument:
      return absl::InvalidArgumentError(msg);
    case rocksdb::Status::kIOError:
      if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
      return absl::InternalError(msg);
    case rocksdb::Status::kMergeInProgress:
    case rocksdb::Status::kAborted:
      return absl::AbortedError(msg);
    case rocksdb::Status::kTimedOut:
      return absl::DeadlineExceededError(msg);
    case rocksdb::Status::kIncomplete:
    case rocksdb::Status::kShutdownInProgress:
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

// PrefixSuccessor returns the smallest string greater than every string with
// `prefix`, or "" when there is none (prefix empty or all 0xff).
std::string PrefixSuccessor(absl::string_view prefix) {
  std::string s(prefix);
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

rocksdb::Slice ToSlice(absl::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}

// CheckEncryptionMode refuses to open an existing plaintext DB with a data key
// or an encrypted DB without one. Besides the clearer error, this keeps
// plaintext files away from RocksDB's EncryptedFileSystem, which asserts that
// every non-empty file is at least one encryption prefix long.
absl::Status CheckEncryptionMode(const std::string& path, bool encrypted) {
  std::ifstream current(path + "/CURRENT", std::ios::binary);
  if (!current) return absl::OkStatus();  // new DB
  std::string head(kEncryptionMagic.size(), '\0');
  current.read(head.data(), head.size());
  head.resize(current.gcount());
  bool has_magic = head == kEncryptionMagic;
  if (encrypted && !has_magic) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rocks store open (path ", path,
        "): existing DB is not encrypted at rest, but a data key was given"));
  }
  if (!encrypted && has_magic) {
    return absl::FailedPreconditionError(
        absl::StrCat("rocks store open (path ", path,
                     "): DB is encrypted at rest; a data key is required"));
  }
  return absl::OkStatus();
}

// Level-0 files per compaction into level 1 for a store with a memory
// budget (the shard's); see Open.
constexpr int kLevel0CompactionTrigger = 8;

class RocksStore : public Store {
 public:
  RocksStore(std::string path, const RocksOptions& options,
             std::unique_ptr<rocksdb::Env> env)
      : path_(std::move(path)),
        sync_(options.sync),
        memtable_budget_bytes_(options.memtable_budget_bytes),
        block_cache_bytes_(options.block_cache_bytes),
        max_total_wal_bytes_(options.max_total_wal_bytes),
        env_(std::move(env)) {}

  ~RocksStore() override {
    stats_.clear();  // no scrape may read the DB once it closes
    if (db_ == nullptr) return;
    for (rocksdb::ColumnFamilyHandle* h : handles_) {
      db_->DestroyColumnFamilyHandle(h);
    }
    db_->Close();
    db_.reset();
    // env_ is destroyed after the DB that uses it.
  }

  absl::Status Open(const std::vector<std::string>& wanted) {
    rocksdb::Options options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    if (env_ != nullptr) options.env = env_.get();
    options.IncreaseParallelism(2);
    // Bloom filters (10 bits/key, ~1% false positives) in every SST file, so
    // a Get for an absent key (an import's "is this device new?", a lookup of
    // an unknown device) usually reads no data block.
    rocksdb::BlockBasedTableOptions table;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    if (block_cache_bytes_ > 0) {
      table.block_cache = rocksdb::NewLRUCache(block_cache_bytes_);
      table.cache_index_and_filter_blocks = true;
      table.pin_l0_filter_and_index_blocks_in_cache = true;
      // Index and filter blocks in 4 KiB partitions under a small pinned
      // top-level index. A file's whole index and filter are ~2 % of its
      // data (short records, 64-character keys): at a million devices a
      // shard's no longer fit this small cache beside the data blocks,
      // and each miss read, decrypted and parsed a whole file's index
      // (~1 MiB for a 64 MiB file). Partitioned, a miss reads one 4 KiB
      // partition. Files written before are read as they are (each file
      // records its index type); compaction rewrites them partitioned.
      table.index_type =
          rocksdb::BlockBasedTableOptions::IndexType::kTwoLevelIndexSearch;
      table.partition_filters = true;
      table.metadata_block_size = 4096;
      table.cache_index_and_filter_blocks_with_high_priority = true;
      table.pin_top_level_index_and_filter = true;
    }
    options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    // Counters only (no timers): a few per-core atomic adds per operation.
    statistics_ = rocksdb::CreateDBStatistics();
    statistics_->set_stats_level(rocksdb::StatsLevel::kExceptTimers);
    options.statistics = statistics_;
    if (memtable_budget_bytes_ > 0) {
      options.write_buffer_manager =
          std::make_shared<rocksdb::WriteBufferManager>(memtable_budget_bytes_);
      options.write_buffer_size =
          std::max<size_t>(memtable_budget_bytes_ / 4, size_t{1} << 20);
      options.max_write_buffer_number = 2;
    }
    options.max_total_wal_size = max_total_wal_bytes_;
    if (memtable_budget_bytes_ > 0) {
      // Random keys (device ids): every level-0 file overlaps all of
      // level 1, so each level-0 compaction rewrites the whole of level 1,
      // which grows with the fleet. Merging 8 level-0 files at a time
      // instead of RocksDB's 4 halves that rewrite; a read checks up to 8
      // level-0 filters (pinned in the block cache). Writes slow down and
      // stop at 3x and 5x as many files (RocksDB: 20 and 36 for 4).
      options.level0_file_num_compaction_trigger = kLevel0CompactionTrigger;
      options.level0_slowdown_writes_trigger = 3 * kLevel0CompactionTrigger;
      options.level0_stop_writes_trigger = 5 * kLevel0CompactionTrigger;
    }

    // RocksDB requires every existing column family to be opened; open the
    // union of what is on disk and what was asked for.
    std::vector<std::string> existing;
    rocksdb::Status ls =
        rocksdb::DB::ListColumnFamilies(options, path_, &existing);
    std::set<std::string> names(existing.begin(), existing.end());
    names.insert(rocksdb::kDefaultColumnFamilyName);
    for (const std::string& cf : wanted) {
      if (cf.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "rocks store open (path ", path_, "): empty column family name"));
      }
      names.insert(cf);
    }
    (void)ls;  // A missing DB simply has no column families yet.

    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions(options));
    }
    rocksdb::DB* db = nullptr;
    rocksdb::Status s =
        rocksdb::DB::Open(options, path_, descriptors, &handles_, &db);
    if (!s.ok()) return FromRocks(s, "open", path_);
    db_.reset(db);
    std::set<std::string> wanted_set(wanted.begin(), wanted.end());
    for (rocksdb::ColumnFamilyHandle* h : handles_) {
      if (wanted_set.count(h->GetName())) cfs_[h->GetName()] = h;
    }
    ExportStatistics();
    return absl::OkStatus();
  }

  // ExportStatistics publishes RocksDB properties per column family as
  // gauges read at scrape time (sphere_store_*{db="<dir>/<name>",cf=...}).
  void ExportStatistics() {
    std::string db_label = path_;
    size_t slash = db_label.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      size_t prev = db_label.rfind('/', slash - 1);
      db_label = db_label.substr(prev == std::string::npos ? 0 : prev + 1);
    }
    const std::pair<const char*, const char*> kProperties[] = {
        {"sphere_store_estimated_keys", "rocksdb.estimate-num-keys"},
        {"sphere_store_live_sst_bytes", "rocksdb.live-sst-files-size"},
        {"sphere_store_memtable_bytes", "rocksdb.cur-size-all-mem-tables"},
        {"sphere_store_pending_compaction_bytes",
         "rocksdb.estimate-pending-compaction-bytes"},
    };
    // Compaction totals per column family (the "rocksdb.cfstats" map:
    // what `Compaction Stats` in the RocksDB LOG prints): the CPU spent
    // merging, bytes written, write amplification, stalls. These show what
    // grows with the fleet (issue 14).
    const std::pair<const char*, const char*> kCompaction[] = {
        {"sphere_store_compaction_cpu_seconds", "compaction.Sum.CompMergeCPU"},
        {"sphere_store_compaction_seconds", "compaction.Sum.CompSec"},
        {"sphere_store_compaction_write_gb", "compaction.Sum.WriteGB"},
        {"sphere_store_compaction_read_gb", "compaction.Sum.ReadGB"},
        {"sphere_store_write_amplification", "compaction.Sum.WriteAmp"},
        {"sphere_store_level0_files", "compaction.L0.NumFiles"},
        {"sphere_store_stall_count", "io_stalls.total_stop"},
        {"sphere_store_slowdown_count", "io_stalls.total_slowdown"},
    };
    for (const auto& [name, key] : kCompaction) {
      std::string field = key;
      stats_.push_back(metrics::RegisterGaugeCallback(
          name,
          absl::StrCat("RocksDB rocksdb.cfstats field ", key,
                       " per column family"),
          [this, field, db_label] {
            std::vector<metrics::Sample> out;
            for (rocksdb::ColumnFamilyHandle* h : handles_) {
              std::map<std::string, std::string> m;
              if (!db_->GetMapProperty(
                      h, rocksdb::DB::Properties::kCFStats, &m)) {
                continue;
              }
              auto it = m.find(field);
              double v = 0;
              if (it == m.end() || !absl::SimpleAtod(it->second, &v)) continue;
              out.push_back({{{"db", db_label}, {"cf", h->GetName()}}, v});
            }
            return out;
          }));
    }
    // Database-wide counters (RocksDB statistics): block cache misses by
    // block kind, filter hits, compaction and flush bytes, write stalls.
    if (statistics_ != nullptr) {
      stats_.push_back(metrics::RegisterGaugeCallback(
          "sphere_store_rocksdb_ticker",
          "RocksDB statistics tickers (counts since the store opened)",
          [this, db_label] {
            const std::pair<const char*, rocksdb::Tickers> kTickers[] = {
                {"block_cache_miss", rocksdb::BLOCK_CACHE_MISS},
                {"block_cache_hit", rocksdb::BLOCK_CACHE_HIT},
                {"block_cache_index_miss", rocksdb::BLOCK_CACHE_INDEX_MISS},
                {"block_cache_filter_miss", rocksdb::BLOCK_CACHE_FILTER_MISS},
                {"block_cache_data_miss", rocksdb::BLOCK_CACHE_DATA_MISS},
                {"block_cache_data_hit", rocksdb::BLOCK_CACHE_DATA_HIT},
                {"bloom_filter_useful", rocksdb::BLOOM_FILTER_USEFUL},
                {"compact_read_bytes", rocksdb::COMPACT_READ_BYTES},
                {"compact_write_bytes", rocksdb::COMPACT_WRITE_BYTES},
                {"flush_write_bytes", rocksdb::FLUSH_WRITE_BYTES},
                {"bytes_written", rocksdb::BYTES_WRITTEN},
                {"wal_synced", rocksdb::WAL_FILE_SYNCED},
                {"stall_micros", rocksdb::STALL_MICROS},
                {"bytes_read", rocksdb::BYTES_READ},
            };
            std::vector<metrics::Sample> out;
            for (const auto& [ticker, id] : kTickers) {
              out.push_back({{{"db", db_label}, {"ticker", ticker}},
                             static_cast<double>(
                                 statistics_->getTickerCount(id))});
            }
            return out;
          }));
    }
    for (const auto& [name, property] : kProperties) {
      std::string prop = property;
      stats_.push_back(metrics::RegisterGaugeCallback(
          name,
          absl::StrCat("RocksDB property ", property, " per column family"),
          [this, prop, db_label] {
            std::vector<metrics::Sample> out;
            for (rocksdb::ColumnFamilyHandle* h : handles_) {
              uint64_t v = 0;
              if (db_->GetIntProperty(h, prop, &v)) {
                out.push_back({{{"db", db_label}, {"cf", h->GetName()}},
                               static_cast<double>(v)});
              }
            }
            return out;
          }));
    }
  }

  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override {
    return GetAt(nullptr, cf, key);
  }

  absl::Status Write(const WriteBatch& batch) override {
    if (batch.empty()) return absl::OkStatus();
    // The ops go to RocksDB in (column family, key) order: each lands in its
    // column family's memtable skiplist, where an insert next to the
    // previous one reuses its search path (a group commit's and a claim
    // batch's keys are random device ids). The sort is stable, so ops on
    // one key keep their order and the batch means the same.
    std::vector<const WriteBatch::Op*> ordered;
    ordered.reserve(batch.size());
    for (const WriteBatch::Op& op : batch.ops()) ordered.push_back(&op);
    std::stable_sort(ordered.begin(), ordered.end(),
                     [](const WriteBatch::Op* a, const WriteBatch::Op* b) {
                       int c = a->cf.compare(b->cf);
                       return c != 0 ? c < 0 : a->key < b->key;
                     });
    rocksdb::WriteBatch wb;
    for (const WriteBatch::Op* op_ptr : ordered) {
      const WriteBatch::Op& op = *op_ptr;
      auto h = Handle(op.cf, "write");
      if (!h.ok()) return h.status();
      rocksdb::Status s = op.is_delete
                              ? wb.Delete(*h, ToSlice(op.key))
                              : wb.Put(*h, ToSlice(op.key), ToSlice(op.value));
      if (!s.ok()) return FromRocks(s, "write", path_, op.cf);
    }
    rocksdb::WriteOptions wo;
    wo.sync = sync_;
    return FromRocks(db_->Write(wo, &wb), "write", path_);
  }

  absl::Status Scan(absl::string_view cf, absl::string_view prefix,
                    const std::function<bool(absl::string_view key,
                                             absl::string_view value)>& fn,
                    absl::string_view start) override {
    return ScanAt(nullptr, cf, prefix, fn, start);
  }

  std::unique_ptr<Snapshot> NewSnapshot() override;

  // LastKey: one reverse seek (no scan of the prefix).
  absl::StatusOr<std::string> LastKey(absl::string_view cf,
                                      absl::string_view prefix) override {
    auto h = Handle(cf, "scan");
    if (!h.ok()) return h.status();
    rocksdb::ReadOptions ro;
    rocksdb::Slice lower(prefix.data(), prefix.size());
    ro.iterate_lower_bound = &lower;
    const std::string upper = PrefixSuccessor(prefix);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, *h));
    if (upper.empty()) {
      it->SeekToLast();
    } else {
      it->SeekForPrev(ToSlice(upper));
      if (it->Valid() && it->key() == rocksdb::Slice(upper)) it->Prev();
    }
    if (!it->status().ok()) return FromRocks(it->status(), "scan", path_, cf);
    if (!it->Valid()) return absl::NotFoundError("no key with this prefix");
    rocksdb::Slice k = it->key();
    absl::string_view key(k.data(), k.size());
    if (!absl::StartsWith(key, prefix)) {
      return absl::NotFoundError("no key with this prefix");
    }
    return std::string(key);
  }

  // GetAt / ScanAt read at `snapshot` (nullptr: the latest state).
  absl::StatusOr<std::string> GetAt(const rocksdb::Snapshot* snapshot,
                                    absl::string_view cf,
                                    absl::string_view key) {
    auto h = Handle(cf, "get");
    if (!h.ok()) return h.status();
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot;
    std::string value;
    rocksdb::Status s = db_->Get(ro, *h, ToSlice(key), &value);
    if (!s.ok()) return FromRocks(s, "get", path_, cf);
    return value;
  }

  absl::Status ScanAt(const rocksdb::Snapshot* snapshot, absl::string_view cf,
                      absl::string_view prefix,
                      const std::function<bool(absl::string_view key,
                                               absl::string_view value)>& fn,
                      absl::string_view start) {
    auto h = Handle(cf, "scan");
    if (!h.ok()) return h.status();
    if (!start.empty() && !absl::StartsWith(start, prefix)) {
      return absl::InvalidArgumentError(
          absl::StrCat("rocks store scan (path ", path_, ", cf '", cf,
                       "'): start does not have the scan prefix"));
    }
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot;
    std::string upper = PrefixSuccessor(prefix);
    rocksdb::Slice upper_slice(upper);
    if (!upper.empty()) ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, *h));
    for (it->Seek(ToSlice(start.empty() ? prefix : start)); it->Valid();
         it->Next()) {
      rocksdb::Slice k = it->key();
      absl::string_view key(k.data(), k.size());
      if (!absl::StartsWith(key, prefix)) break;
      rocksdb::Slice v = it->value();
      if (!fn(key, absl::string_view(v.data(), v.size()))) break;
    }
    return FromRocks(it->status(), "scan", path_, cf);
  }

  rocksdb::DB* db() { return db_.get(); }

  absl::Status CompactRange(absl::string_view cf, absl::string_view begin,
                            absl::string_view end) override {
    auto h = Handle(cf, "compact");
    if (!h.ok()) return h.status();
    rocksdb::Slice b = ToSlice(begin), e = ToSlice(end);
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction =
        rocksdb::BottommostLevelCompaction::kForceOptimized;
    // Flush first so deletes still in the memtable reach the compaction.
    rocksdb::FlushOptions fo;
    fo.wait = true;
    rocksdb::Status fs = db_->Flush(fo, *h);
    if (!fs.ok()) return FromRocks(fs, "compact", path_, cf);
    return FromRocks(db_->CompactRange(co, *h, begin.empty() ? nullptr : &b,
                                       end.empty() ? nullptr : &e),
                     "compact", path_, cf);
  }

  absl::Status Flush() override {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    return FromRocks(db_->Flush(fo, handles_), "flush", path_);
  }

 private:
  absl::StatusOr<rocksdb::ColumnFamilyHandle*> Handle(absl::string_view cf,
                                                      absl::string_view op) {
    auto it = cfs_.find(cf);
    if (it == cfs_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("rocks store ", op, " (path ", path_,
                       "): unknown column family '", cf, "'"));
    }
    return it->second;
  }

  const std::string path_;
  const bool sync_;
  const size_t memtable_budget_bytes_;
  const size_t block_cache_bytes_;
  const size_t max_total_wal_bytes_;
  std::unique_ptr<rocksdb::Env> env_;  // outlives db_ (declared before it)
  std::shared_ptr<rocksdb::Statistics> statistics_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<rocksdb::DB> db_;
  // Immutable after Open, so lookups need no lock.
  absl::flat_hash_map<std::string, rocksdb::ColumnFamilyHandle*> cfs_;
  std::vector<std::unique_ptr<metrics::GaugeCallbackHandle>> stats_;
};

// RocksSnapshot pins a RocksDB snapshot until destroyed.
class RocksSnapshot : public Snapshot {
 public:
  explicit RocksSnapshot(RocksStore* store)
      : store_(store), snapshot_(store->db()->GetSnapshot()) {}
  ~RocksSnapshot() override { store_->db()->ReleaseSnapshot(snapshot_); }

  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override {
    return store_->GetAt(snapshot_, cf, key);
  }
  absl::Status Scan(absl::string_view cf, absl::string_view prefix,
                    const std::function<bool(absl::string_view key,
                                             absl::string_view value)>& fn,
                    absl::string_view start) override {
    return store_->ScanAt(snapshot_, cf, prefix, fn, start);
  }

 private:
  RocksStore* const store_;
  const rocksdb::Snapshot* const snapshot_;
};

std::unique_ptr<Snapshot> RocksStore::NewSnapshot() {
  return std::make_unique<RocksSnapshot>(this);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenRocksStore(
    const std::string& path, const std::vector<std::string>& column_families,
    const RocksOptions& options) {
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("rocks store open (path ", path,
                     "): cannot create parent directory: ", ec.message()));
  }
  absl::Status mode = CheckEncryptionMode(path, !options.data_key.empty());
  if (!mode.ok()) return mode;
  std::unique_ptr<rocksdb::Env> env;
  if (!options.data_key.empty()) {
    auto provider = NewAesCtrEncryptionProvider(options.data_key);
    if (!provider.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rocks store open (path ", path, "): ", provider.status().message()));
    }
    env.reset(rocksdb::NewEncryptedEnv(rocksdb::Env::Default(), *provider));
    if (env == nullptr) {
      return absl::InternalError(absl::StrCat(
          "rocks store open (path ", path, "): cannot create encrypted env"));
    }
  }
  auto store = std::make_unique<RocksStore>(path, options, std::move(env));
  absl::Status s = store->Open(column_families);
  if (!s.ok()) return s;
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace sphere::store
