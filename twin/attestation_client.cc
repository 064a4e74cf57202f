#include "twin/attestation_client.h"

#include "absl/synchronization/notification.h"

namespace sphere::twin {
namespace {

client::AsyncAttestationClient::Options WithDeadline(absl::Duration d) {
  client::AsyncAttestationClient::Options o;
  o.deadline = d;
  return o;
}

// Call runs one asynchronous call and waits for its answer.
template <typename Resp, typename Start>
absl::StatusOr<Resp> Call(Start start) {
  absl::Notification done;
  absl::StatusOr<Resp> result;
  start([&](absl::StatusOr<Resp> r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

}  // namespace

AttestationClient::AttestationClient(std::vector<cluster::ShardEndpoint> shards,
                                     rpc::TlsFiles tls, absl::Duration deadline)
    : client_(std::move(shards), std::move(tls), WithDeadline(deadline)) {}

int AttestationClient::redirects() const {
  return static_cast<int>(client_.stats().redirects);
}

absl::StatusOr<v1::AttestResponse> AttestationClient::Attest(
    const std::string& device_id, const Quoter& quoter,
    int64_t min_catalog_revision) {
  v1::GetChallengeRequest creq;
  creq.set_device_id(device_id);
  creq.set_min_catalog_revision(min_catalog_revision);
  auto challenge = Call<v1::GetChallengeResponse>(
      [&](auto cb) { client_.GetChallenge(std::move(creq), std::move(cb)); });
  if (!challenge.ok()) return challenge.status();
  auto quote = quoter(challenge->nonce());
  if (!quote.ok()) return quote.status();
  v1::AttestRequest areq;
  areq.set_device_id(device_id);
  *areq.mutable_quote() = std::move(*quote);
  return Call<v1::AttestResponse>(
      [&](auto cb) { client_.Attest(std::move(areq), std::move(cb)); });
}

}  // namespace sphere::twin
