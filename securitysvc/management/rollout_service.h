// RolloutService: the thin gRPC adapter of v1::DeploymentRolloutService
// (protos/update.proto) over RolloutManager, served by management.
// Identity as ManagementService (IdentifyCaller). Each call is identified
// and its sizes checked on the callback thread, then run on one worker
// thread with a bounded queue (it may read counts from every shard, with a
// deadline per shard): no gRPC callback thread waits, and a full queue
// answers RESOURCE_EXHAUSTED.
//
// Thread-safety: safe for concurrent calls.
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_ROLLOUT_SERVICE_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_ROLLOUT_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/rpc.h"
#include "common/util/worker_pool.h"
#include "protos/update.grpc.pb.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/rollout_manager.h"

namespace sphere::management {

class RolloutService final
    : public v1::DeploymentRolloutService::CallbackService {
 public:
  RolloutService(RolloutManager* manager, std::string root_subject_line,
                 size_t max_queued = 64);
  ~RolloutService() override;

  grpc::ServerUnaryReactor* GetRolloutStatus(grpc::CallbackServerContext* ctx,
                                             const v1::RolloutRequest* req,
                                             v1::RolloutStatus* resp) override;
  grpc::ServerUnaryReactor* PauseRollout(grpc::CallbackServerContext* ctx,
                                         const v1::RolloutRequest* req,
                                         v1::RolloutStatus* resp) override;
  grpc::ServerUnaryReactor* ResumeRollout(grpc::CallbackServerContext* ctx,
                                          const v1::RolloutRequest* req,
                                          v1::RolloutStatus* resp) override;
  grpc::ServerUnaryReactor* AbortRollout(grpc::CallbackServerContext* ctx,
                                         const v1::RolloutRequest* req,
                                         v1::RolloutStatus* resp) override;

 private:
  // Run identifies the caller, then runs `op` (if any) and answers the
  // rollout's status, on the worker.
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* ctx,
                                const v1::RolloutRequest* req,
                                v1::RolloutStatus* resp,
                                std::function<absl::Status(const Caller&)> op);

  RolloutManager* const manager_;
  const std::string root_subject_line_;
  WorkerPool worker_;
};

// ShardDeploymentCounts: the counts of every shard in the catalog's shard
// map, read with UpdateAdminService.GetDeploymentCounts (a platform-operator
// client credential) and summed. Any shard that does not answer within
// `deadline` makes the whole read fail (UNAVAILABLE naming it): a rollout
// never halts or advances on partial counts.
class ShardDeploymentCounts : public DeploymentCountSource {
 public:
  ShardDeploymentCounts(Catalog* catalog, rpc::TlsFiles client_tls,
                        absl::Duration deadline = absl::Seconds(2));
  absl::StatusOr<v1::StageResultCounts> Counts(const v1::Deployment& deployment,
                                               uint32_t stage_percent) override;

 private:
  v1::UpdateAdminService::Stub* StubFor(const std::string& address);

  Catalog* const catalog_;
  const rpc::TlsFiles tls_;
  const absl::Duration deadline_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<v1::UpdateAdminService::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_ROLLOUT_SERVICE_H_
