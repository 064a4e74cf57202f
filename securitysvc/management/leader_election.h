// LeaderElection: "is this process the one that runs work that must run
// once?" (catalog compaction; rollout stage advance, written by the update
// service). With one management process (embedded catalog) it always is
// (SoleLeader). With several replicas on etcd, EtcdLeaderElection holds an
// etcd lease (TTL) kept alive by a thread and campaigns for a key with a
// create-if-absent Txn; the key is deleted by etcd when the lease expires
// (the leader died or lost etcd), and the next campaign wins it.
//
// Users poll IsLeader() before each run of once-only work, or register
// on_change to start and stop it. A leader that cannot renew its lease
// reports false from IsLeader() no later than the lease deadline, before
// etcd lets another replica win: at most one replica believes it leads at a
// time (clocks progressing at similar rates).
//
// Thread-safety: all methods may be called concurrently; on_change runs on
// the election's thread and must not block.
//
// Example (update service, rollout stage advance):
//   if (election->IsLeader()) planner.AdvanceStages();
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_LEADER_ELECTION_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_LEADER_ELECTION_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace sphere::management {

class LeaderElection {
 public:
  virtual ~LeaderElection() = default;
  virtual bool IsLeader() const = 0;
  // Identity of this candidate (for logs and status pages).
  virtual std::string id() const = 0;
};

// SoleLeader: the single management process of an embedded catalog.
class SoleLeader final : public LeaderElection {
 public:
  bool IsLeader() const override { return true; }
  std::string id() const override { return "sole"; }
};

struct EtcdElectionOptions {
  std::string key = "/sphere/leader/management";
  std::string candidate_id;  // this replica (e.g. host:port)
  absl::Duration ttl = absl::Seconds(5);
  absl::Duration rpc_timeout = absl::Seconds(2);
  std::function<void(bool leader)> on_change;
};

// EtcdLease grants an etcd lease and keeps it alive on its own thread until
// destroyed (then revokes it), or until a keep-alive fails past the TTL.
// Keys put with lease_id() disappear when it ends: shards register with one.
class EtcdLease {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdLease>> Grant(
      std::shared_ptr<grpc::Channel> channel, absl::Duration ttl,
      absl::Duration rpc_timeout = absl::Seconds(2));
  ~EtcdLease();
  int64_t lease_id() const { return id_; }
  // alive: the last keep-alive answered within the TTL.
  bool alive() const;

 private:
  EtcdLease(std::shared_ptr<grpc::Channel> channel, int64_t id,
            absl::Duration ttl, absl::Duration rpc_timeout);
  void Run();
  std::shared_ptr<grpc::Channel> channel_;
  const int64_t id_;
  const absl::Duration ttl_;
  const absl::Duration rpc_timeout_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time deadline_ ABSL_GUARDED_BY(mu_);  // lease valid until (local)
  std::thread thread_;
};

class EtcdLeaderElection final : public LeaderElection {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdLeaderElection>> Start(
      std::shared_ptr<grpc::Channel> channel, EtcdElectionOptions options);
  ~EtcdLeaderElection() override;
  bool IsLeader() const override;
  std::string id() const override { return options_.candidate_id; }

 private:
  EtcdLeaderElection(std::shared_ptr<grpc::Channel> channel,
                     EtcdElectionOptions options);
  void Run();
  // Campaign: one create-if-absent Txn with our lease; true when we hold it.
  bool Campaign(int64_t lease_id);
  void SetLeader(bool leader);

  std::shared_ptr<grpc::Channel> channel_;
  const EtcdElectionOptions options_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool leader_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<EtcdLease> lease_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_LEADER_ELECTION_H_
