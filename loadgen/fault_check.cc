#include "loadgen/fault_check.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/attestation_client.h"
#include "client/shard_ring.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "loadgen/fleet.h"
#include "loadgen/report.h"
#include "protos/attestation.grpc.pb.h"

namespace sphere::loadgen {

namespace {

// CheckShard checks `ids` at `address`; devices the shard says another
// shard owns (its live ring moved them) are collected in `moved`.
void CheckShard(
    const std::string& address, const std::vector<std::string>& ids,
    const StatusFetch& fetch, const std::function<void(absl::Duration)>& wait,
    const FaultCheckOptions& options, uint64_t* seed, FaultCheckResult* result,
    absl::flat_hash_map<std::string, std::vector<std::string>>* moved) {
  for (size_t start = 0; start < ids.size(); start += kIdsPerCall) {
    const size_t end = std::min(ids.size(), start + kIdsPerCall);
    v1::GetDeviceStatusRequest req;
    for (size_t i = start; i < end; ++i) req.add_device_ids(ids[i]);
    absl::StatusOr<v1::GetDeviceStatusResponse> resp;
    for (int attempt = 0; attempt < std::max(1, options.attempts); ++attempt) {
      if (attempt > 0) {
        ++result->retries;
        wait(client::BackoffDelay(options.backoff, attempt - 1,
                                  client::JitterFraction(++*seed)));
      }
      resp = fetch(address, req);
      if (resp.ok() || !client::IsRetryable(resp.status().code())) break;
    }
    if (!resp.ok()) {
      result->unreachable += end - start;
      continue;
    }
    // Only devices this call asked about count, each once.
    absl::flat_hash_set<std::string> asked(ids.begin() + start,
                                           ids.begin() + end);
    for (const auto& d : resp->devices()) {
      if (d.last_attested_unix_ms() > 0 && asked.erase(d.device_id()) > 0) {
        ++result->verified;
      }
    }
    for (const auto& r : resp->not_here()) {
      if (moved != nullptr && !r.address().empty() &&
          asked.erase(r.device_id()) > 0) {
        (*moved)[r.address()].push_back(r.device_id());
      }
    }
    result->lost += asked.size();
  }
}

}  // namespace

FaultCheckResult CheckAcknowledged(
    const std::vector<std::pair<std::string, std::vector<std::string>>>&
        by_shard,
    const StatusFetch& fetch, const std::function<void(absl::Duration)>& wait,
    const FaultCheckOptions& options) {
  FaultCheckResult result;
  uint64_t seed = 0;
  absl::flat_hash_map<std::string, std::vector<std::string>> moved;
  for (const auto& [address, ids] : by_shard) {
    CheckShard(address, ids, fetch, wait, options, &seed, &result, &moved);
  }
  // One more hop for devices the live ring moved; a device moved again is
  // not settled anywhere that answered: unreachable, not lost.
  absl::flat_hash_map<std::string, std::vector<std::string>> moved_again;
  for (const auto& [address, ids] : moved) {
    FaultCheckResult hop;
    CheckShard(address, ids, fetch, wait, options, &seed, &hop, &moved_again);
    result.verified += hop.verified;
    result.lost += hop.lost;
    result.unreachable += hop.unreachable;
    result.retries += hop.retries;
  }
  for (const auto& [address, ids] : moved_again) {
    result.unreachable += ids.size();
  }
  return result;
}

void VerifyAcknowledged(Fleet& fleet, FaultReport* report) {
  client::ShardRing ring(client::ShardMapFromEndpoints(fleet.cluster().shards));
  absl::flat_hash_map<std::string, std::vector<std::string>> grouped;
  for (const auto& t : fleet.twins()) {
    if (!t->certified()) continue;
    ++report->acknowledged;
    grouped[ring.Owner(t->device().device_id()).address()].push_back(
        t->device().device_id());
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> by_shard(
      grouped.begin(), grouped.end());
  absl::flat_hash_map<std::string,
                      std::unique_ptr<v1::DeviceStatusService::Stub>>
      stubs;
  FaultCheckOptions options;
  auto fetch = [&](const std::string& address,
                   const v1::GetDeviceStatusRequest& req)
      -> absl::StatusOr<v1::GetDeviceStatusResponse> {
    auto& stub = stubs[address];
    if (stub == nullptr) {
      stub = v1::DeviceStatusService::NewStub(rpc::NewChannel(
          address, fleet.operator_tls(),
          cluster::ServerNameAt(fleet.cluster().shards, address)));
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(options.deadline));
    v1::GetDeviceStatusResponse resp;
    grpc::Status st = stub->GetDeviceStatus(&ctx, req, &resp);
    if (!st.ok()) return rpc::FromGrpcStatus(st);
    return resp;
  };
  // The backoff wait of a one-shot check on loadgen's main thread (no
  // server thread waits here).
  FaultCheckResult r = CheckAcknowledged(
      by_shard, fetch, [](absl::Duration d) { absl::SleepFor(d); }, options);
  report->verified = r.verified;
  report->lost = r.lost;
  report->unreachable = r.unreachable;
}

}  // namespace sphere::loadgen
