#include "loadgen/transport.h"

#include <utility>

namespace sphere::loadgen {

void TimingTransport::MarkStart(const std::string& device_id, absl::Time t) {
  absl::MutexLock l(&mu_);
  start_.try_emplace(device_id, t);
}

absl::Time TimingTransport::TakeStart(const std::string& device_id) {
  absl::MutexLock l(&mu_);
  auto it = start_.find(device_id);
  if (it == start_.end()) return absl::InfinitePast();
  absl::Time t = it->second;
  start_.erase(it);
  return t;
}

void TimingTransport::GetChallenge(v1::GetChallengeRequest request,
                                   ChallengeCallback done) {
  {
    absl::MutexLock l(&mu_);
    start_.try_emplace(request.device_id(), absl::Now());
  }
  inner_->GetChallenge(std::move(request),
                       [this, done = std::move(done)](
                           absl::StatusOr<v1::GetChallengeResponse> r) {
                         if (!r.ok()) stats_->RecordError(r.status().code());
                         done(std::move(r));
                       });
}

void TimingTransport::Attest(v1::AttestRequest request, AttestCallback done) {
  inner_->Attest(std::move(request), [this, done = std::move(done)](
                                         absl::StatusOr<v1::AttestResponse> r) {
    if (!r.ok()) stats_->RecordError(r.status().code());
    done(std::move(r));
  });
}

PerTwinTlsTransport::PerTwinTlsTransport(
    const std::vector<cluster::ShardEndpoint>& shards, rpc::TlsFiles tls,
    absl::Duration deadline)
    : tls_(std::move(tls)),
      deadline_(deadline),
      ring_(client::ShardMapFromEndpoints(shards)),
      shards_(shards) {}

PerTwinTlsTransport::~PerTwinTlsTransport() {
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &in_flight_));
}

uint64_t PerTwinTlsTransport::connections() const {
  absl::MutexLock l(&mu_);
  return connections_;
}

std::shared_ptr<v1::AttestationService::Stub> PerTwinTlsTransport::StubFor(
    const std::string& device_id, bool create) {
  absl::MutexLock l(&mu_);
  ++in_flight_;
  auto it = stubs_.find(device_id);
  if (it != stubs_.end() && !create) return it->second;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // no sharing
  const std::string address = ring_.Owner(device_id).address();
  if (std::string name = cluster::ServerNameAt(shards_, address);
      !name.empty()) {
    args.SetSslTargetNameOverride(name);
  }
  args.SetMaxReceiveMessageSize(1 << 20);
  auto stub = std::shared_ptr<v1::AttestationService::Stub>(
      v1::AttestationService::NewStub(grpc::CreateCustomChannel(
          address, rpc::ChannelCredentials(tls_), args)));
  ++connections_;
  stubs_[device_id] = stub;
  return stub;
}

void PerTwinTlsTransport::Release(const std::string& device_id) {
  absl::MutexLock l(&mu_);
  stubs_.erase(device_id);
}

void PerTwinTlsTransport::GetChallenge(v1::GetChallengeRequest request,
                                       ChallengeCallback done) {
  struct Call {
    grpc::ClientContext ctx;
    v1::GetChallengeRequest req;
    v1::GetChallengeResponse resp;
    std::shared_ptr<v1::AttestationService::Stub> stub;
  };
  auto call = std::make_shared<Call>();
  call->req = std::move(request);
  // A new attestation (or a retry) starts on a new connection.
  call->stub = StubFor(call->req.device_id(), /*create=*/true);
  call->ctx.set_deadline(rpc::Deadline(deadline_));
  call->stub->async()->GetChallenge(
      &call->ctx, &call->req, &call->resp,
      [this, call, done = std::move(done)](grpc::Status st) {
        if (st.ok()) {
          done(std::move(call->resp));
        } else {
          Release(call->req.device_id());
          done(rpc::FromGrpcStatus(st));
        }
        absl::MutexLock l(&mu_);
        --in_flight_;
      });
}

void PerTwinTlsTransport::Attest(v1::AttestRequest request,
                                 AttestCallback done) {
  struct Call {
    grpc::ClientContext ctx;
    v1::AttestRequest req;
    v1::AttestResponse resp;
    std::shared_ptr<v1::AttestationService::Stub> stub;
  };
  auto call = std::make_shared<Call>();
  call->req = std::move(request);
  call->stub = StubFor(call->req.device_id(), /*create=*/false);
  call->ctx.set_deadline(rpc::Deadline(deadline_));
  call->stub->async()->Attest(
      &call->ctx, &call->req, &call->resp,
      [this, call, done = std::move(done)](grpc::Status st) {
        Release(call->req.device_id());
        if (st.ok()) {
          done(std::move(call->resp));
        } else {
          done(rpc::FromGrpcStatus(st));
        }
        absl::MutexLock l(&mu_);
        --in_flight_;
      });
}

}  // namespace sphere::loadgen
