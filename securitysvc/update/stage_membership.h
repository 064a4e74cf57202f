// StageMembership: how many devices of a device group, owned by this shard,
// fall in a staged rollout's stage (InRolloutStage on the stage's percent).
// The "pending" count of a rollout (devices of the stage that have not
// reported) is this minus the devices that reported.
//
// Counting walks the group's devices in the catalog view (O(devices in the
// group), a SHA-256 and a ring lookup each), so results are cached per
// (group, percent) for Options::refresh on the injected clock; call Count
// off gRPC callback threads (the update worker does).
//
// Thread-safety: thread-safe.
#ifndef SPHERE_SECURITYSVC_UPDATE_STAGE_MEMBERSHIP_H_
#define SPHERE_SECURITYSVC_UPDATE_STAGE_MEMBERSHIP_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/util/clock.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/sharding/router.h"

namespace sphere::update {

class StageMembership {
 public:
  struct Options {
    // How long a count is reused before the group is walked again.
    absl::Duration refresh = absl::Seconds(10);
    // Cached (group, percent) entries at most (oldest dropped first).
    size_t max_entries = 1024;
  };
  // `router` may be null (the shard owns every device). Everything must
  // outlive this.
  StageMembership(const catalog::CatalogView* catalog,
                  const sharding::ShardRouter* router, const Clock* clock,
                  Options options);

  // Count: devices of `group_id` this shard owns that fall in the first
  // `percent` % of the group (100 = all of them).
  uint64_t Count(const std::string& group_id, uint32_t percent);

 private:
  struct Entry {
    uint64_t count = 0;
    absl::Time at;
  };
  const catalog::CatalogView* const catalog_;
  const sharding::ShardRouter* const router_;
  const Clock* const clock_;
  const Options options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::pair<std::string, uint32_t>, Entry> cache_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_STAGE_MEMBERSHIP_H_
