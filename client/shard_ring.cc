#include "client/shard_ring.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::client {

uint64_t RingHash(absl::string_view key) {
  std::string d = crypto::Sha256(key);
  uint64_t h = 0;
  for (int i = 0; i < 8; ++i) h = (h << 8) | static_cast<uint8_t>(d[i]);
  return h;
}

ShardRing::ShardRing(const v1::ShardMap& map) : map_(map) {
  int vnodes = map.virtual_nodes() > 0 ? map.virtual_nodes() : 64;
  for (int s = 0; s < map.shards_size(); ++s) {
    for (int i = 0; i < vnodes; ++i) {
      points_.push_back(
          {RingHash(absl::StrCat(map.shards(s).id(), "#", i)), s});
    }
  }
  std::sort(points_.begin(), points_.end());
}

const v1::Shard& ShardRing::Owner(absl::string_view device_id) const {
  uint64_t h = RingHash(device_id);
  auto it =
      std::lower_bound(points_.begin(), points_.end(), std::make_pair(h, -1));
  if (it == points_.end()) it = points_.begin();
  return map_.shards(it->second);
}

std::vector<const v1::Shard*> ShardRing::Successors(absl::string_view device_id,
                                                    size_t max) const {
  std::vector<const v1::Shard*> out;
  if (points_.empty()) return out;
  max = std::min<size_t>(max, map_.shards_size());
  uint64_t h = RingHash(device_id);
  auto start =
      std::lower_bound(points_.begin(), points_.end(), std::make_pair(h, -1));
  std::vector<bool> seen(map_.shards_size(), false);
  size_t i = static_cast<size_t>(start - points_.begin());
  for (size_t n = 0; n < points_.size() && out.size() < max; ++n) {
    const int s = points_[(i + n) % points_.size()].second;
    if (seen[s]) continue;
    seen[s] = true;
    out.push_back(&map_.shards(s));
  }
  return out;
}

}  // namespace sphere::client
