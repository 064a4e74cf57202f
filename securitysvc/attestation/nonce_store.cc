#include "securitysvc/attestation/nonce_store.h"

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::attestation {

NonceStore::NonceStore(Clock* clock, Options options)
    : clock_(clock), options_(options) {}

NonceStore::Shard& NonceStore::ShardFor(absl::string_view nonce) {
  unsigned char b = nonce.empty() ? 0 : static_cast<unsigned char>(nonce[0]);
  return shards_[b % kShards];
}

void NonceStore::SweepExpired(absl::Time now) {
  {
    absl::MutexLock l(&sweep_mu_);
    if (now - last_sweep_ < absl::Seconds(1)) return;
    last_sweep_ = now;
  }
  for (Shard& shard : shards_) {
    absl::MutexLock l(&shard.mu);
    size_t erased = absl::erase_if(shard.by_nonce, [now](const auto& kv) {
      return kv.second.expires < now;
    });
    count_.fetch_sub(erased);
  }
}

absl::StatusOr<NonceStore::Challenge> NonceStore::Issue(
    absl::string_view device_id) {
  absl::Time now = clock_->Now();
  // Reserve a slot first so concurrent issuers cannot overshoot capacity.
  if (count_.fetch_add(1) >= options_.capacity) {
    count_.fetch_sub(1);
    SweepExpired(now);
    if (count_.fetch_add(1) >= options_.capacity) {
      count_.fetch_sub(1);
      return absl::ResourceExhaustedError(
          "too many outstanding attestation challenges; retry with backoff");
    }
  }
  Challenge c;
  c.nonce = crypto::RandomBytes(32);
  c.expires = now + options_.ttl;
  Shard& shard = ShardFor(c.nonce);
  absl::MutexLock l(&shard.mu);
  shard.by_nonce[c.nonce] = Entry{std::string(device_id), c.expires};
  return c;
}

absl::StatusOr<absl::Time> NonceStore::CheckLocked(Shard& shard,
                                                   absl::string_view device_id,
                                                   absl::string_view nonce,
                                                   bool consume) {
  auto it = shard.by_nonce.find(nonce);
  if (it == shard.by_nonce.end()) {
    return absl::UnauthenticatedError(
        "unknown or already used nonce: request a fresh challenge with "
        "GetChallenge (nonces are single-use)");
  }
  if (it->second.device_id != device_id) {
    return absl::UnauthenticatedError(
        absl::StrCat("nonce was issued to another device, not ", device_id));
  }
  if (clock_->Now() > it->second.expires) {
    shard.by_nonce.erase(it);
    count_.fetch_sub(1);
    return absl::UnauthenticatedError(
        absl::StrCat("nonce expired (", absl::FormatDuration(options_.ttl),
                     " time-to-live): request a fresh challenge"));
  }
  absl::Time expires = it->second.expires;
  if (consume) {
    shard.by_nonce.erase(it);
    count_.fetch_sub(1);
  }
  return expires;
}

absl::Status NonceStore::Check(absl::string_view device_id,
                               absl::string_view nonce) {
  Shard& shard = ShardFor(nonce);
  absl::MutexLock l(&shard.mu);
  return CheckLocked(shard, device_id, nonce, /*consume=*/false).status();
}

absl::StatusOr<absl::Time> NonceStore::Consume(absl::string_view device_id,
                                               absl::string_view nonce) {
  Shard& shard = ShardFor(nonce);
  absl::MutexLock l(&shard.mu);
  return CheckLocked(shard, device_id, nonce, /*consume=*/true);
}

void NonceStore::Restore(absl::string_view device_id, absl::string_view nonce,
                         absl::Time expires) {
  Shard& shard = ShardFor(nonce);
  absl::MutexLock l(&shard.mu);
  auto [it, inserted] = shard.by_nonce.try_emplace(
      std::string(nonce), Entry{std::string(device_id), expires});
  if (inserted) count_.fetch_add(1);
}

size_t NonceStore::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    absl::MutexLock l(&s.mu);
    n += s.by_nonce.size();
  }
  return n;
}

}  // namespace sphere::attestation
