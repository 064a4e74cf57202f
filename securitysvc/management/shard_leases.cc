#include "securitysvc/management/shard_leases.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/util/log.h"
#include "third_party/etcd/rpc.grpc.pb.h"

namespace sphere::management {
namespace {

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

constexpr absl::Duration kRpcTimeout = absl::Seconds(2);

}  // namespace

// ---- MemoryShardLeases
// -------------------------------------------------------

MemoryShardLeases::MemoryShardLeases(Clock* clock, absl::Duration ttl)
    : clock_(clock), ttl_(ttl), started_(clock->Now()) {}

absl::Status MemoryShardLeases::Renew(const std::string& shard_id) {
  absl::MutexLock lock(&mu_);
  renewed_[shard_id] = clock_->Now();
  return absl::OkStatus();
}

absl::StatusOr<bool> MemoryShardLeases::Live(const std::string& shard_id) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = renewed_.find(shard_id);
  if (it == renewed_.end()) return now - started_ < ttl_;
  return now - it->second < ttl_;
}

// ---- EtcdShardLeases
// ---------------------------------------------------------

EtcdShardLeases::EtcdShardLeases(std::shared_ptr<grpc::Channel> channel,
                                 std::string prefix, absl::Duration ttl,
                                 Clock* clock)
    : channel_(std::move(channel)),
      prefix_(std::move(prefix)),
      ttl_(ttl),
      clock_(clock),
      started_(clock->Now()) {}

std::string EtcdShardLeases::Key(const std::string& shard_id) const {
  return absl::StrCat(prefix_, "shard_leases/", shard_id);
}

absl::Status EtcdShardLeases::Renew(const std::string& shard_id) {
  auto kv = etcdserverpb::KV::NewStub(channel_);
  auto lease = etcdserverpb::Lease::NewStub(channel_);
  // Existing lease: keep it alive.
  etcdserverpb::RangeRequest range;
  range.set_key(Key(shard_id));
  etcdserverpb::RangeResponse found;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(kRpcTimeout));
    grpc::Status s = kv->Range(&ctx, range, &found);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("etcd range: ", s.error_message()));
    }
  }
  if (found.kvs_size() == 1 && found.kvs(0).lease() != 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(kRpcTimeout));
    auto stream = lease->LeaseKeepAlive(&ctx);
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(found.kvs(0).lease());
    etcdserverpb::LeaseKeepAliveResponse resp;
    const bool ok = stream->Write(req) && stream->Read(&resp);
    stream->WritesDone();
    ctx.TryCancel();
    stream->Finish().ok();
    if (ok && resp.ttl() > 0) return absl::OkStatus();
  }
  // No (live) lease: grant one and bind the key to it.
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(ttl_)));
  etcdserverpb::LeaseGrantResponse granted;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(kRpcTimeout));
    grpc::Status s = lease->LeaseGrant(&ctx, grant, &granted);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("etcd lease grant: ", s.error_message()));
    }
  }
  etcdserverpb::PutRequest put;
  put.set_key(Key(shard_id));
  put.set_value(absl::StrCat(absl::ToUnixSeconds(clock_->Now())));
  put.set_lease(granted.id());
  etcdserverpb::PutResponse put_resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(kRpcTimeout));
  grpc::Status s = kv->Put(&ctx, put, &put_resp);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("etcd put: ", s.error_message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> EtcdShardLeases::Live(const std::string& shard_id) {
  auto kv = etcdserverpb::KV::NewStub(channel_);
  etcdserverpb::RangeRequest range;
  range.set_key(Key(shard_id));
  range.set_count_only(true);
  etcdserverpb::RangeResponse found;
  grpc::ClientContext ctx;
  ctx.set_deadline(DeadlineIn(kRpcTimeout));
  grpc::Status s = kv->Range(&ctx, range, &found);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("etcd range: ", s.error_message()));
  }
  if (found.count() > 0) return true;
  // A shard registered before this replica started may not have renewed
  // yet: give it one TTL.
  return clock_->Now() - started_ < ttl_;
}

// ---- ShardSweeper
// -------------------------------------------------------------

ShardSweeper::ShardSweeper(Catalog* catalog, ShardLeases* leases,
                           LeaderElection* election, absl::Duration interval)
    : catalog_(catalog),
      leases_(leases),
      election_(election),
      interval_(interval) {
  if (interval_ > absl::ZeroDuration()) {
    thread_ = std::thread([this] { Loop(); });
  }
}

ShardSweeper::~ShardSweeper() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::vector<std::string>> ShardSweeper::SweepOnce() {
  std::vector<std::string> removed;
  if (!election_->IsLeader()) return removed;
  absl::StatusOr<v1::ShardMap> map = catalog_->GetShardMap(Caller::Internal());
  if (!map.ok()) return map.status();
  for (const v1::Shard& shard : map->shards()) {
    absl::StatusOr<bool> live = leases_->Live(shard.id());
    if (!live.ok()) return live.status();  // etcd unreachable: remove nothing
    if (*live) continue;
    absl::StatusOr<v1::ShardMap> after =
        catalog_->RemoveShard(Caller::Internal(), shard.id());
    if (!after.ok()) return after.status();
    log::Warning("shard lease expired; removed from the ring",
                 {{"shard", shard.id()}, {"address", shard.address()}});
    removed.push_back(shard.id());
  }
  return removed;
}

void ShardSweeper::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_);
      if (stopping_) return;
    }
    absl::StatusOr<std::vector<std::string>> r = SweepOnce();
    if (!r.ok()) {
      log::Warning("shard lease sweep failed",
                   {{"error", r.status().ToString()}});
    }
  }
}

}  // namespace sphere::management
