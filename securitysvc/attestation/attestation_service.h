// AttestationServiceImpl: the thin gRPC adapter over Attestor. It checks
// shard ownership (redirecting otherwise), calls the core and maps
// absl::Status to gRPC status. Callback API; no per-call threads.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_
#define SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_

#include <functional>

#include "protos/attestation.grpc.pb.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/sharding/router.h"

namespace sphere::attestation {

class AttestationServiceImpl final
    : public v1::AttestationService::CallbackService {
 public:
  // WaitForRevision blocks until the shard's catalog reached a revision or
  // the timeout passed; returns whether it did.
  using WaitForRevision = std::function<bool(int64_t, absl::Duration)>;
  AttestationServiceImpl(Attestor* attestor, const sharding::ShardRouter* router,
                         WaitForRevision wait_for_revision = nullptr)
      : attestor_(attestor),
        router_(router),
        wait_for_revision_(std::move(wait_for_revision)) {}

  grpc::ServerUnaryReactor* GetChallenge(
      grpc::CallbackServerContext* context,
      const v1::GetChallengeRequest* request,
      v1::GetChallengeResponse* response) override;
  grpc::ServerUnaryReactor* Attest(grpc::CallbackServerContext* context,
                                   const v1::AttestRequest* request,
                                   v1::AttestResponse* response) override;

 private:
  Attestor* const attestor_;
  const sharding::ShardRouter* const router_;
  const WaitForRevision wait_for_revision_;
};

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_
