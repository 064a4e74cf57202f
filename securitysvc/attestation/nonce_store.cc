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

absl::StatusOr<NonceStore::Challenge> NonceStore::Issue(
    absl::string_view device_id) {
  Challenge c;
  c.nonce = crypto::RandomBytes(32);
  absl::Time now = clock_->Now();
  c.expires = now + options_.ttl;
  Shard& shard = ShardFor(c.nonce);
  absl::MutexLock l(&shard.mu);
  size_t per_shard = options_.capacity / kShards + 1;
  if (shard.by_nonce.size() >= per_shard) {
    absl::erase_if(shard.by_nonce,
                   [now](const auto& kv) { return kv.second.expires < now; });
    if (shard.by_nonce.size() >= per_shard) {
      return absl::ResourceExhaustedError(
          "too many outstanding attestation challenges; retry with backoff");
    }
  }
  shard.by_nonce[c.nonce] = Entry{std::string(device_id), c.expires};
  return c;
}

absl::Status NonceStore::CheckLocked(Shard& shard, absl::string_view device_id,
                                     absl::string_view nonce, bool consume) {
  auto it = shard.by_nonce.find(nonce);
  if (it == shard.by_nonce.end()) {
    return absl::UnauthenticatedError(
        "unknown or already used nonce: request a fresh challenge with "
        "GetChallenge (nonces are single-use)");
  }
  if (it->second.device_id != device_id) {
    return absl::UnauthenticatedError(absl::StrCat(
        "nonce was issued to another device, not ", device_id));
  }
  if (clock_->Now() > it->second.expires) {
    shard.by_nonce.erase(it);
    return absl::UnauthenticatedError(
        "nonce expired (30 s time-to-live): request a fresh challenge");
  }
  if (consume) shard.by_nonce.erase(it);
  return absl::OkStatus();
}

absl::Status NonceStore::Check(absl::string_view device_id,
                               absl::string_view nonce) {
  Shard& shard = ShardFor(nonce);
  absl::MutexLock l(&shard.mu);
  return CheckLocked(shard, device_id, nonce, /*consume=*/false);
}

absl::Status NonceStore::Consume(absl::string_view device_id,
                                 absl::string_view nonce) {
  Shard& shard = ShardFor(nonce);
  absl::MutexLock l(&shard.mu);
  return CheckLocked(shard, device_id, nonce, /*consume=*/true);
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
