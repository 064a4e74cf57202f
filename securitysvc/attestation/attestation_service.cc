#include "securitysvc/attestation/attestation_service.h"

#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"

namespace sphere::attestation {
namespace {

const shard::DeviceMethod& GetChallengeMethod() {
  static const auto* m =
      new shard::DeviceMethod("get_challenge", shard::DeviceAccess::kAttest,
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

absl::Status AttestationServiceImpl::AdmitChallenge(
    const std::string& device_id, bool behind) {
  // Revocation (and existence) first: cheap, and never waits. A device this
  // catalog does not know yet may be in the newer revision the caller asked
  // for: it waits for it and is checked again by Attestor::GetChallenge.
  if (auto s = attestor_->MayChallenge(device_id);
      !s.ok() && !(absl::IsNotFound(s) && behind)) {
    return s;
  }
  if (challenge_limiter_ != nullptr &&
      !challenge_limiter_->TryAcquire(device_id)) {
    RateLimited()->Increment();
    return absl::ResourceExhaustedError(
        absl::StrCat("device ", device_id,
                     " asked for challenges faster than its limit; retry in ",
                     absl::FormatDuration(
                         absl::Ceil(challenge_limiter_->RetryAfter(device_id),
                                    absl::Milliseconds(100)))));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AttestationServiceImpl::GetChallenge(
    grpc::CallbackServerContext* context,
    const v1::GetChallengeRequest* request,
    v1::GetChallengeResponse* response) {
  // The device helper waits for min_catalog_revision (off the callback
  // thread) before it decides ownership: see UnaryAsyncAtRevision.
  return device_calls_->UnaryAsyncAtRevision(
      context, GetChallengeMethod(), request->device_id(), revision_gate_,
      request->min_catalog_revision(),
      [this](const shard::DeviceCall& call, bool behind) {
        return AdmitChallenge(call.device_id, behind);
      },
      [this, response](const shard::DeviceCall& call,
                       shard::DeviceCallHandler::Finish finish) {
        auto r = attestor_->GetChallenge(call.device_id);
        if (r.ok()) *response = *std::move(r);
        finish(r.status());
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

absl::Status AttestationServiceImpl::CheckBatch(
    const grpc::CallbackServerContext& context, int items) const {
  if (items > kMaxBatch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a batch holds at most ", kMaxBatch, " devices; got ", items));
  }
  return device_calls_->RequireGateway(context);
}

absl::Status AttestationServiceImpl::ChallengeOne(const std::string& device_id,
                                                  const absl::Status& ready,
                                                  v1::ChallengeResult* result) {
  // Validated before it is echoed, logged or looked up.
  if (auto s = ValidateDeviceId(device_id); !s.ok()) return s;
  result->set_device_id(device_id);
  // The batch's catalog revision was not reached: as the single call, and
  // before the owner is looked up (the old shard map may be out of date).
  if (!ready.ok()) return ready;
  if (auto owner = device_calls_->RedirectAddress(device_id)) {
    result->set_redirect_address(*owner);
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device_id, " is owned by the shard at ", *owner,
                     "; retry there"));
  }
  // AdmitChallenge ran the Attestor's MayChallenge checks (behind=false:
  // nothing is waived), so the nonce is issued without repeating them.
  if (auto s = AdmitChallenge(device_id, /*behind=*/false); !s.ok()) return s;
  auto r = attestor_->IssueChallenge(device_id);
  if (!r.ok()) return r.status();
  *result->mutable_challenge() = *std::move(r);
  return absl::OkStatus();
}

void AttestationServiceImpl::AnswerChallenges(
    const v1::GetChallengesRequest& request, const absl::Status& ready,
    v1::GetChallengesResponse* response) {
  for (const std::string& id : request.device_ids()) {
    v1::ChallengeResult* r = response->add_results();
    absl::Status s = ChallengeOne(id, ready, r);
    if (!s.ok()) {
      r->clear_challenge();
      r->set_code(static_cast<int>(s.code()));
      r->set_message(rpc::TruncateForStatus(s.message()));
    }
  }
}

grpc::ServerUnaryReactor* AttestationServiceImpl::GetChallenges(
    grpc::CallbackServerContext* context,
    const v1::GetChallengesRequest* request,
    v1::GetChallengesResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (auto s = CheckBatch(*context, request->device_ids_size()); !s.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(s));
    return reactor;
  }
  auto answer = [this, request, response, reactor](const absl::Status& ready) {
    AnswerChallenges(*request, ready, response);
    reactor->Finish(grpc::Status::OK);
  };
  // Read-your-writes for the whole batch: one wait on the RevisionGate
  // (never on this thread), parked per caller connection.
  const int64_t wanted = request->min_catalog_revision();
  if (wanted <= 0 || wanted <= catalog_->revision()) {
    answer(absl::OkStatus());
  } else if (revision_gate_ == nullptr) {
    answer(absl::UnavailableError(
        absl::StrCat("catalog at revision ", catalog_->revision(),
                     ", requested ", wanted, "; retry")));
  } else {
    revision_gate_->WhenReached(wanted, absl::FromChrono(context->deadline()),
                                absl::StrCat("batch:", context->peer()),
                                std::move(answer));
  }
  return reactor;
}

grpc::ServerUnaryReactor* AttestationServiceImpl::AttestBatch(
    grpc::CallbackServerContext* context, const v1::AttestBatchRequest* request,
    v1::AttestBatchResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const int n = request->requests_size();
  if (auto s = CheckBatch(*context, n); !s.ok()) {
    reactor->Finish(rpc::ToGrpcStatus(s));
    return reactor;
  }
  // Every result exists before any item starts: items finish on other
  // threads and each writes only its own element.
  for (int i = 0; i < n; ++i) response->add_results();
  // One count per item plus one for this loop, so the call cannot finish
  // (freeing request and response) while the loop still reads them.
  auto left = std::make_shared<std::atomic<int>>(n + 1);
  auto one_done = [left, reactor] {
    if (left->fetch_sub(1) == 1) reactor->Finish(grpc::Status::OK);
  };
  auto fail = [](v1::AttestResult* r, const absl::Status& s) {
    r->clear_response();
    r->set_code(static_cast<int>(s.code()));
    r->set_message(rpc::TruncateForStatus(s.message()));
  };
  for (int i = 0; i < n; ++i) {
    const v1::AttestRequest& item = request->requests(i);
    v1::AttestResult* r = response->mutable_results(i);
    if (auto s = ValidateDeviceId(item.device_id()); !s.ok()) {
      fail(r, s);
      one_done();
      continue;
    }
    r->set_device_id(item.device_id());
    if (auto owner = device_calls_->RedirectAddress(item.device_id())) {
      r->set_redirect_address(*owner);
      fail(r, absl::FailedPreconditionError(absl::StrCat(
                  "device ", item.device_id(), " is owned by the shard at ",
                  *owner, "; retry there")));
      one_done();
      continue;
    }
    attestor_->AttestAsync(
        item, [r, one_done, fail](absl::StatusOr<v1::AttestResponse> a) {
          if (a.ok()) {
            *r->mutable_response() = *std::move(a);
          } else {
            fail(r, a.status());
          }
          one_done();
        });
  }
  one_done();
  return reactor;
}

}  // namespace sphere::attestation
