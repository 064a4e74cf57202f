#include "common/util/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"

namespace sphere {

RateLimiter::RateLimiter(const Clock* clock, Options options)
    : clock_(clock),
      options_(options),
      max_keys_per_shard_(std::max<size_t>(1, options.max_keys / kShards)) {}

std::string RateLimiter::NormalizeKey(absl::string_view key) const {
  if (key.size() <= options_.max_key_bytes) return std::string(key);
  // Callers should pass short identities; a long one is folded so the
  // limiter's memory stays bounded by max_keys * max_key_bytes.
  std::string folded(key.substr(0, options_.max_key_bytes / 2));
  absl::StrAppend(&folded, "#", absl::Hash<absl::string_view>()(key), ":",
                  key.size());
  return folded;
}

RateLimiter::Shard& RateLimiter::ShardFor(absl::string_view key) const {
  return shards_[absl::Hash<absl::string_view>()(key) % kShards];
}

double RateLimiter::Refilled(const Bucket& b, absl::Time now) const {
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - b.updated));
  return std::min(options_.burst,
                  b.tokens + elapsed * options_.rate_per_second);
}

void RateLimiter::DropFull(Shard& shard, absl::Time now) {
  // Full buckets carry no state: dropping them changes no answer.
  for (auto it = shard.buckets.begin(); it != shard.buckets.end();) {
    auto cur = it++;
    if (Refilled(cur->second, now) >= options_.burst) shard.buckets.erase(cur);
  }
  // Erasing keeps the table's capacity: give it back when mostly empty.
  if (shard.buckets.capacity() > 4 * shard.buckets.size() + kSweepMin) {
    shard.buckets.rehash(0);
  }
  shard.sweep_at = std::max(kSweepMin, 2 * shard.buckets.size());
}

void RateLimiter::MakeRoom(Shard& shard, absl::Time now) {
  DropFull(shard, now);
  if (shard.buckets.size() < max_keys_per_shard_) return;
  auto victim = shard.buckets.begin();
  for (auto it = shard.buckets.begin(); it != shard.buckets.end(); ++it) {
    if (it->second.last_use < victim->second.last_use) victim = it;
  }
  shard.buckets.erase(victim);
}

bool RateLimiter::TryAcquire(absl::string_view raw_key, double cost) {
  if (cost > options_.burst || cost < 0 || std::isnan(cost)) return false;
  const std::string key = NormalizeKey(raw_key);
  Shard& shard = ShardFor(key);
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&shard.mu);
  auto it = shard.buckets.find(key);
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= max_keys_per_shard_) {
      MakeRoom(shard, now);
    } else if (shard.buckets.size() >= shard.sweep_at) {
      DropFull(shard, now);
    }
    it = shard.buckets.emplace(key, Bucket{options_.burst, now, 0}).first;
  }
  Bucket& b = it->second;
  b.tokens = Refilled(b, now);
  b.updated = now;
  b.last_use = ++shard.uses;
  if (b.tokens < cost) return false;
  b.tokens -= cost;
  return true;
}

absl::Duration RateLimiter::RetryAfter(absl::string_view raw_key,
                                       double cost) const {
  if (cost > options_.burst) return absl::InfiniteDuration();
  const std::string key = NormalizeKey(raw_key);
  Shard& shard = ShardFor(key);
  absl::MutexLock l(&shard.mu);
  auto it = shard.buckets.find(key);
  if (it == shard.buckets.end()) return absl::ZeroDuration();
  const double have = Refilled(it->second, clock_->Now());
  if (have >= cost) return absl::ZeroDuration();
  if (options_.rate_per_second <= 0) return absl::InfiniteDuration();
  return absl::Seconds((cost - have) / options_.rate_per_second);
}

absl::Status RateLimiter::Acquire(absl::string_view key, absl::string_view what,
                                  double cost) {
  if (TryAcquire(key, cost)) return absl::OkStatus();
  if (cost > options_.burst) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this ", what,
                     " request is larger than one caller may make at once "
                     "(cost ",
                     cost, " > burst ", options_.burst, "); split it up"));
  }
  const absl::Duration wait = RetryAfter(key, cost);
  return absl::ResourceExhaustedError(absl::StrCat(
      "too many ", what, " requests from this caller (limit ",
      options_.rate_per_second, "/s, burst ", options_.burst, "); retry in ",
      absl::ToInt64Milliseconds(absl::Ceil(wait, absl::Milliseconds(1))),
      " ms"));
}

size_t RateLimiter::Size() const {
  size_t n = 0;
  for (auto& shard : shards_) {
    absl::MutexLock l(&shard.mu);
    n += shard.buckets.size();
  }
  return n;
}

}  // namespace sphere
