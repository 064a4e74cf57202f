#include "securitysvc/attestation/attestation_service.h"

#include "absl/strings/str_cat.h"

namespace sphere::attestation {
namespace {

const shard::DeviceMethod& GetChallengeMethod() {
  static const auto* m = new shard::DeviceMethod(
      "get_challenge", shard::DeviceAccess::kAttest,
      "sphere_get_challenge_seconds");
  return *m;
}

const shard::DeviceMethod& AttestMethod() {
  static const auto* m = new shard::DeviceMethod(
      "attest", shard::DeviceAccess::kAttest, "sphere_attest_seconds");
  return *m;
}

metrics::CounterMetric* RateLimited() {
  static auto* c = metrics::Counter(
      "sphere_challenge_rate_limited_total",
      "GetChallenge calls refused by the per-device challenge rate limit");
  return c;
}

}  // namespace

grpc::ServerUnaryReactor* AttestationServiceImpl::GetChallenge(
    grpc::CallbackServerContext* context,
    const v1::GetChallengeRequest* request,
    v1::GetChallengeResponse* response) {
  return device_calls_->UnaryAsync(
      context, GetChallengeMethod(), request->device_id(),
      [this, request, response](const shard::DeviceCall& call,
                                shard::DeviceCallHandler::Finish finish) {
        // Revocation (and existence) first: cheap, and never waits. Only a
        // device this catalog does not know yet, when the caller asked for
        // a newer revision (one that may hold its claim), waits for that
        // revision (bounded by the RevisionGate) and is checked again by
        // Attestor::GetChallenge.
        const int64_t wanted = request->min_catalog_revision();
        const bool behind = wanted > 0 && wanted > catalog_->revision();
        if (auto s = attestor_->MayChallenge(call.device_id);
            !s.ok() && !(absl::IsNotFound(s) && behind)) {
          finish(s);
          return;
        }
        if (challenge_limiter_ != nullptr &&
            !challenge_limiter_->TryAcquire(call.device_id)) {
          RateLimited()->Increment();
          finish(absl::ResourceExhaustedError(absl::StrCat(
              "device ", call.device_id,
              " asked for challenges faster than its limit; retry in ",
              absl::FormatDuration(absl::Ceil(
                  challenge_limiter_->RetryAfter(call.device_id),
                  absl::Milliseconds(100))))));
          return;
        }
        auto issue = [this, response, id = call.device_id,
                      finish](const absl::Status& ready) {
          if (!ready.ok()) {
            finish(ready);
            return;
          }
          auto r = attestor_->GetChallenge(id);
          if (r.ok()) *response = *std::move(r);
          finish(r.status());
        };
        if (wanted <= 0 || wanted <= catalog_->revision()) {
          issue(absl::OkStatus());
        } else if (revision_gate_ == nullptr) {
          issue(absl::UnavailableError(
              absl::StrCat("catalog at revision ", catalog_->revision(),
                           ", requested ", wanted, "; retry")));
        } else {
          revision_gate_->WhenReached(wanted, call.deadline, call.device_id,
                                      std::move(issue));
        }
      });
}

grpc::ServerUnaryReactor* AttestationServiceImpl::Attest(
    grpc::CallbackServerContext* context, const v1::AttestRequest* request,
    v1::AttestResponse* response) {
  // The quote is verified on this callback thread; the call finishes from
  // the record writer once the record is durable (group commit), so no
  // callback thread waits on the disk.
  return device_calls_->UnaryAsync(
      context, AttestMethod(), request->device_id(),
      [this, request, response](const shard::DeviceCall& call,
                                shard::DeviceCallHandler::Finish finish) {
        auto deliver = [response, finish = std::move(finish)](
                           absl::StatusOr<v1::AttestResponse> r) {
          if (r.ok()) *response = *std::move(r);
          finish(r.status());
        };
        if (request->device_id().empty()) {
          // The credential named the device; the core reads it from the
          // request.
          v1::AttestRequest named = *request;
          named.set_device_id(call.device_id);
          attestor_->AttestAsync(named, std::move(deliver));
        } else {
          attestor_->AttestAsync(*request, std::move(deliver));
        }
      });
}

}  // namespace sphere::attestation
