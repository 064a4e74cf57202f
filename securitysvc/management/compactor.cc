#include "securitysvc/management/compactor.h"

#include "absl/strings/str_cat.h"
#include "common/util/log.h"

namespace sphere::management {

Compactor::Compactor(Catalog* catalog, LeaderElection* election,
                     Options options)
    : catalog_(catalog), election_(election), options_(options) {
  if (options_.interval > absl::ZeroDuration()) {
    thread_ = std::thread([this] { Loop(); });
  }
}

Compactor::~Compactor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<int64_t> Compactor::RunOnce() {
  const int64_t compacted = catalog_->compacted_revision();
  if (!election_->IsLeader()) return compacted;
  const int64_t target = catalog_->revision() - options_.keep_revisions + 1;
  if (target <= compacted || target < 1) return compacted;
  if (absl::Status s = catalog_->Compact(target); !s.ok()) return s;
  log::Info("catalog compacted",
            {{"revision", absl::StrCat(target)}, {"leader", election_->id()}});
  return target;
}

void Compactor::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.interval);
      if (stopping_) return;
    }
    absl::StatusOr<int64_t> r = RunOnce();
    if (!r.ok()) {
      log::Warning("catalog compaction failed",
                   {{"error", r.status().ToString()}});
    }
  }
}

}  // namespace sphere::management
