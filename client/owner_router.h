// OwnerRouter decides which Security Service shard a device-side call goes
// to, and fails over when that shard is unreachable.
//
// Inputs: the ring built from cluster.json's shard list (client/shard_ring.h),
// the redirects shards answer (each shard redirects by ITS live ring, which
// follows shard leases), and what the caller saw of each address (reachable
// or not). The rules:
//  * Route(device) = the learned owner when one is cached, not expired and
//    not down; else the first shard in ring order (ShardRing::Successors:
//    the ring owner, then the next distinct shard, then the others) that is
//    not down. When every candidate is down, the ring owner is tried anyway
//    (a probe: nothing better is known).
//  * Learn(device, address): a redirect names the owner; it is cached for
//    Options::owner_ttl, so when the live ring changes again (a dead shard
//    comes back, a new one joins) the client asks the ring again and
//    follows the next redirect. At most Options::max_cached_owners entries;
//    when full, expired entries go first, then an arbitrary one.
//  * ReportUnreachable(address): the caller saw a transport failure (no
//    connection, or a deadline while not connected). After
//    Options::failures_before_failover consecutive ones the address is
//    "down" for Options::down_for: Route skips it. The caller's own
//    jittered backoff (client/backoff.h) spaces the attempts that count, so
//    one blip does not move traffic. Once down, the count stays: the next
//    failure after down_for (a probe that failed) marks it down again at
//    once. ReportReachable(address) (any answer from the server, refusals
//    included) clears it.
//  * Refusals never count: FAILED_PRECONDITION, PERMISSION_DENIED,
//    NOT_FOUND ... are answers from a live shard (IsTransportFailure).
//
// Bounded: at most max_cached_owners device entries and max_addresses
// address-health entries (addresses beyond that are routed but not
// tracked). Time comes from the injected Clock.
//
// Thread-safety: all methods are thread-safe (one internal mutex, never held
// while calling out).
//
// Example:
//   OwnerRouter router(ShardMapFromEndpoints(config.shards), {},
//   Clock::Real()); std::string to = router.Route(device_id, {});
//   ... on a transport failure:
//   if (router.ReportUnreachable(to)) to = router.Route(device_id, {to});
#ifndef SPHERE_CLIENT_OWNER_ROUTER_H_
#define SPHERE_CLIENT_OWNER_ROUTER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/shard_ring.h"
#include "common/util/clock.h"
#include "protos/management.pb.h"

namespace sphere::client {

// IsTransportFailure: `code` from an RPC that did not reach a serving shard.
// UNAVAILABLE and DEADLINE_EXCEEDED count only when the channel was not
// connected (`channel_ready` false): a connected shard that answers
// UNAVAILABLE ("catalog stale") or is slow is alive, and failing over from
// it would only be redirected back. Every other code is an answer.
bool IsTransportFailure(absl::StatusCode code, bool channel_ready);

class OwnerRouter {
 public:
  struct Options {
    size_t max_cached_owners = 1 << 16;
    absl::Duration owner_ttl = absl::Minutes(5);
    int failures_before_failover = 2;
    absl::Duration down_for = absl::Seconds(30);
    size_t max_addresses = 64;
    // Shards a call may fail over to after its first target (so at most
    // 1 + max_failovers shards per call).
    int max_failovers = 2;
  };
  struct Stats {
    uint64_t failovers = 0;    // routes that skipped a down shard
    uint64_t marked_down = 0;  // times an address was marked down
    size_t cached_owners = 0;
    size_t down_addresses = 0;  // down now
  };

  OwnerRouter(const v1::ShardMap& ring_map, Options options,
              const Clock* clock);

  // Route returns the address for `device_id`'s next call, skipping the
  // addresses in `exclude` (those this call already found unreachable); ""
  // when the ring is empty or every candidate is excluded.
  std::string Route(absl::string_view device_id,
                    const std::vector<std::string>& exclude);
  void Learn(absl::string_view device_id, absl::string_view address);
  // Forget drops `device_id`'s learned owner (e.g. it was unreachable).
  void Forget(absl::string_view device_id);
  // ReportUnreachable returns true when `address` is down now (the caller
  // may route the same call elsewhere).
  bool ReportUnreachable(absl::string_view address);
  void ReportReachable(absl::string_view address);
  bool IsDown(absl::string_view address) const;

  const Options& options() const { return options_; }
  const ShardRing& ring() const { return ring_; }
  Stats stats() const;

 private:
  struct Learned {
    std::string address;
    absl::Time expires;
  };
  struct Health {
    int consecutive_failures = 0;
    absl::Time down_until = absl::InfinitePast();
  };
  bool DownLocked(absl::string_view address, absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Options options_;
  const ShardRing ring_;
  const Clock* const clock_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Learned> owners_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Health> health_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  // health_.size(), readable without mu_: ReportReachable (every answered
  // call) costs one atomic load while no shard has failed.
  std::atomic<size_t> tracked_{0};
};

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_OWNER_ROUTER_H_
