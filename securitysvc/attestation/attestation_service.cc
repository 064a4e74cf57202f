#include "securitysvc/attestation/attestation_service.h"

#include "absl/time/clock.h"
#include "common/rpc/rpc.h"
#include "common/util/metrics.h"

namespace sphere::attestation {
namespace {

metrics::HistogramMetric* Latency(absl::string_view rpc) {
  static auto* challenge = metrics::Histogram(
      "sphere_get_challenge_seconds", "GetChallenge handler latency");
  static auto* attest =
      metrics::Histogram("sphere_attest_seconds", "Attest handler latency");
  return rpc == "attest" ? attest : challenge;
}

}  // namespace

grpc::ServerUnaryReactor* AttestationServiceImpl::GetChallenge(
    grpc::CallbackServerContext* context,
    const v1::GetChallengeRequest* request,
    v1::GetChallengeResponse* response) {
  absl::Time start = absl::Now();
  auto* reactor = context->DefaultReactor();
  grpc::Status st = router_->CheckOwnership(context, request->device_id());
  if (st.ok()) {
    auto r = attestor_->GetChallenge(request->device_id());
    if (r.ok()) {
      *response = std::move(*r);
    } else {
      st = rpc::ToGrpcStatus(r.status());
    }
  }
  Latency("challenge")->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  reactor->Finish(st);
  return reactor;
}

grpc::ServerUnaryReactor* AttestationServiceImpl::Attest(
    grpc::CallbackServerContext* context, const v1::AttestRequest* request,
    v1::AttestResponse* response) {
  absl::Time start = absl::Now();
  auto* reactor = context->DefaultReactor();
  grpc::Status st = router_->CheckOwnership(context, request->device_id());
  if (st.ok()) {
    auto r = attestor_->Attest(*request);
    if (r.ok()) {
      *response = std::move(*r);
    } else {
      st = rpc::ToGrpcStatus(r.status());
    }
  }
  Latency("attest")->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  reactor->Finish(st);
  return reactor;
}

}  // namespace sphere::attestation
