#include "securitysvc/management/leader_election.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "third_party/etcd/rpc.grpc.pb.h"

namespace sphere::management {
namespace {

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

}  // namespace

// ---- EtcdLease
// ---------------------------------------------------------------

absl::StatusOr<std::unique_ptr<EtcdLease>> EtcdLease::Grant(
    std::shared_ptr<grpc::Channel> channel, absl::Duration ttl,
    absl::Duration rpc_timeout) {
  auto stub = etcdserverpb::Lease::NewStub(channel);
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(ttl)));
  etcdserverpb::LeaseGrantResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(rpc_timeout));
  grpc::Status s = stub->LeaseGrant(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("etcd lease grant: ", s.error_message()));
  }
  if (!resp.error().empty()) {
    return absl::UnavailableError(absl::StrCat("etcd lease: ", resp.error()));
  }
  return std::unique_ptr<EtcdLease>(
      new EtcdLease(std::move(channel), resp.id(), ttl, rpc_timeout));
}

EtcdLease::EtcdLease(std::shared_ptr<grpc::Channel> channel, int64_t id,
                     absl::Duration ttl, absl::Duration rpc_timeout)
    : channel_(std::move(channel)),
      id_(id),
      ttl_(ttl),
      rpc_timeout_(rpc_timeout) {
  {
    absl::MutexLock lock(&mu_);
    deadline_ = absl::Now() + ttl_;
  }
  thread_ = std::thread([this] { Run(); });
}

EtcdLease::~EtcdLease() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  // Revoke so our keys go at once rather than after the TTL.
  auto stub = etcdserverpb::Lease::NewStub(channel_);
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(id_);
  etcdserverpb::LeaseRevokeResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(rpc_timeout_));
  stub->LeaseRevoke(&ctx, req, &resp).ok();
}

bool EtcdLease::alive() const {
  absl::MutexLock lock(&mu_);
  return absl::Now() < deadline_;
}

void EtcdLease::Run() {
  auto stub = etcdserverpb::Lease::NewStub(channel_);
  const absl::Duration period = ttl_ / 3;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), period);
      if (stopping_) return;
    }
    const absl::Time sent = absl::Now();
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(rpc_timeout_));
    auto stream = stub->LeaseKeepAlive(&ctx);
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(id_);
    etcdserverpb::LeaseKeepAliveResponse resp;
    bool ok = stream->Write(req) && stream->Read(&resp) && resp.ttl() > 0;
    stream->WritesDone();
    ctx.TryCancel();
    stream->Finish().ok();
    if (ok) {
      // Measured from when we asked: the lease is valid at least that long.
      absl::MutexLock lock(&mu_);
      deadline_ = sent + absl::Seconds(resp.ttl());
    }
  }
}

// ---- EtcdLeaderElection
// -------------------------------------------------------

absl::StatusOr<std::unique_ptr<EtcdLeaderElection>> EtcdLeaderElection::Start(
    std::shared_ptr<grpc::Channel> channel, EtcdElectionOptions options) {
  if (options.candidate_id.empty() || options.candidate_id.size() > 255) {
    return absl::InvalidArgumentError(
        "leader election needs a candidate id of 1 to 255 characters");
  }
  return std::unique_ptr<EtcdLeaderElection>(
      new EtcdLeaderElection(std::move(channel), std::move(options)));
}

EtcdLeaderElection::EtcdLeaderElection(std::shared_ptr<grpc::Channel> channel,
                                       EtcdElectionOptions options)
    : channel_(std::move(channel)), options_(std::move(options)) {
  thread_ = std::thread([this] { Run(); });
}

EtcdLeaderElection::~EtcdLeaderElection() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  SetLeader(false);
  lease_.reset();  // revokes: the key goes and another replica can win
}

bool EtcdLeaderElection::IsLeader() const {
  absl::MutexLock lock(&mu_);
  return leader_ && lease_ != nullptr && lease_->alive();
}

void EtcdLeaderElection::SetLeader(bool leader) {
  bool changed;
  {
    absl::MutexLock lock(&mu_);
    changed = leader_ != leader;
    leader_ = leader;
  }
  if (changed && options_.on_change) options_.on_change(leader);
}

bool EtcdLeaderElection::Campaign(int64_t lease_id) {
  auto kv = etcdserverpb::KV::NewStub(channel_);
  etcdserverpb::TxnRequest req;
  etcdserverpb::Compare* cmp = req.add_compare();
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_target(etcdserverpb::Compare::CREATE);
  cmp->set_key(options_.key);
  cmp->set_create_revision(0);
  auto* put = req.add_success()->mutable_request_put();
  put->set_key(options_.key);
  put->set_value(options_.candidate_id);
  put->set_lease(lease_id);
  req.add_failure()->mutable_request_range()->set_key(options_.key);
  etcdserverpb::TxnResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(options_.rpc_timeout));
  if (!kv->Txn(&ctx, req, &resp).ok()) return false;
  if (resp.succeeded()) return true;
  // Still ours (a campaign after a lost reply)?
  if (resp.responses_size() == 1 &&
      resp.responses(0).response_range().kvs_size() == 1) {
    const auto& holder = resp.responses(0).response_range().kvs(0);
    return holder.lease() == lease_id;
  }
  return false;
}

void EtcdLeaderElection::Run() {
  const absl::Duration period = options_.ttl / 3;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    std::unique_ptr<EtcdLease> expired;
    bool need_lease;
    {
      absl::MutexLock lock(&mu_);
      need_lease = lease_ == nullptr || !lease_->alive();
      if (need_lease) expired = std::move(lease_);
    }
    if (need_lease) {
      SetLeader(false);
      expired.reset();
      absl::StatusOr<std::unique_ptr<EtcdLease>> fresh =
          EtcdLease::Grant(channel_, options_.ttl, options_.rpc_timeout);
      if (fresh.ok()) {
        absl::MutexLock lock(&mu_);
        lease_ = *std::move(fresh);
      }
    }
    int64_t lease_id = 0;
    {
      absl::MutexLock lock(&mu_);
      if (lease_ != nullptr) lease_id = lease_->lease_id();
    }
    if (lease_id != 0) SetLeader(Campaign(lease_id));
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), period);
  }
}

}  // namespace sphere::management
