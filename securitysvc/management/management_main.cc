// management: the Sphere management plane server (ManagementService over the
// Catalog, RocksDB encrypted at rest).
//
// Usage:
//   management --state-dir=DIR [--port=0] [--port-file=FILE]
//
// Reads DIR/pki/root.pem and DIR/pki/root.key (written by the cluster
// bootstrap) and the cluster master key from --master-key-file,
// --master-key-env, $CREDENTIALS_DIRECTORY/master.key or DIR/pki/master.key
// (pki::MasterKeySource; key files must be private: 0600); keeps its database
// in DIR/management/db (0700) with the data key wrapped in
// DIR/management/data.key.wrapped. At startup it issues
// itself a server certificate (SAN localhost, 127.0.0.1) from the root key.
// Serves health, reflection and metrics; SIGTERM/SIGINT shut down gracefully.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/cluster/pki_layout.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/keyring.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "common/util/rate_limiter.h"
#include "securitysvc/auth/scope.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/compactor.h"
#include "securitysvc/management/etcd_revision_log.h"
#include "securitysvc/management/image_pipeline.h"
#include "securitysvc/management/leader_election.h"
#include "securitysvc/management/management_service.h"
#include "securitysvc/management/revision_log.h"
#include "securitysvc/management/rollout_manager.h"
#include "securitysvc/management/rollout_service.h"
#include "securitysvc/management/shard_leases.h"
#include "securitysvc/pki/pki.h"

ABSL_FLAG(std::string, state_dir, "",
          "cluster state directory (uses DIR/pki/{root.pem,root.key,"
          "master.key}; keeps DIR/management/db)");
ABSL_FLAG(std::string, host, "127.0.0.1", "address to listen on");
ABSL_FLAG(int, port, 0, "port to listen on; 0 picks a free port");
ABSL_FLAG(std::string, port_file, "",
          "if set, the bound port is written here (atomically) once serving");
ABSL_FLAG(int, watch_queue_limit, 65536,
          "events buffered per Watch stream before a slow watcher is "
          "cancelled with RESOURCE_EXHAUSTED");
ABSL_FLAG(int, virtual_nodes, 64, "consistent-hash points per shard");
ABSL_FLAG(int, grace_seconds, 5, "graceful shutdown deadline");
ABSL_FLAG(std::string, master_key_file, "",
          "cluster master key file (32 raw bytes or 64 hex digits, mode "
          "0600), e.g. outside the state directory; default "
          "$CREDENTIALS_DIRECTORY/master.key if present, else "
          "DIR/pki/master.key");
ABSL_FLAG(std::string, master_key_env, "",
          "name of an environment variable holding the cluster master key "
          "as 64 hex digits (instead of --master-key-file)");
ABSL_FLAG(double, expensive_call_rate, 2,
          "per-caller sustained rate (tokens/s) for expensive calls: "
          "credential issuance costs 1, an image upload 1 per started MiB");
ABSL_FLAG(std::string, catalog, "",
          "catalog storage: empty for the embedded RocksDB log under "
          "DIR/management/db, or etcd://host:port[,host:port...] for etcd "
          "(several management replicas may share one etcd)");
ABSL_FLAG(std::string, etcd_ca, "",
          "PEM file: CA that signed the etcd members' certificates (mTLS)");
ABSL_FLAG(std::string, etcd_cert, "",
          "PEM file: this process's client certificate for etcd (mTLS)");
ABSL_FLAG(std::string, etcd_key, "",
          "PEM file: the key of --etcd_cert (must be private: 0600)");
ABSL_FLAG(int, etcd_max_txn_ops, 128,
          "the etcd members' --max-txn-ops (etcd's default is 128); a "
          "catalog change needing more operations is refused before sending "
          "(a device import of N devices needs about 2N+2)");
ABSL_FLAG(std::string, etcd_prefix, "/sphere/catalog/",
          "key prefix of the catalog in etcd");
ABSL_FLAG(absl::Duration, compact_interval, absl::Minutes(1),
          "how often the leading replica compacts the catalog change log "
          "(0 disables)");
ABSL_FLAG(int64_t, compact_keep_revisions, 100000,
          "catalog revisions of history kept by compaction; older watchers "
          "get a snapshot");
ABSL_FLAG(absl::Duration, leader_lease_ttl, absl::Seconds(5),
          "etcd lease TTL of the management leader election (--catalog "
          "etcd://...)");
ABSL_FLAG(absl::Duration, shard_lease_ttl, absl::ZeroDuration(),
          "shard lease: a shard that has not re-registered for this long "
          "leaves the shard map (shards re-register every heartbeat; "
          "local_cluster --catalog etcd sets 6 heartbeats, at least 3 s: "
          "shard_lease_ttl.h); 0 disables");
ABSL_FLAG(absl::Duration, watch_progress_interval, absl::Seconds(5),
          "progress notification on idle catalog Watch streams (keep well "
          "below the shards' --max_catalog_staleness); 0 = none");
ABSL_FLAG(int, workers, 4,
          "threads running management's catalog calls (never on gRPC "
          "callback threads)");
ABSL_FLAG(int, worker_queue, 1024,
          "catalog calls waiting for a worker; one more is answered "
          "RESOURCE_EXHAUSTED");
ABSL_FLAG(int, worker_queue_per_caller, 128,
          "catalog calls one caller (tenant, platform operator, shard "
          "connection) may have queued or running at once");
ABSL_FLAG(double, expensive_call_burst, 40,
          "per-caller burst (tokens) for expensive calls");
ABSL_FLAG(bool, staged_rollout, false,
          "new deployments roll out in stages (--rollout-stages, soak "
          "--rollout-soak, halt at the group's rollout_failure_threshold); "
          "off: a new deployment reaches the whole group at once");
ABSL_FLAG(std::string, rollout_stages, "1,10,50,100",
          "staged rollout: percent of the group per stage, ending at 100");
ABSL_FLAG(absl::Duration, rollout_soak, absl::Hours(1),
          "staged rollout: soak time per stage");
ABSL_FLAG(absl::Duration, rollout_tick, absl::Seconds(10),
          "staged rollout: how often stages are evaluated");

namespace sphere::management {
namespace {

// ConnectEtcdFromFlags: --catalog etcd://... with mTLS from PEM files.
absl::StatusOr<std::unique_ptr<EtcdRevisionLog>> ConnectEtcdFromFlags(
    const std::string& url, const std::string& ca, const std::string& cert,
    const std::string& key, const std::string& prefix) {
  EtcdOptions o;
  absl::StatusOr<std::vector<std::string>> endpoints = ParseEtcdUrl(url);
  if (!endpoints.ok()) return endpoints.status();
  o.endpoints = *std::move(endpoints);
  o.prefix = prefix;
  o.max_txn_ops = static_cast<size_t>(
      std::clamp(absl::GetFlag(FLAGS_etcd_max_txn_ops), 16, 1 << 20));
  if (!ca.empty() || !cert.empty() || !key.empty()) {
    if (auto s = pki::CheckPrivateFile(key); !s.ok()) return s;
    for (auto [path, out] :
         {std::pair{&ca, &o.ca_pem}, std::pair{&cert, &o.cert_pem},
          std::pair{&key, &o.key_pem}}) {
      absl::StatusOr<std::string> pem = util::ReadFile(*path);
      if (!pem.ok()) return pem.status();
      *out = *std::move(pem);
    }
  }
  return EtcdRevisionLog::Connect(std::move(o));
}

absl::StatusOr<RolloutManager::Options> RolloutFlags() {
  RolloutManager::Options o;
  o.plan.stage_percents.clear();
  for (absl::string_view p :
       absl::StrSplit(absl::GetFlag(FLAGS_rollout_stages), ',')) {
    uint32_t v = 0;
    if (!absl::SimpleAtoi(p, &v) || v == 0 || v > 100 ||
        (!o.plan.stage_percents.empty() && v <= o.plan.stage_percents.back())) {
      return absl::InvalidArgumentError(
          "--rollout-stages must be increasing percents in 1..100, e.g. "
          "1,10,50,100");
    }
    o.plan.stage_percents.push_back(v);
  }
  if (o.plan.stage_percents.empty() || o.plan.stage_percents.back() != 100) {
    return absl::InvalidArgumentError("--rollout-stages must end at 100");
  }
  o.plan.soak = absl::GetFlag(FLAGS_rollout_soak);
  if (o.plan.soak < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_rollout_tick) <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--rollout-soak must be >= 0 and --rollout-tick > 0");
  }
  return o;
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_state_dir);
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "--state-dir is required (the directory the cluster bootstrap wrote "
        "pki/ into)");
  }
  pki::ClusterPki layout;  // paths only: the keys are loaded below
  layout.dir = cluster::PkiDir(dir);
  absl::StatusOr<std::string> root_pem =
      util::ReadFile(layout.Path("root.pem"));
  if (!root_pem.ok()) return root_pem.status();
  if (auto s = pki::CheckPrivateFile(layout.Path("root.key")); !s.ok())
    return s;
  absl::StatusOr<std::string> root_key_pem =
      util::ReadFile(layout.Path("root.key"));
  if (!root_key_pem.ok()) return root_key_pem.status();
  std::string master_origin;
  absl::StatusOr<std::string> master =
      pki::LoadMasterKey({absl::GetFlag(FLAGS_master_key_file),
                          absl::GetFlag(FLAGS_master_key_env)},
                         dir, /*create=*/false, &master_origin);
  if (!master.ok()) return master.status();
  absl::StatusOr<crypto::EcPrivateKey> root_key =
      crypto::EcPrivateKey::FromPem(*root_key_pem);
  if (!root_key.ok()) return root_key.status();
  absl::StatusOr<crypto::ParsedCertificate> root_cert =
      crypto::ParseCertificate(*root_pem);
  if (!root_cert.ok()) return root_cert.status();

  if (auto s = util::MakeDirs(dir + "/management", 0700); !s.ok()) return s;
  absl::StatusOr<std::string> data_key = store::LoadOrCreateDataKeyUnder(
      *master, master_origin, dir + "/management/data.key.wrapped");
  if (!data_key.ok()) return data_key.status();
  store::RocksOptions rocks;
  rocks.data_key = *data_key;
  // Bound the live write-ahead logs: rarely written column families
  // (tenants, products, ...) are flushed out of the oldest log once the logs
  // pass 64 MiB (one memtable), so a restart replays at most ~2 x that, not
  // every log since the first tenant (~1 GB at a million devices).
  rocks.max_total_wal_bytes = size_t{64} << 20;
  const std::string catalog_url = absl::GetFlag(FLAGS_catalog);
  std::unique_ptr<store::Store> embedded_db;
  std::unique_ptr<RevisionLog> log;
  std::shared_ptr<grpc::Channel> etcd_channel;  // set with --catalog etcd://
  if (catalog_url.empty()) {
    absl::StatusOr<std::unique_ptr<store::Store>> db = store::OpenRocksStore(
        dir + "/management/db", Catalog::ColumnFamilies(), rocks);
    if (!db.ok()) return db.status();
    embedded_db = *std::move(db);
    absl::StatusOr<std::unique_ptr<EmbeddedRevisionLog>> embedded =
        EmbeddedRevisionLog::Open(embedded_db.get());
    if (!embedded.ok()) return embedded.status();
    log = *std::move(embedded);
  } else {
    absl::StatusOr<std::unique_ptr<EtcdRevisionLog>> etcd =
        ConnectEtcdFromFlags(catalog_url, absl::GetFlag(FLAGS_etcd_ca),
                             absl::GetFlag(FLAGS_etcd_cert),
                             absl::GetFlag(FLAGS_etcd_key),
                             absl::GetFlag(FLAGS_etcd_prefix));
    if (!etcd.ok()) return etcd.status();
    etcd_channel = (*etcd)->channel();
    log = *std::move(etcd);
  }

  CatalogOptions options;
  options.root_key = *root_key;
  options.root_cert_pem = *root_pem;
  options.master_key = *master;
  options.virtual_nodes = absl::GetFlag(FLAGS_virtual_nodes);
  absl::StatusOr<RolloutManager::Options> rollout_options = RolloutFlags();
  if (!rollout_options.ok()) return rollout_options.status();
  // Rollout stages advance on the leader only (set below, once serving).
  std::unique_ptr<LeaderElection> election;
  rollout_options->is_leader = [&election] {
    return election != nullptr && election->IsLeader();
  };
  if (absl::GetFlag(FLAGS_staged_rollout)) {
    options.new_deployment_rollout_fraction =
        rollout_options->plan.stage_percents.front() / 100.0;
  }
  absl::StatusOr<std::unique_ptr<Catalog>> catalog =
      Catalog::Open(log.get(), Clock::Real(), std::move(options));
  if (!catalog.ok()) return catalog.status();

  // Server certificate, issued fresh from the root for this run.
  crypto::EcPrivateKey server_key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec spec;
  spec.common_name = "sphere-management";
  spec.subject_public_key = server_key.PublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24 * 30);
  spec.usage = crypto::KeyUsage::kServerAuth;
  spec.dns_sans = {"localhost"};
  spec.ip_sans = {"127.0.0.1"};
  absl::StatusOr<std::string> server_cert =
      crypto::IssueCertificate(spec, *root_key, *root_pem);
  if (!server_cert.ok()) return server_cert.status();

  // One bounded pool for every handler's catalog calls (declared before the
  // server: destroyed after it, so queued calls are answered first).
  WorkerPool workers({.threads = absl::GetFlag(FLAGS_workers),
                      .max_queue = static_cast<size_t>(
                          std::max(1, absl::GetFlag(FLAGS_worker_queue))),
                      .max_per_key = static_cast<size_t>(std::max(
                          1, absl::GetFlag(FLAGS_worker_queue_per_caller)))});
  ManagementServiceOptions service_options;
  service_options.workers = &workers;
  service_options.watch_progress_interval =
      absl::GetFlag(FLAGS_watch_progress_interval);
  if (etcd_channel != nullptr) {
    // Progress to shards only while etcd answers a quorum read: a replica
    // cut off from etcd lets its shards' catalogs go stale.
    service_options.catalog_probe = [l = log.get()] {
      return l->Revision().status();
    };
  }
  service_options.root_subject_line = root_cert->subject_line;
  service_options.watch_queue_limit = absl::GetFlag(FLAGS_watch_queue_limit);
  if (auto s = pki::CheckPrivateFile(layout.Path("image-signing.key"));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> signing_pem =
      util::ReadFile(layout.Path("image-signing.key"));
  if (!signing_pem.ok()) return signing_pem.status();
  absl::StatusOr<crypto::EcPrivateKey> signing_key =
      crypto::EcPrivateKey::FromPem(*signing_pem);
  if (!signing_key.ok()) return signing_key.status();
  if (auto s = util::MakeDirs(dir + "/images/catalog", 0700); !s.ok()) {
    return s;
  }
  // Stored packages are sealed under a key derived from the master key.
  auto pipeline = std::make_shared<ImagePipeline>(
      *signing_key, dir + "/images/catalog", PackageKeyFromMasterKey(*master));
  service_options.verify_image_package = [pipeline](absl::string_view tenant_id,
                                                    absl::string_view package) {
    return pipeline->Process(tenant_id, package);
  };
  RateLimiter::Options limits;
  limits.rate_per_second = absl::GetFlag(FLAGS_expensive_call_rate);
  limits.burst = absl::GetFlag(FLAGS_expensive_call_burst);
  RateLimiter expensive_calls(Clock::Real(), limits);
  service_options.expensive_call_limiter = &expensive_calls;
  // Shard leases: renewed by each registration, swept by the leader.
  const absl::Duration shard_ttl = absl::GetFlag(FLAGS_shard_lease_ttl);
  std::unique_ptr<ShardLeases> shard_leases;
  if (shard_ttl > absl::ZeroDuration()) {
    if (etcd_channel != nullptr) {
      shard_leases = std::make_unique<EtcdShardLeases>(
          etcd_channel, absl::GetFlag(FLAGS_etcd_prefix), shard_ttl,
          Clock::Real());
    } else {
      shard_leases =
          std::make_unique<MemoryShardLeases>(Clock::Real(), shard_ttl);
    }
    service_options.on_shard_registered =
        [leases = shard_leases.get()](const std::string& id) {
          if (absl::Status s = leases->Renew(id); !s.ok()) {
            log::Warning("shard lease renewal failed",
                         {{"shard", id}, {"error", s.ToString()}});
          }
        };
  }
  ManagementService service(catalog->get(), std::move(service_options));

  // Staged rollouts: counts from every shard with a platform-operator
  // credential issued from the root for this run; evaluated on the
  // manager's own thread.
  crypto::EcPrivateKey rollout_key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec rollout_spec;
  rollout_spec.common_name = "sphere-management-rollout";
  rollout_spec.subject_public_key = rollout_key.PublicKey();
  rollout_spec.not_before = absl::Now() - absl::Hours(1);
  rollout_spec.not_after = absl::Now() + absl::Hours(24 * 30);
  rollout_spec.usage = crypto::KeyUsage::kClientAuth;
  rollout_spec.claims.scope =
      std::string(auth::ScopeName(auth::Scope::kPlatformOperator));
  absl::StatusOr<std::string> rollout_cert =
      crypto::IssueCertificate(rollout_spec, *root_key, *root_pem);
  if (!rollout_cert.ok()) return rollout_cert.status();
  ShardDeploymentCounts shard_counts(
      catalog->get(), {*rollout_cert, rollout_key.ToPem(), *root_pem});
  absl::StatusOr<std::unique_ptr<RolloutManager>> rollouts =
      RolloutManager::Open(catalog->get(), Clock::Real(), &shard_counts,
                           *std::move(rollout_options));
  if (!rollouts.ok()) return rollouts.status();
  RolloutService rollout_service(rollouts->get(), root_cert->subject_line);

  rpc::ServerOptions server_options;
  server_options.address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  server_options.tls = {*server_cert, server_key.ToPem(), *root_pem};
  rpc::ServerRunner runner(server_options);
  runner.AddService(&service);
  runner.AddService(&rollout_service);
  if (auto s = runner.Start(); !s.ok()) return s;
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    if (auto s = util::WriteFile(absl::GetFlag(FLAGS_port_file),
                                 absl::StrCat(runner.port(), "\n"));
        !s.ok()) {
      runner.Shutdown(absl::ZeroDuration());
      return s;
    }
  }
  // Once-only work (compaction; later rollout stage advance) runs on the
  // leader: the only process of an embedded catalog, or the replica holding
  // the etcd election lease.
  if (etcd_channel == nullptr) {
    election = std::make_unique<SoleLeader>();
  } else {
    EtcdElectionOptions e;
    e.key = absl::StrCat(absl::GetFlag(FLAGS_etcd_prefix), "leader");
    e.candidate_id = runner.address();
    e.ttl = absl::GetFlag(FLAGS_leader_lease_ttl);
    e.on_change = [addr = runner.address()](bool leader) {
      log::Info(leader ? "became leader" : "no longer leader",
                {{"address", addr}});
    };
    absl::StatusOr<std::unique_ptr<EtcdLeaderElection>> started =
        EtcdLeaderElection::Start(etcd_channel, e);
    if (!started.ok()) {
      runner.Shutdown(absl::ZeroDuration());
      return started.status();
    }
    election = *std::move(started);
  }
  Compactor::Options compaction;
  compaction.interval = absl::GetFlag(FLAGS_compact_interval);
  compaction.keep_revisions =
      std::max<int64_t>(1, absl::GetFlag(FLAGS_compact_keep_revisions));
  auto compactor =
      std::make_unique<Compactor>(catalog->get(), election.get(), compaction);
  std::unique_ptr<ShardSweeper> sweeper;
  if (shard_leases != nullptr) {
    sweeper = std::make_unique<ShardSweeper>(catalog->get(), shard_leases.get(),
                                             election.get(), shard_ttl / 4);
  }
  (*rollouts)->RunEvery(absl::GetFlag(FLAGS_rollout_tick));
  log::Info("serving", {{"address", runner.address()},
                        {"revision", absl::StrCat((*catalog)->revision())}});
  int signal = rpc::WaitForTerminationSignal();
  log::Info("shutting down", {{"signal", absl::StrCat(signal)}});
  (*rollouts)->Stop();
  sweeper.reset();
  compactor.reset();
  election.reset();  // revokes the lease: another replica leads at once
  runner.Shutdown(absl::Seconds(absl::GetFlag(FLAGS_grace_seconds)));
  return absl::OkStatus();
}

}  // namespace
}  // namespace sphere::management

// Flags are spelled with dashes on the command line (--state-dir); absl
// flag names use underscores, so dashes in flag names are normalised.
static void NormaliseFlagNames(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (a[0] != '-' || a[1] != '-') continue;
    for (char* c = a + 2; *c != '\0' && *c != '='; ++c) {
      if (*c == '-') *c = '_';
    }
  }
}

int main(int argc, char** argv) {
  sphere::rpc::InstallTerminationSignalMask();
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles
  // (deadlock detection, on in non-NDEBUG builds): 3-5 % of an attestation's
  // CPU (issue 14). Tests keep it; the server does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  NormaliseFlagNames(argc, argv);
  absl::SetProgramUsageMessage(
      "Sphere management server: management --state-dir=DIR [--port=0] "
      "[--port-file=FILE] [--master-key-file=PATH | --master-key-env=NAME] "
      "(flags accept - or _)");
  absl::ParseCommandLine(argc, argv);
  sphere::log::SetComponent("management");
  absl::Status s = sphere::management::Run();
  if (!s.ok()) {
    sphere::log::Error("exiting", {{"error", s.ToString()}});
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
