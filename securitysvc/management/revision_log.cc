#include "securitysvc/management/revision_log.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sphere::management {
namespace {

constexpr char kRevisionKey[] = "kv/revision";

std::string ModKey(absl::string_view cf, absl::string_view key) {
  return absl::StrCat("kv/mod/", cf, "/", key);
}

absl::StatusOr<int64_t> ParseRevision(const absl::StatusOr<std::string>& v,
                                      absl::string_view what) {
  if (absl::IsNotFound(v.status())) return 0;
  if (!v.ok()) return v.status();
  int64_t r = 0;
  if (!absl::SimpleAtoi(*v, &r) || r < 0) {
    return absl::DataLossError(
        absl::StrFormat("revision log %s is corrupt: \"%s\"", what, *v));
  }
  return r;
}

class EmbeddedSnapshot final : public RevisionLog::Snapshot {
 public:
  EmbeddedSnapshot(std::unique_ptr<store::Snapshot> snapshot, int64_t revision)
      : snapshot_(std::move(snapshot)), revision_(revision) {}
  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override {
    return snapshot_->Get(cf, key);
  }
  absl::Status Scan(
      absl::string_view cf, absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn,
      absl::string_view start) override {
    return snapshot_->Scan(cf, prefix, fn, start);
  }
  int64_t revision() const override { return revision_; }

 private:
  std::unique_ptr<store::Snapshot> snapshot_;
  const int64_t revision_;
};

}  // namespace

class EmbeddedRevisionLog::WatcherImpl final : public RevisionLog::Watcher {
 public:
  WatcherImpl(EmbeddedRevisionLog* log, WatchCallbacks callbacks)
      : log_(log), callbacks_(std::move(callbacks)) {}
  ~WatcherImpl() override {
    absl::MutexLock lock(&log_->mu_);
    auto& w = log_->watchers_;
    w.erase(std::remove(w.begin(), w.end(), this), w.end());
  }
  void Deliver(int64_t revision, const std::vector<Change>& changes) {
    if (callbacks_.on_changes) callbacks_.on_changes(revision, changes);
  }

 private:
  EmbeddedRevisionLog* const log_;
  const WatchCallbacks callbacks_;
};

EmbeddedRevisionLog::EmbeddedRevisionLog(store::Store* store, Options options)
    : store_(store), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<EmbeddedRevisionLog>> EmbeddedRevisionLog::Open(
    store::Store* store, Options options) {
  std::unique_ptr<EmbeddedRevisionLog> log(
      new EmbeddedRevisionLog(store, std::move(options)));
  absl::StatusOr<int64_t> r = ParseRevision(
      store->Get(log->options_.meta_cf, kRevisionKey), "revision");
  if (!r.ok()) return r.status();
  absl::MutexLock lock(&log->mu_);
  log->revision_ = *r;
  return log;
}

bool EmbeddedRevisionLog::Versioned(absl::string_view cf) const {
  const auto& v = options_.versioned_column_families;
  return std::find(v.begin(), v.end(), cf) != v.end();
}

absl::StatusOr<std::string> EmbeddedRevisionLog::Get(absl::string_view cf,
                                                     absl::string_view key) {
  return store_->Get(cf, key);
}

absl::Status EmbeddedRevisionLog::Scan(
    absl::string_view cf, absl::string_view prefix,
    const std::function<bool(absl::string_view, absl::string_view)>& fn,
    absl::string_view start) {
  return store_->Scan(cf, prefix, fn, start);
}

absl::StatusOr<int64_t> EmbeddedRevisionLog::ModRevisionLocked(
    absl::string_view cf, absl::string_view key) {
  if (Versioned(cf)) {
    return ParseRevision(store_->Get(options_.meta_cf, ModKey(cf, key)),
                         "mod revision");
  }
  // Unversioned keys: only presence is known. A present key reports the
  // current revision, so a Compare may test absence and nothing else.
  absl::StatusOr<std::string> v = store_->Get(cf, key);
  if (absl::IsNotFound(v.status())) return 0;
  if (!v.ok()) return v.status();
  return revision_;
}

absl::StatusOr<RevisionLog::KeyInfo> EmbeddedRevisionLog::Stat(
    absl::string_view cf, absl::string_view key) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<int64_t> mod = ModRevisionLocked(cf, key);
  if (!mod.ok()) return mod.status();
  KeyInfo info;
  info.mod_revision = *mod;
  info.revision = revision_;
  absl::StatusOr<std::string> v = store_->Get(cf, key);
  if (v.ok()) {
    info.value = *std::move(v);
  } else if (!absl::IsNotFound(v.status())) {
    return v.status();
  }
  return info;
}

absl::StatusOr<RevisionLog::TxnResult> EmbeddedRevisionLog::Txn(
    const std::vector<Compare>& compares, const store::WriteBatch& ops) {
  absl::MutexLock lock(&mu_);
  for (const Compare& c : compares) {
    if (c.mod_revision != 0 && !Versioned(c.cf)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "the embedded revision log compares mod revisions of versioned "
          "column families only; \"%s\" supports only absence (0)",
          c.cf));
    }
    absl::StatusOr<int64_t> mod = ModRevisionLocked(c.cf, c.key);
    if (!mod.ok()) return mod.status();
    const bool holds = c.mod_revision == 0 ? *mod == 0 : *mod == c.mod_revision;
    if (!holds) return TxnResult{false, revision_};
  }
  const int64_t next = revision_ + 1;
  store::WriteBatch batch = ops;
  for (const store::WriteBatch::Op& op : ops.ops()) {
    if (!Versioned(op.cf)) continue;
    if (op.is_delete) {
      batch.Delete(options_.meta_cf, ModKey(op.cf, op.key));
    } else {
      batch.Put(options_.meta_cf, ModKey(op.cf, op.key), absl::StrCat(next));
    }
  }
  batch.Put(options_.meta_cf, kRevisionKey, absl::StrCat(next));
  if (absl::Status s = store_->Write(batch); !s.ok()) return s;
  revision_ = next;
  if (!watchers_.empty()) {
    std::vector<Change> changes;
    changes.reserve(ops.ops().size());
    for (const store::WriteBatch::Op& op : ops.ops()) {
      changes.push_back({op.is_delete, op.cf, op.key, op.value});
    }
    for (WatcherImpl* w : watchers_) w->Deliver(next, changes);
  }
  return TxnResult{true, next};
}

absl::StatusOr<std::unique_ptr<RevisionLog::Snapshot>>
EmbeddedRevisionLog::NewSnapshot() {
  absl::MutexLock lock(&mu_);  // no Txn between the snapshot and revision_
  return std::unique_ptr<Snapshot>(
      new EmbeddedSnapshot(store_->NewSnapshot(), revision_));
}

absl::StatusOr<std::unique_ptr<RevisionLog::Watcher>>
EmbeddedRevisionLog::Watch(int64_t start_revision, WatchCallbacks callbacks) {
  absl::MutexLock lock(&mu_);
  if (start_revision <= revision_) {
    return absl::OutOfRangeError(absl::StrFormat(
        "the embedded revision log keeps no history: watch from revision %d "
        "or later (the current revision + 1), after reading a snapshot",
        revision_ + 1));
  }
  auto w = std::make_unique<WatcherImpl>(this, std::move(callbacks));
  watchers_.push_back(w.get());
  return std::unique_ptr<Watcher>(std::move(w));
}

absl::Status EmbeddedRevisionLog::Compact(int64_t revision) {
  absl::MutexLock lock(&mu_);
  if (revision < 1 || revision > revision_ + 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "cannot compact to revision %d; it must be between 1 and %d", revision,
        revision_ + 1));
  }
  return absl::OkStatus();  // no history is kept
}

absl::StatusOr<int64_t> EmbeddedRevisionLog::Revision() {
  absl::MutexLock lock(&mu_);
  return revision_;
}

}  // namespace sphere::management
