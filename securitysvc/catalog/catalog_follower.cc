#include "securitysvc/catalog/catalog_follower.h"

#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/util/log.h"
#include "common/util/metrics.h"

namespace sphere::catalog {
namespace {

metrics::CounterMetric* ApplyFailures() {
  static auto* c = metrics::Counter(
      "sphere_catalog_apply_failures_total",
      "Catalog watch events a shard could not apply (alarm: the shard's "
      "catalog is stuck at the revision before them)");
  return c;
}

metrics::CounterMetric* Reconnects() {
  static auto* c = metrics::Counter("sphere_catalog_watch_reconnects_total",
                                    "Catalog watch streams re-opened");
  return c;
}

}  // namespace

CatalogFollower::CatalogFollower(
    std::shared_ptr<grpc::Channel> management, InMemoryCatalog* catalog,
    std::function<void(const v1::ShardMap&)> on_shard_map,
    CatalogFollowerOptions options)
    : stub_(v1::ManagementService::NewStub(management)),
      catalog_(catalog),
      on_shard_map_(std::move(on_shard_map)),
      options_(std::move(options)),
      backoff_(options_.initial_backoff) {
  catalog_->RequireSnapshot();
}

CatalogFollower::~CatalogFollower() { Stop(); }

void CatalogFollower::Start() {
  thread_ = std::thread([this] { Run(); });
}

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

bool CatalogFollower::synced() const {
  absl::MutexLock l(&mu_);
  return synced_;
}

int64_t CatalogFollower::applied_revision() const {
  absl::MutexLock l(&mu_);
  return applied_;
}

uint64_t CatalogFollower::apply_failures() const {
  absl::MutexLock l(&mu_);
  return apply_failures_;
}

absl::Duration CatalogFollower::current_backoff() const {
  absl::MutexLock l(&mu_);
  return backoff_;
}

void CatalogFollower::Run() {
  absl::BitGen rng;
  // The revision through which the view is complete, and the highest it
  // ever reached: the backoff resets only on progress past the latter.
  int64_t complete = catalog_->revision();
  int64_t high_water = complete;
  while (true) {
    grpc::ClientContext ctx;
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      active_ = &ctx;
    }
    v1::WatchRequest req;
    // Until a snapshot completed: a full snapshot (start 0); then resume
    // after the last complete revision.
    req.set_start_revision(catalog_->synced() ? complete + 1 : 0);
    auto reader = stub_->Watch(&ctx, req);
    v1::WatchEvent ev;
    std::string failure;
    while (reader->Read(&ev)) {
      // Anything from management, a change or a progress notification,
      // shows the catalog source is reachable (bounds the staleness).
      catalog_->MarkHeard();
      if (ev.progress()) {  // no change to apply
        if (options_.on_progress) options_.on_progress(ev);
        continue;
      }
      if (absl::Status s = catalog_->Apply(ev); !s.ok()) {
        failure = absl::StrCat("cannot apply catalog event at revision ",
                               ev.revision(), ": ", s.message());
        ApplyFailures()->Increment();
        {
          absl::MutexLock l(&mu_);
          ++apply_failures_;
        }
        ctx.TryCancel();  // resume from this same event after a backoff
        break;
      }
      if (ev.has_shard_map() && on_shard_map_) on_shard_map_(ev.shard_map());
      if (!ev.snapshot() || ev.snapshot_end()) {
        complete = catalog_->revision();
        if (complete > high_water) {
          high_water = complete;
          absl::MutexLock l(&mu_);
          backoff_ = options_.initial_backoff;
        }
      }
      {
        absl::MutexLock l(&mu_);
        applied_ = catalog_->revision();
        synced_ = catalog_->synced();
      }
      if (options_.on_applied) options_.on_applied(ev);
    }
    // Drain the cancelled stream so Finish does not wait on it.
    if (!failure.empty()) {
      while (reader->Read(&ev)) {
      }
    }
    grpc::Status st = reader->Finish();
    catalog_->AbortSnapshot();  // a partial snapshot is never served
    absl::Duration wait;
    {
      absl::MutexLock l(&mu_);
      active_ = nullptr;
      if (stopping_) return;
      wait = backoff_ * absl::Uniform(rng, 0.5, 1.0);
      backoff_ = std::min(backoff_ * 2, options_.max_backoff);
    }
    Reconnects()->Increment();
    if (!failure.empty()) {
      log::Error(
          "catalog follower stuck; not advancing past the event",
          {{"error", failure},
           {"applied_revision", absl::StrCat(catalog_->revision())},
           {"retry_in_ms", absl::StrCat(absl::ToInt64Milliseconds(wait))}});
    } else {
      log::Warning(
          "catalog watch ended; reconnecting",
          {{"code", absl::StrCat(st.error_code())},
           {"error", st.error_message().substr(0, 256)},
           {"retry_in_ms", absl::StrCat(absl::ToInt64Milliseconds(wait))}});
    }
    absl::MutexLock l(&mu_);
    auto stop = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), wait);
  }
}

}  // namespace sphere::catalog
