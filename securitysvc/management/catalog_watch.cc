// Catalog: the change log as seen by watchers (OpenWatch, WatchStream):
// snapshot, replay from the log, then live events.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_access.h"
#include "securitysvc/management/catalog_internal.h"

namespace sphere::management {

using namespace catalog_internal;  // NOLINT(build/namespaces): own layout

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
  if (auto s = Authorize(caller, Op::kWatch); !s.ok()) return s;
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
  StripSecrets(caller_, &event);
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

}  // namespace sphere::management
