#include "client/owner_router.h"

#include <algorithm>
#include <utility>

namespace sphere::client {

bool IsTransportFailure(absl::StatusCode code, bool channel_ready) {
  if (code != absl::StatusCode::kUnavailable &&
      code != absl::StatusCode::kDeadlineExceeded) {
    return false;
  }
  return !channel_ready;
}

OwnerRouter::OwnerRouter(const v1::ShardMap& ring_map, Options options,
                         const Clock* clock)
    : options_(options), ring_(ring_map), clock_(clock) {}

bool OwnerRouter::DownLocked(absl::string_view address, absl::Time now) const {
  auto it = health_.find(address);
  return it != health_.end() && it->second.down_until > now;
}

std::string OwnerRouter::Route(absl::string_view device_id,
                               const std::vector<std::string>& exclude) {
  auto excluded = [&](absl::string_view a) {
    return std::find(exclude.begin(), exclude.end(), a) != exclude.end();
  };
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  if (auto it = owners_.find(device_id); it != owners_.end()) {
    if (it->second.expires <= now) {
      owners_.erase(it);
    } else if (!DownLocked(it->second.address, now) &&
               !excluded(it->second.address)) {
      return it->second.address;
    }
  }
  if (ring_.empty()) return "";
  const v1::Shard& owner = ring_.Owner(device_id);
  if (!DownLocked(owner.address(), now) && !excluded(owner.address())) {
    return owner.address();  // the common case: no ring walk
  }
  std::string probe;
  for (const v1::Shard* s :
       ring_.Successors(device_id, ring_.map().shards_size())) {
    if (excluded(s->address())) continue;
    if (!DownLocked(s->address(), now)) {
      ++stats_.failovers;
      return s->address();
    }
    if (probe.empty()) probe = s->address();
  }
  return probe;  // every candidate down: probe the first not excluded
}

void OwnerRouter::Learn(absl::string_view device_id,
                        absl::string_view address) {
  if (options_.max_cached_owners == 0) return;
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  auto it = owners_.find(device_id);
  if (it == owners_.end() && owners_.size() >= options_.max_cached_owners) {
    // An expired entry among the first few goes first; else the first one
    // (arbitrary). Bounded work per insertion.
    auto victim = owners_.begin();
    int looked = 0;
    for (auto e = owners_.begin(); e != owners_.end() && looked < 16;
         ++e, ++looked) {
      if (e->second.expires <= now) {
        victim = e;
        break;
      }
    }
    owners_.erase(victim);
  }
  Learned& entry = owners_[std::string(device_id)];
  entry.address = std::string(address);
  entry.expires = now + options_.owner_ttl;
}

void OwnerRouter::Forget(absl::string_view device_id) {
  absl::MutexLock l(&mu_);
  if (auto it = owners_.find(device_id); it != owners_.end()) owners_.erase(it);
}

bool OwnerRouter::ReportUnreachable(absl::string_view address) {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  auto it = health_.find(address);
  if (it == health_.end()) {
    if (health_.size() >= options_.max_addresses) return false;
    it = health_.emplace(std::string(address), Health()).first;
    tracked_.store(health_.size(), std::memory_order_relaxed);
  }
  Health& h = it->second;
  ++h.consecutive_failures;
  if (h.consecutive_failures >= options_.failures_before_failover) {
    if (h.down_until <= now) ++stats_.marked_down;
    h.down_until = now + options_.down_for;
    return true;
  }
  return false;
}

void OwnerRouter::ReportReachable(absl::string_view address) {
  if (tracked_.load(std::memory_order_relaxed) == 0) return;
  absl::MutexLock l(&mu_);
  if (auto it = health_.find(address); it != health_.end()) {
    health_.erase(it);
    tracked_.store(health_.size(), std::memory_order_relaxed);
  }
}

bool OwnerRouter::IsDown(absl::string_view address) const {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  return DownLocked(address, now);
}

OwnerRouter::Stats OwnerRouter::stats() const {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  Stats s = stats_;
  s.cached_owners = owners_.size();
  for (const auto& [address, h] : health_) {
    if (h.down_until > now) ++s.down_addresses;
  }
  return s;
}

}  // namespace sphere::client
