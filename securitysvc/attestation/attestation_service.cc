#include "securitysvc/attestation/attestation_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/rpc/rpc.h"
#include "common/util/metrics.h"
#include "securitysvc/auth/device_context.h"

namespace sphere::attestation {
namespace {

metrics::HistogramMetric* Latency(absl::string_view rpc) {
  static auto* challenge = metrics::Histogram(
      "sphere_get_challenge_seconds", "GetChallenge handler latency");
  static auto* attest =
      metrics::Histogram("sphere_attest_seconds", "Attest handler latency");
  return rpc == "attest" ? attest : challenge;
}

// CheckCaller: only the device itself or a gateway may attest for a device.
grpc::Status CheckCaller(const grpc::CallbackServerContext& context,
                         absl::string_view device_id) {
  auto peer = rpc::PeerFromContext(context);
  if (!peer.ok()) return rpc::ToGrpcStatus(peer.status());
  return rpc::ToGrpcStatus(auth::MayAttestFor(peer->claims(), device_id));
}

}  // namespace

grpc::ServerUnaryReactor* AttestationServiceImpl::GetChallenge(
    grpc::CallbackServerContext* context,
    const v1::GetChallengeRequest* request,
    v1::GetChallengeResponse* response) {
  absl::Time start = absl::Now();
  auto* reactor = context->DefaultReactor();
  grpc::Status st = CheckCaller(*context, request->device_id());
  if (st.ok()) st = router_->CheckOwnership(context, request->device_id());
  if (st.ok() && request->min_catalog_revision() > 0) {
    absl::Duration budget = absl::Seconds(5);
    auto left = absl::FromChrono(context->deadline()) - absl::Now();
    if (left < budget) budget = left;
    if (!wait_for_revision_ ||
        !wait_for_revision_(request->min_catalog_revision(), budget)) {
      st = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("shard catalog has not reached revision ",
                                     request->min_catalog_revision(),
                                     " yet; retry"));
    }
  }
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
  grpc::Status st = CheckCaller(*context, request->device_id());
  if (st.ok()) st = router_->CheckOwnership(context, request->device_id());
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
