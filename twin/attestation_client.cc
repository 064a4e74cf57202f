#include "twin/attestation_client.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "securitysvc/sharding/router.h"

namespace sphere::twin {

AttestationClient::AttestationClient(std::vector<cluster::ShardEndpoint> shards,
                                     rpc::TlsFiles tls, absl::Duration deadline)
    : shards_(std::move(shards)), tls_(std::move(tls)), deadline_(deadline) {}

v1::AttestationService::Stub* AttestationClient::StubFor(
    const std::string& address) {
  absl::MutexLock l(&mu_);
  auto& stub = stubs_[address];
  if (!stub) {
    stub = v1::AttestationService::NewStub(rpc::NewChannel(address, tls_));
  }
  return stub.get();
}

std::string AttestationClient::AddressFor(const std::string& device_id) {
  absl::MutexLock l(&mu_);
  auto it = owner_.find(device_id);
  if (it != owner_.end()) return it->second;
  return shards_.empty() ? "" : shards_.front().address;
}

int AttestationClient::redirects() const {
  absl::MutexLock l(&mu_);
  return redirects_;
}

absl::StatusOr<v1::AttestResponse> AttestationClient::AttestWithRetry(
    const std::string& device_id, const Quoter& quoter,
    absl::Duration budget, int64_t min_catalog_revision) {
  absl::Time deadline = absl::Now() + budget;
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    auto r = Attest(device_id, quoter, min_catalog_revision);
    const absl::StatusCode code = r.status().code();
    // A catalog that does not know the device (yet) is worth waiting for
    // only when the caller did not name a revision that includes it; every
    // other refusal (unclaimed, revoked, bad quote) is final.
    const bool retryable =
        code == absl::StatusCode::kUnavailable ||
        (code == absl::StatusCode::kNotFound && min_catalog_revision <= 0);
    if (r.ok() || !retryable || absl::Now() + backoff > deadline) return r;
    absl::SleepFor(backoff);  // device retry policy, not synchronisation
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

absl::StatusOr<v1::AttestResponse> AttestationClient::Attest(
    const std::string& device_id, const Quoter& quoter,
    int64_t min_catalog_revision) {
  std::string address = AddressFor(device_id);
  if (address.empty()) {
    return absl::FailedPreconditionError("no Security Service shard known");
  }
  for (int hop = 0; hop < 4; ++hop) {
    auto* stub = StubFor(address);
    v1::GetChallengeResponse challenge;
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(deadline_));
      v1::GetChallengeRequest req;
      req.set_device_id(device_id);
      req.set_min_catalog_revision(min_catalog_revision);
      grpc::Status st = stub->GetChallenge(&ctx, req, &challenge);
      if (auto redirect = sharding::RedirectFrom(ctx, st)) {
        absl::MutexLock l(&mu_);
        ++redirects_;
        owner_[device_id] = redirect->second;
        address = redirect->second;
        continue;
      }
      if (!st.ok()) {
        return absl::Status(
            static_cast<absl::StatusCode>(st.error_code()),
            absl::StrCat("GetChallenge at ", address, ": ", st.error_message()));
      }
    }
    auto quote = quoter(challenge.nonce());
    if (!quote.ok()) return quote.status();
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(deadline_));
    v1::AttestRequest req;
    req.set_device_id(device_id);
    *req.mutable_quote() = std::move(*quote);
    v1::AttestResponse resp;
    grpc::Status st = stub->Attest(&ctx, req, &resp);
    if (!st.ok()) {
      return absl::Status(
          static_cast<absl::StatusCode>(st.error_code()),
          absl::StrCat("Attest at ", address, ": ", st.error_message()));
    }
    return resp;
  }
  return absl::UnavailableError(
      absl::StrCat("too many shard redirects for device ", device_id));
}

}  // namespace sphere::twin
