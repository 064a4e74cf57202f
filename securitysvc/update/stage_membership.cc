#include "securitysvc/update/stage_membership.h"

#include "securitysvc/update/group_metadata.h"

namespace sphere::update {

StageMembership::StageMembership(const catalog::CatalogView* catalog,
                                 const sharding::ShardRouter* router,
                                 const Clock* clock, Options options)
    : catalog_(catalog), router_(router), clock_(clock), options_(options) {}

uint64_t StageMembership::Count(const std::string& group_id, uint32_t percent) {
  const absl::Time now = clock_->Now();
  const auto key = std::make_pair(group_id, percent);
  {
    absl::MutexLock l(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && now - it->second.at < options_.refresh) {
      return it->second.count;
    }
  }
  const double fraction = percent >= 100 ? 1.0 : percent / 100.0;
  uint64_t n = 0;
  for (const std::string& id : catalog_->DevicesInGroup(group_id)) {
    if (!InRolloutStage(id, fraction)) continue;
    if (router_ != nullptr && router_->OtherOwner(id).has_value()) continue;
    ++n;
  }
  absl::MutexLock l(&mu_);
  if (cache_.size() >= options_.max_entries && !cache_.contains(key)) {
    auto oldest = cache_.begin();
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if (it->second.at < oldest->second.at) oldest = it;
    }
    cache_.erase(oldest);
  }
  cache_[key] = Entry{n, now};
  return n;
}

}  // namespace sphere::update
