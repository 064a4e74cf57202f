#include "securitysvc/catalog/catalog_follower.h"

#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace sphere::catalog {

CatalogFollower::CatalogFollower(
    std::shared_ptr<grpc::Channel> management, InMemoryCatalog* catalog,
    std::function<void(const v1::ShardMap&)> on_shard_map)
    : stub_(v1::ManagementService::NewStub(management)),
      catalog_(catalog),
      on_shard_map_(std::move(on_shard_map)) {}

CatalogFollower::~CatalogFollower() { Stop(); }

void CatalogFollower::Start() { thread_ = std::thread([this] { Run(); }); }

void CatalogFollower::Stop() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

bool CatalogFollower::WaitForRevision(int64_t revision,
                                      absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return applied_ >= revision || stopping_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  return applied_ >= revision;
}

bool CatalogFollower::WaitUntilSynced(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return synced_ || stopping_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return synced_;
}

void CatalogFollower::Run() {
  absl::Duration backoff = absl::Milliseconds(50);
  // The last revision through which the view is complete. Snapshot events
  // carry the snapshot's revision, so a stream that breaks mid-snapshot
  // must not resume from it (the rest of the snapshot would be lost).
  int64_t complete = catalog_->revision();
  while (true) {
    grpc::ClientContext ctx;
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      active_ = &ctx;
    }
    v1::WatchRequest req;
    // First connection: a full snapshot (start 0); afterwards resume.
    req.set_start_revision(complete == 0 ? 0 : complete + 1);
    auto reader = stub_->Watch(&ctx, req);
    v1::WatchEvent ev;
    bool in_snapshot = false;
    while (reader->Read(&ev)) {
      backoff = absl::Milliseconds(50);
      if (ev.snapshot()) in_snapshot = true;
      if (!ev.snapshot() || ev.snapshot_end()) complete = ev.revision();
      if (auto s = catalog_->Apply(ev); !s.ok()) {
        log::Error("cannot apply catalog event",
                   {{"revision", absl::StrCat(ev.revision())},
                    {"error", std::string(s.message())}});
      }
      if (ev.has_shard_map() && on_shard_map_) on_shard_map_(ev.shard_map());
      absl::MutexLock l(&mu_);
      if (ev.revision() > applied_) applied_ = ev.revision();
      if (ev.snapshot_end() || !in_snapshot) synced_ = true;
      if (ev.snapshot_end()) in_snapshot = false;
    }
    grpc::Status st = reader->Finish();
    {
      absl::MutexLock l(&mu_);
      active_ = nullptr;
      if (stopping_) return;
    }
    log::Warning("catalog watch ended; reconnecting",
                 {{"code", absl::StrCat(st.error_code())},
                  {"error", st.error_message()},
                  {"backoff_ms", absl::StrCat(absl::ToInt64Milliseconds(backoff))}});
    absl::MutexLock l(&mu_);
    auto stop = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), backoff);
    backoff = std::min(backoff * 2, absl::Seconds(5));
  }
}

}  // namespace sphere::catalog
