// AttestationServiceImpl: the thin gRPC adapter over Attestor. Every call
// goes through the shard's DeviceCallHandler (caller identity from the
// credential, device id check, redirect to the owning shard, error mapping,
// metrics); this file only adds what is particular to attestation.
//
// GetChallenge never blocks a callback thread (issue 8 hole 4). In order
// (DeviceCallHandler::UnaryAsyncAtRevision):
//   1. the device helper's authentication;
//   2. revocation and existence (Attestor::MayChallenge), answered at once;
//   3. the per-device challenge rate (RESOURCE_EXHAUSTED when exceeded);
//   4. min_catalog_revision through the shard's RevisionGate: answered at
//      once when reached or far ahead (UNAVAILABLE "catalog at revision R,
//      requested M; retry"), otherwise parked off the callback thread within
//      bounds and answered when the catalog catches up or the wait ends;
//   5. the owner (redirect), by the shard map of that revision;
//   6. the nonce.
// (When the catalog already has the revision, the owner is checked first.)
//
// Callback API; no per-call threads. Thread-safe.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_
#define SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_

#include "common/rpc/arena_allocator.h"
#include "common/util/rate_limiter.h"
#include "protos/attestation.grpc.pb.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/shard_server/device_call.h"
#include "securitysvc/shard_server/revision_gate.h"

namespace sphere::attestation {

class AttestationServiceImpl final
    : public v1::AttestationService::CallbackService {
 public:
  // All pointers must outlive the service. `revision_gate` may be null
  // (then any min_catalog_revision ahead of the catalog is refused at
  // once); `challenge_limiter` may be null (no per-device limit).
  AttestationServiceImpl(Attestor* attestor,
                         const shard::DeviceCallHandler* device_calls,
                         const catalog::CatalogView* catalog,
                         shard::RevisionGate* revision_gate,
                         RateLimiter* challenge_limiter)
      : attestor_(attestor),
        device_calls_(device_calls),
        catalog_(catalog),
        revision_gate_(revision_gate),
        challenge_limiter_(challenge_limiter) {
    SetMessageAllocatorFor_GetChallenges(&challenges_allocator_);
    SetMessageAllocatorFor_AttestBatch(&attest_batch_allocator_);
  }

  grpc::ServerUnaryReactor* GetChallenge(
      grpc::CallbackServerContext* context,
      const v1::GetChallengeRequest* request,
      v1::GetChallengeResponse* response) override;
  grpc::ServerUnaryReactor* Attest(grpc::CallbackServerContext* context,
                                   const v1::AttestRequest* request,
                                   v1::AttestResponse* response) override;

  // Gateways' batch calls (see the proto): the caller is checked once, then
  // every item as its single call would be; AttestBatch finishes from the
  // record writer once the last item's record is durable.
  // 256 items: a full AttestBatch is ~0.3 MB of quotes in and ~0.7 MB of
  // certificates out, well below the shard's 1 MiB request and 8 MiB message
  // limits; fuller batches share the per-RPC cost (issue 14).
  static constexpr int kMaxBatch = 256;
  grpc::ServerUnaryReactor* GetChallenges(
      grpc::CallbackServerContext* context,
      const v1::GetChallengesRequest* request,
      v1::GetChallengesResponse* response) override;
  grpc::ServerUnaryReactor* AttestBatch(
      grpc::CallbackServerContext* context,
      const v1::AttestBatchRequest* request,
      v1::AttestBatchResponse* response) override;

 private:
  // AdmitChallenge: steps 2-3 of GetChallenge (`behind`: the catalog has
  // not reached the requested revision yet, so an unknown device may wait).
  absl::Status AdmitChallenge(const std::string& device_id, bool behind);
  absl::Status CheckBatch(const grpc::CallbackServerContext& context,
                          int items) const;
  // ChallengeOne: one item of GetChallenges; `ready` is whether the batch's
  // min_catalog_revision was reached (an item not redirected gets it when
  // not OK).
  absl::Status ChallengeOne(const std::string& device_id,
                            const absl::Status& ready,
                            v1::ChallengeResult* result);
  // AnswerChallenges fills one result per item (GetChallenges).
  void AnswerChallenges(const v1::GetChallengesRequest& request,
                        const absl::Status& ready,
                        v1::GetChallengesResponse* response);

  Attestor* const attestor_;
  const shard::DeviceCallHandler* const device_calls_;
  const catalog::CatalogView* const catalog_;
  shard::RevisionGate* const revision_gate_;
  RateLimiter* const challenge_limiter_;
  // The batch calls' requests (up to 256 device ids, or quotes of ~1 KB)
  // are parsed onto one arena per call (issue 14: allocator time).
  rpc::ArenaRequestAllocator<v1::GetChallengesRequest,
                             v1::GetChallengesResponse>
      challenges_allocator_;
  rpc::ArenaRequestAllocator<v1::AttestBatchRequest, v1::AttestBatchResponse>
      attest_batch_allocator_;
};

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_SERVICE_H_
