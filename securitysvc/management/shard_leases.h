// ShardLeases: shard membership by lease. A shard re-registers with
// management every heartbeat (RegisterShard); each registration renews the
// shard's lease. The leading management replica (LeaderElection) sweeps:
// a shard in the shard map whose lease expired is removed from the map
// (Catalog::RemoveShard), so every shard's ring, and the redirects devices
// get, follow the new ring. A returning shard re-registers and rejoins.
//
// Device records do not move with the ring: a shard keeps per-device state
// only for devices it owns, and a device that lands on a new owner is
// rebuilt there from the catalog (which shards follow in full) and the
// device's next attestation (its quote carries everything the shard needs).
// See docs/etcd.md.
//
// Shards never hold etcd credentials: management keeps their leases.
//   - EtcdShardLeases: one etcd lease per shard (TTL), the key
//     "<prefix>shard_leases/<id>" bound to it, kept alive by each
//     registration through whichever replica receives it. etcd deletes the
//     key when the lease expires, wherever management runs.
//   - MemoryShardLeases: the embedded catalog's single process; renewals are
//     times on the injected Clock.
//
// Thread-safety: all methods may be called concurrently.
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_SHARD_LEASES_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_SHARD_LEASES_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/util/clock.h"
#include "grpcpp/grpcpp.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/leader_election.h"

namespace sphere::management {

class ShardLeases {
 public:
  virtual ~ShardLeases() = default;
  // Renew: the shard registered (heartbeat).
  virtual absl::Status Renew(const std::string& shard_id) = 0;
  // Live: false once the shard's lease expired (or it never had one and
  // `grace` has passed since this object started).
  virtual absl::StatusOr<bool> Live(const std::string& shard_id) = 0;
};

class MemoryShardLeases final : public ShardLeases {
 public:
  MemoryShardLeases(Clock* clock, absl::Duration ttl);
  absl::Status Renew(const std::string& shard_id) override;
  absl::StatusOr<bool> Live(const std::string& shard_id) override;

 private:
  Clock* const clock_;
  const absl::Duration ttl_;
  const absl::Time started_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> renewed_ ABSL_GUARDED_BY(mu_);
};

class EtcdShardLeases final : public ShardLeases {
 public:
  EtcdShardLeases(std::shared_ptr<grpc::Channel> channel, std::string prefix,
                  absl::Duration ttl, Clock* clock);
  absl::Status Renew(const std::string& shard_id) override;
  absl::StatusOr<bool> Live(const std::string& shard_id) override;

 private:
  std::string Key(const std::string& shard_id) const;
  std::shared_ptr<grpc::Channel> channel_;
  const std::string prefix_;
  const absl::Duration ttl_;
  Clock* const clock_;
  const absl::Time started_;
};

// ShardSweeper removes shards whose lease expired, on the leader only.
class ShardSweeper {
 public:
  ShardSweeper(Catalog* catalog, ShardLeases* leases, LeaderElection* election,
               absl::Duration interval);
  ~ShardSweeper();
  // SweepOnce returns the ids removed.
  absl::StatusOr<std::vector<std::string>> SweepOnce();

 private:
  void Loop();
  Catalog* const catalog_;
  ShardLeases* const leases_;
  LeaderElection* const election_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_SHARD_LEASES_H_
