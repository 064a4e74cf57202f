// securitysvc shard: one shard of the Security Service. Serves the
// AttestationService for the devices the shard map assigns to it, follows the
// management catalog through Watch, and keeps its state in an encrypted
// RocksDB under DIR/shards/<id>/.
//
//   shard --state-dir DIR --shard-id shard-0 --management 127.0.0.1:PORT
//         [--port 0] [--port-file FILE] [--heartbeat_interval 5s]
//
// The shard registers with management at start and then every
// --heartbeat_interval (healthy, with the number of devices it holds an
// attestation record for), sooner when that count changed (checked every
// 250 ms, so 'spherectl cluster status' is current), and asks management to
// revoke devices whose attestation proves them compromised (asynchronously, see
// RevocationQueue).
#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc/rpc.h"
#include "common/store/keyring.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "common/util/log.h"
#include "common/util/metrics.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/attestation/attestation_service.h"
#include "securitysvc/attestation/revocation_queue.h"
#include "securitysvc/catalog/catalog_follower.h"
#include "securitysvc/pki/pki.h"

ABSL_FLAG(std::string, state_dir, "", "Cluster state directory (required)");
ABSL_FLAG(std::string, shard_id, "shard-0", "This shard's id");
ABSL_FLAG(std::string, management, "", "Management address host:port");
ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on");
ABSL_FLAG(int, port, 0, "Port to listen on (0 = any free port)");
ABSL_FLAG(std::string, port_file, "", "Write the bound port here when ready");
ABSL_FLAG(absl::Duration, sync_timeout, absl::Seconds(30),
          "How long to wait for the first catalog sync");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5),
          "How often the shard re-registers with management (device count, "
          "health)");

namespace sphere {
namespace {

int Fail(const absl::Status &s) {
  log::Error("shard failed", {{"error", s.ToString()}});
  return 1;
}

// RegisterShard announces this shard (healthy, with its device count) and
// returns the shard map management answers with.
absl::StatusOr<v1::ShardMap> RegisterShard(v1::ManagementService::Stub *stub,
                                           const std::string &id,
                                           const std::string &address,
                                           uint64_t device_count,
                                           bool wait_for_ready) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  ctx.set_wait_for_ready(wait_for_ready);
  v1::RegisterShardRequest req;
  req.mutable_shard()->set_id(id);
  req.mutable_shard()->set_address(address);
  req.mutable_shard()->set_healthy(true);
  req.mutable_shard()->set_device_count(device_count);
  v1::ShardMap map;
  grpc::Status st = stub->RegisterShard(&ctx, req, &map);
  if (!st.ok())
    return rpc::FromGrpcStatus(st);
  return map;
}

// Heartbeat calls `beat` every `interval`, and sooner (checked every
// min(interval, 250 ms)) when `changed` says there is news, until Stop.
class Heartbeat {
public:
  Heartbeat(absl::Duration interval, std::function<bool()> changed,
            std::function<void()> beat)
      : interval_(interval), tick_(std::min(interval, absl::Milliseconds(250))),
        changed_(std::move(changed)), beat_(std::move(beat)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Heartbeat() { Stop(); }
  void Stop() {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable())
      thread_.join();
  }

private:
  void Run() {
    absl::Time last = absl::Now();
    while (true) {
      {
        absl::MutexLock l(&mu_);
        auto stop = [this]()
                        ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), tick_))
          return;
      }
      if (changed_() || absl::Now() - last >= interval_) {
        beat_();
        last = absl::Now();
      }
    }
  }

  const absl::Duration interval_;
  const absl::Duration tick_;
  const std::function<bool()> changed_;
  const std::function<void()> beat_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

int Main() {
  const std::string dir = absl::GetFlag(FLAGS_state_dir);
  const std::string id = absl::GetFlag(FLAGS_shard_id);
  log::SetComponent(id);
  if (dir.empty() || absl::GetFlag(FLAGS_management).empty()) {
    return Fail(absl::InvalidArgumentError(
        "--state-dir and --management are required"));
  }
  auto pki = pki::Load(dir);
  if (!pki.ok())
    return Fail(pki.status());
  const std::string shard_dir = absl::StrCat(dir, "/shards/", id);
  if (auto s = rpc::MakeDirs(shard_dir); !s.ok()) return Fail(s);
  auto data_key = store::LoadOrCreateDataKey(
      pki->Path("master.key"), absl::StrCat(shard_dir, "/data.key.wrapped"));
  if (!data_key.ok())
    return Fail(data_key.status());
  store::RocksOptions ropts;
  ropts.data_key = *data_key;
  auto db = store::OpenRocksStore(absl::StrCat(shard_dir, "/db"),
                                  attestation::ColumnFamilies(), ropts);
  if (!db.ok())
    return Fail(db.status());

  auto server_tls = pki->TlsFor("server");
  if (!server_tls.ok())
    return Fail(server_tls.status());
  auto shard_tls = pki->TlsFor("shard");
  if (!shard_tls.ok())
    return Fail(shard_tls.status());

  catalog::InMemoryCatalog catalog(pki->master_key);
  sharding::ShardRouter router(id);
  auto mgmt_channel =
      rpc::NewChannel(absl::GetFlag(FLAGS_management), *shard_tls);
  catalog::CatalogFollower follower(
      mgmt_channel, &catalog,
      [&router](const v1::ShardMap &map) { router.Update(map); });

  auto stub = v1::ManagementService::NewStub(mgmt_channel);

  // Automatic revocation: RevokeDevice as an internal caller, off the
  // attestation path.
  auto revoke = [&](const attestation::RevocationRequest &r) -> absl::Status {
    if (!r.unknown_image_hash.empty()) {
      // Catch up with management before calling an image unsigned: the
      // image may have been released after this shard's catalog revision.
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
      v1::CatalogRevision rev;
      grpc::Status st =
          stub->GetCatalogRevision(&ctx, v1::GetCatalogRevisionRequest(), &rev);
      if (!st.ok())
        return rpc::FromGrpcStatus(st);
      if (!follower.WaitForRevision(rev.revision(), absl::Seconds(10))) {
        return absl::UnavailableError(absl::StrCat(
            "catalog has not reached revision ", rev.revision(), " yet"));
      }
      if (catalog.FindImageByHash(r.unknown_image_hash).ok()) {
        return absl::FailedPreconditionError(
            "the image is platform-signed after all (catalog caught up); "
            "not revoking");
      }
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::RevokeDeviceRequest req;
    req.set_tenant_id(r.tenant_id);
    req.set_device_id(r.device_id);
    req.set_reason(r.reason);
    v1::Device device;
    return rpc::FromGrpcStatus(stub->RevokeDevice(&ctx, req, &device));
  };
  attestation::RevocationQueue revocations(revoke, {});

  attestation::NonceStore nonces(Clock::Real());
  auth::SessionTokens tokens(pki->SessionTokenKey());
  attestation::Attestor::Options aopts;
  aopts.revocation_sink = &revocations;
  attestation::Attestor attestor(&catalog, db->get(), &nonces, &tokens,
                                 Clock::Real(), aopts);
  attestation::AttestationServiceImpl attestation_service(
      &attestor, &router, [&follower](int64_t revision, absl::Duration d) {
        return follower.WaitForRevision(revision, d);
      });

  rpc::ServerOptions sopts;
  sopts.address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  sopts.tls = *server_tls;
  sopts.require_client_cert = true;
  rpc::ServerRunner runner(sopts);
  runner.AddService(&attestation_service);
  if (auto s = runner.Start(); !s.ok())
    return Fail(s);

  // Register with management (which publishes the new shard map), then
  // follow the catalog.
  {
    auto map = RegisterShard(stub.get(), id, runner.address(),
                             attestor.attested_device_count(),
                             /*wait_for_ready=*/true);
    if (!map.ok()) {
      return Fail(absl::UnavailableError(absl::StrCat(
          "cannot register with management at ",
          absl::GetFlag(FLAGS_management), ": ", map.status().message())));
    }
    router.Update(*map);
  }
  std::atomic<uint64_t> reported_count{attestor.attested_device_count()};
  Heartbeat heartbeat(
      absl::GetFlag(FLAGS_heartbeat_interval),
      [&] { return attestor.attested_device_count() != reported_count; },
      [&] {
        const uint64_t count = attestor.attested_device_count();
        auto map = RegisterShard(stub.get(), id, runner.address(), count,
                                 /*wait_for_ready=*/false);
        if (map.ok())
          reported_count = count;
        if (!map.ok()) {
          log::Warning("heartbeat to management failed",
                       {{"error", std::string(map.status().message())}});
        }
      });
  follower.Start();
  // Catalog lag of this follower: revisions behind management, asked at
  // scrape time (1 s deadline; -1 when management does not answer).
  auto catalog_lag = metrics::RegisterGaugeCallback(
      "sphere_catalog_lag_revisions",
      "Catalog revisions this shard's follower is behind management "
      "(-1: management unreachable)",
      [&stub, &catalog, &id] {
        const int64_t applied = catalog.revision();
        grpc::ClientContext ctx;
        ctx.set_deadline(rpc::Deadline(absl::Seconds(1)));
        v1::CatalogRevision head;
        grpc::Status st = stub->GetCatalogRevision(
            &ctx, v1::GetCatalogRevisionRequest(), &head);
        const double lag =
            st.ok() ? std::max<int64_t>(0, head.revision() - applied) : -1;
        return std::vector<metrics::Sample>{{{{"follower", id}}, lag}};
      });
  auto catalog_applied = metrics::RegisterGaugeCallback(
      "sphere_catalog_applied_revision",
      "Catalog revision this shard's follower has applied",
      [&catalog, &id] {
        return std::vector<metrics::Sample>{
            {{{"follower", id}}, static_cast<double>(catalog.revision())}};
      });
  if (!follower.WaitUntilSynced(absl::GetFlag(FLAGS_sync_timeout))) {
    log::Warning("catalog not synced yet; serving with what is known");
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    if (auto s = rpc::WriteFile(absl::GetFlag(FLAGS_port_file),
                                absl::StrCat(runner.port(), "\n"));
        !s.ok()) {
      return Fail(s);
    }
  }
  log::Info("shard ready",
            {{"address", runner.address()},
             {"catalog_revision", absl::StrCat(catalog.revision())}});
  int sig = rpc::WaitForTerminationSignal();
  log::Info("shutting down", {{"signal", absl::StrCat(sig)}});
  heartbeat.Stop();
  runner.Shutdown(absl::Seconds(5));
  revocations.Stop();
  follower.Stop();
  return 0;
}

} // namespace
} // namespace sphere

int main(int argc, char **argv) {
  sphere::rpc::InstallTerminationSignalMask();
  absl::SetProgramUsageMessage(
      "Security Service shard: attestation and device certificates");
  absl::ParseCommandLine(argc, argv);
  return sphere::Main();
}
