#include "securitysvc/update/package_cache.h"

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::update {

PackageCache::PackageCache(PackageSource* source, uint64_t byte_budget)
    : source_(source), byte_budget_(byte_budget) {}

std::shared_ptr<const std::string> PackageCache::Cached(
    absl::string_view image_id) {
  absl::MutexLock l(&mu_);
  auto it = entries_.find(image_id);
  if (it == entries_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.bytes;
}

std::optional<PackageInfo> PackageCache::CachedInfo(
    absl::string_view image_id) const {
  absl::MutexLock l(&mu_);
  auto it = infos_.find(image_id);
  if (it == infos_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::shared_ptr<const std::string>> PackageCache::Load(
    absl::string_view image_id) {
  if (auto hit = Cached(image_id)) return hit;
  // Concurrent misses of one image may both read the source; the second
  // insert finds the first and keeps it. Loads are rare (once per image
  // until evicted) and run on the update worker, so this stays simple.
  auto bytes = source_->Load(image_id);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() > kMaxPackageBytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stored package of image ", image_id, " is ", bytes->size(),
        " bytes, over the ", kMaxPackageBytes, "-byte limit"));
  }
  auto shared = std::make_shared<const std::string>(*std::move(bytes));
  PackageInfo info{shared->size(), crypto::Sha256(*shared)};
  absl::MutexLock l(&mu_);
  ++loads_;
  auto known = infos_.find(image_id);
  if (known != infos_.end() && (known->second.size != info.size ||
                                known->second.sha256 != info.sha256)) {
    // Signed metadata already names the first bytes; never serve others.
    return absl::DataLossError(
        absl::StrCat("stored package of image ", image_id,
                     " changed since it was first read; refusing to serve it"));
  }
  infos_[std::string(image_id)] = info;
  auto it = entries_.find(image_id);
  if (it != entries_.end()) return it->second.bytes;
  if (shared->size() <= byte_budget_)
    InsertLocked(std::string(image_id), shared);
  return shared;
}

void PackageCache::InsertLocked(const std::string& id,
                                std::shared_ptr<const std::string> bytes) {
  bytes_ += bytes->size();
  lru_.push_front(id);
  entries_[id] = Entry{std::move(bytes), lru_.begin()};
  while (bytes_ > byte_budget_ && !lru_.empty()) {
    auto victim = entries_.find(lru_.back());
    bytes_ -= victim->second.bytes->size();
    entries_.erase(victim);
    lru_.pop_back();
  }
}

uint64_t PackageCache::cached_bytes() const {
  absl::MutexLock l(&mu_);
  return bytes_;
}

uint64_t PackageCache::source_loads() const {
  absl::MutexLock l(&mu_);
  return loads_;
}

}  // namespace sphere::update
