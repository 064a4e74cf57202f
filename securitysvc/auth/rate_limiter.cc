#include "securitysvc/auth/rate_limiter.h"

#include <algorithm>

#include "absl/hash/hash.h"

namespace sphere::auth {

KeyedRateLimiter::KeyedRateLimiter(Clock* clock, Options options)
    : clock_(clock),
      options_(options),
      per_shard_max_(std::max<size_t>(1, options.max_keys / kShards)) {}

KeyedRateLimiter::Shard& KeyedRateLimiter::ShardFor(
    absl::string_view key) const {
  return shards_[absl::Hash<absl::string_view>()(key) % kShards];
}

double KeyedRateLimiter::Refilled(const Bucket& b, absl::Time now) const {
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - b.updated));
  return std::min(options_.burst, b.tokens + elapsed * options_.per_second);
}

void KeyedRateLimiter::MakeRoom(Shard& s, absl::Time now) {
  // Idle buckets (full again) are indistinguishable from absent ones.
  if (s.buckets.size() >= per_shard_max_) {
    for (auto it = s.buckets.begin(); it != s.buckets.end();) {
      if (Refilled(it->second, now) >= options_.burst) {
        s.buckets.erase(it++);
      } else {
        ++it;
      }
    }
    std::deque<std::string> order;
    for (auto& k : s.order) {
      if (s.buckets.contains(k)) order.push_back(std::move(k));
    }
    s.order.swap(order);
  }
  while (s.buckets.size() >= per_shard_max_ && !s.order.empty()) {
    s.buckets.erase(s.order.front());
    s.order.pop_front();
  }
}

void KeyedRateLimiter::DropIdle(Shard& s, absl::Time now) {
  // Look at the two oldest entries: drop them when idle (bucket full again),
  // else rotate them to the back. Amortised O(1); keeps the table close to
  // the keys active in the last burst/per_second seconds.
  for (int i = 0; i < 2 && !s.order.empty(); ++i) {
    std::string key = std::move(s.order.front());
    s.order.pop_front();
    auto it = s.buckets.find(key);
    if (it == s.buckets.end()) continue;
    if (Refilled(it->second, now) >= options_.burst) {
      s.buckets.erase(it);
    } else {
      s.order.push_back(std::move(key));
    }
  }
}

bool KeyedRateLimiter::Allow(absl::string_view key) {
  const absl::Time now = clock_->Now();
  Shard& s = ShardFor(key);
  absl::MutexLock l(&s.mu);
  auto it = s.buckets.find(key);
  if (it == s.buckets.end()) {
    DropIdle(s, now);
    MakeRoom(s, now);
    it = s.buckets.emplace(std::string(key), Bucket{options_.burst, now}).first;
    s.order.emplace_back(key);
  }
  Bucket& b = it->second;
  b.tokens = Refilled(b, now);
  b.updated = now;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

absl::Duration KeyedRateLimiter::RetryAfter(absl::string_view key) const {
  const absl::Time now = clock_->Now();
  Shard& s = ShardFor(key);
  absl::MutexLock l(&s.mu);
  auto it = s.buckets.find(key);
  if (it == s.buckets.end()) return absl::ZeroDuration();
  const double tokens = Refilled(it->second, now);
  if (tokens >= 1.0) return absl::ZeroDuration();
  return absl::Seconds((1.0 - tokens) / options_.per_second);
}

size_t KeyedRateLimiter::key_count() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    n += s.buckets.size();
  }
  return n;
}

}  // namespace sphere::auth
