// ShardServer: one shard of the Security Service. It owns what every hosted
// service shares (the store, the catalog view and its follower, the shard
// router, the device authenticator and device-call helper, the revision
// gate) and hosts ShardPlugins, each bringing its gRPC services and column
// families (see shard_plugin.h).
//
// With a management address it registers with management (then heartbeats
// with its device count), follows the catalog through Watch and routes by
// the shard map. Without one (in-process tests) it serves the catalog it is
// given and owns every device.
//
// Example (an in-process shard over memory):
//   ShardServerOptions o;
//   o.server_tls = ...; o.session_token_key = key; o.catalog = &catalog;
//   o.open_store = [](const std::vector<std::string>& cfs) {
//     return store::MemoryStore::Create(cfs);  // as unique_ptr<Store>
//   };
//   std::vector<std::unique_ptr<ShardPlugin>> plugins;
//   plugins.push_back(std::make_unique<attestation::AttestationPlugin>());
//   ShardServer shard(o, std::move(plugins));
//   RETURN_IF_ERROR(shard.Start());   // shard.address() is now serving
//   ...
//   shard.Shutdown(absl::Seconds(5));
//
// Thread-safety: Start/Shutdown/Run from one thread.
#ifndef SPHERE_SECURITYSVC_SHARD_SERVER_SHARD_SERVER_H_
#define SPHERE_SECURITYSVC_SHARD_SERVER_SHARD_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/rpc/rpc.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "common/util/metrics.h"
#include "securitysvc/catalog/catalog_follower.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/shard_server/shard_plugin.h"

namespace sphere::shard {

struct ShardServerOptions {
  std::string shard_id = "shard-0";
  std::string address = "127.0.0.1:0";
  rpc::TlsFiles server_tls;  // served with mutual TLS
  int max_message_bytes = 8 << 20;
  // When positive, requests are capped lower than max_message_bytes (see
  // rpc::ServerOptions::max_request_bytes).
  int max_request_bytes = 0;
  // 32-byte MAC key for device session tokens (shared by every shard).
  std::string session_token_key;
  // Unwraps tenant CA keys arriving in the catalog (unused when `catalog` is
  // given).
  std::string master_key;
  // Opens the shard's database with the plug-ins' column families
  // (production: encrypted RocksDB under the state directory).
  std::function<absl::StatusOr<std::unique_ptr<store::Store>>(
      const std::vector<std::string>&)>
      open_store;
  // Management; empty = standalone (no registration, no follower).
  std::string management_address;
  rpc::TlsFiles management_tls;  // the shard credential
  absl::Duration heartbeat_interval = absl::Seconds(5);
  absl::Duration sync_timeout = absl::Seconds(30);
  // Bounded catalog lag (issue 15): when the catalog watch delivered
  // nothing (no event, no progress notification; management sends one every
  // few seconds on an idle stream) for this long on `clock`, attestation
  // answers UNAVAILABLE ("catalog stale ...") instead of issuing
  // certificates on stale catalog data; it resumes when the watch is back.
  // Zero: no bound. Followed catalogs only (not `catalog` below).
  absl::Duration max_catalog_staleness = absl::Seconds(30);
  // A catalog filled by the caller (standalone only); null = the server's
  // own InMemoryCatalog, followed from management.
  catalog::InMemoryCatalog* catalog = nullptr;
  Clock* clock = Clock::Real();
  RevisionGate::Options revision_gate;
  // Verified gateway session tokens remembered (--session_token_slots).
  size_t session_token_slots = auth::kVerifiedTokenSlots;
};

// ShardStoreOptions: how a shard opens its encrypted RocksDB. Many small
// records (one attestation record and history row per device), so memory is
// bounded for them: 16 MiB of memtables in all and an 8 MiB block cache
// holding index and filter blocks too (issue 14: a shard's memory per device
// stays near the catalog's share instead of growing with every record
// written).
inline store::RocksOptions ShardStoreOptions(std::string data_key) {
  store::RocksOptions o;
  o.data_key = std::move(data_key);
  o.memtable_budget_bytes = size_t{16} << 20;
  o.block_cache_bytes = size_t{8} << 20;
  return o;
}

class ShardServer {
 public:
  ShardServer(ShardServerOptions options,
              std::vector<std::unique_ptr<ShardPlugin>> plugins);
  ~ShardServer();
  ShardServer(const ShardServer&) = delete;
  ShardServer& operator=(const ShardServer&) = delete;

  // Start opens the store, initialises the plug-ins, serves, registers with
  // management and follows the catalog (waiting up to sync_timeout for the
  // first sync). Errors name what failed.
  absl::Status Start();
  std::string address() const;
  int port() const;
  // Shutdown stops serving (in-flight calls get `grace`), then the
  // heartbeat, the plug-ins and the follower.
  void Shutdown(absl::Duration grace);

  // Run is a whole shard process: Start, write the bound port to
  // `port_file` (if non-empty), serve until SIGINT/SIGTERM, Shutdown.
  absl::Status Run(const std::string& port_file);

  ShardContext& context() { return context_; }
  // router: the shard map this shard routes by; followed from management,
  // set by hand only by in-process tests without one.
  sharding::ShardRouter& router() { return *router_; }
  const catalog::CatalogView& catalog() const { return *catalog_; }

 private:
  class Heartbeat;
  uint64_t DeviceCount() const;
  // GateRevision: the catalog revision the RevisionGate releases calls at.
  int64_t GateRevision() const;
  absl::Status Register(bool wait_for_ready);

  ShardServerOptions options_;
  std::unique_ptr<catalog::InMemoryCatalog> own_catalog_;
  catalog::InMemoryCatalog* catalog_ = nullptr;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<sharding::ShardRouter> router_;
  std::unique_ptr<auth::SessionTokens> tokens_;
  std::unique_ptr<auth::DeviceAuthenticator> authenticator_;
  std::unique_ptr<DeviceCallHandler> device_calls_;
  std::shared_ptr<grpc::Channel> management_channel_;
  std::unique_ptr<v1::ManagementService::Stub> management_;
  std::unique_ptr<catalog::CatalogFollower> follower_;
  std::unique_ptr<RevisionGate> revision_gate_;
  std::unique_ptr<rpc::ServerRunner> runner_;
  std::unique_ptr<Heartbeat> heartbeat_;
  // sphere_catalog_lag_revisions / sphere_catalog_applied_revision.
  std::vector<std::unique_ptr<metrics::GaugeCallbackHandle>> catalog_gauges_;
  std::atomic<uint64_t> reported_count_{0};
  ShardContext context_;
  bool started_ = false;
  bool stopped_ = false;
  // Last: plug-ins use everything above, so they are destroyed first.
  std::vector<std::unique_ptr<ShardPlugin>> plugins_;
};

}  // namespace sphere::shard

#endif  // SPHERE_SECURITYSVC_SHARD_SERVER_SHARD_SERVER_H_
