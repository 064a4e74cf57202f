// AttestationServiceImpl: the thin gRPC adapter over Attestor. It checks
// shard ownership (redirecting otherwise), calls the core and maps
// absl::Status to gRPC status. Callback API; no per-call threads.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_
#define SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_

#include "protos/attestation.grpc.pb.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/sharding/router.h"

namespace sphere::attestation {

class AttestationServiceImpl final
    : public v1::AttestationService::CallbackService {
 public:
  AttestationServiceImpl(Attestor* attestor, const sharding::ShardRouter* router)
      : attestor_(attestor), router_(router) {}

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
};

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_
