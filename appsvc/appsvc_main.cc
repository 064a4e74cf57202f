// appsvc: Contoso's DW100 cloud as its own process (issue 13).
//
//   appsvc --state_dir DIR --management 127.0.0.1:PORT
//          [--port 0] [--port_file FILE] [--web_port 0] [--web_port_file FILE]
//          [--tenant Contoso] [--product DW100] [--seed_file seed.json]
//          [--sphere_cert tenant-op.pem --sphere_key tenant-op.key]
//
// Serves DeviceGateway and ContosoSupport (mTLS, gRPC, with health,
// reflection and /metrics from common/rpc) and the web pages over HTTPS. Its
// RocksDB lives in --db_dir (default DIR/appsvc/db). Devices are
// authenticated as a relying party: their certificates must chain to the
// platform root (DIR/pki/root.pem) and the catalog, followed over
// ManagementService.Watch (credential --watch_cert/--watch_key, default the
// cluster's DIR/pki/shard.*), must show them claimed by --tenant, assigned
// to --product and not revoked. The Sphere half of the support timeline is
// read with Contoso's tenant operator credential (--sphere_cert/--sphere_key).
//
// Ready once both port files are written (gRPC, then web).
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/device_registry.h"
#include "appsvc/durable_writer.h"
#include "appsvc/gateway_auth.h"
#include "appsvc/gateway_service.h"
#include "appsvc/grpc_services.h"
#include "appsvc/seed.h"
#include "appsvc/sphere_source.h"
#include "appsvc/watch_follower.h"
#include "appsvc/web_auth.h"
#include "appsvc/web_server.h"
#include "common/cluster/cluster_config.h"
#include "common/cluster/pki_layout.h"
#include "common/rpc/rpc.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "common/util/metrics.h"
#include "common/util/worker_pool.h"

ABSL_FLAG(std::string, state_dir, "",
          "Cluster state directory (PKI under DIR/pki; required)");
ABSL_FLAG(std::string, db_dir, "", "appsvc's RocksDB (default DIR/appsvc/db)");
ABSL_FLAG(std::string, management, "", "Management address host:port");
ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on");
ABSL_FLAG(int, port, 0, "gRPC port (0 = any free port)");
ABSL_FLAG(std::string, port_file, "", "Write the bound gRPC port here");
ABSL_FLAG(int, web_port, 0, "HTTPS port of the web pages (0 = any; -1 = off)");
ABSL_FLAG(std::string, web_port_file, "", "Write the bound HTTPS port here");
ABSL_FLAG(absl::Duration, web_session_ttl, absl::Hours(8),
          "How long a web login session lasts");
ABSL_FLAG(std::string, tenant, "Contoso", "Contoso's tenant (id or name)");
ABSL_FLAG(std::string, product, "DW100", "The DW100 product (id or name)");
ABSL_FLAG(std::string, seed_file, "",
          "JSON customers and repair shops (see appsvc/seed.h)");
ABSL_FLAG(std::string, tls_cert, "",
          "Server certificate (default DIR/pki/server.pem)");
ABSL_FLAG(std::string, tls_key, "", "Server key (default DIR/pki/server.key)");
ABSL_FLAG(std::string, root_ca, "", "Platform root (default DIR/pki/root.pem)");
ABSL_FLAG(std::string, watch_cert, "",
          "Credential for the catalog Watch (default DIR/pki/shard.pem)");
ABSL_FLAG(std::string, watch_key, "",
          "Key of --watch_cert (default DIR/pki/shard.key)");
ABSL_FLAG(std::string, sphere_cert, "",
          "Contoso tenant operator certificate for Sphere queries (optional: "
          "without it the timeline says Sphere data is unavailable)");
ABSL_FLAG(std::string, sphere_key, "", "Key of --sphere_cert");
ABSL_FLAG(int, workers, 32,
          "Worker threads for durable writes and Sphere calls (a telemetry "
          "batch holds one until its group commit is synced, so this bounds "
          "how many batches one synced write can carry)");
ABSL_FLAG(int, gateway_remembered_cas, 64,
          "Tenant CAs the gateway path remembers once verified to the "
          "platform root (a proof then costs two ECDSA verifies, not three); "
          "0 verifies every chain in full");
ABSL_FLAG(int, queue, 1024, "Work queue bound (beyond: RESOURCE_EXHAUSTED)");
ABSL_FLAG(int, per_device_in_flight, 4, "Queued calls one device may have");
ABSL_FLAG(absl::Duration, sync_timeout, absl::Seconds(30),
          "How long to wait for the first catalog snapshot");
ABSL_FLAG(double, drying_baseline_c, 65.0, "DW100 model drying mean (C)");
ABSL_FLAG(double, drying_tolerance_c, 10.0,
          "Allowed distance from the baseline");
ABSL_FLAG(int, anomaly_cycles, 3, "Consecutive anomalous cycles to raise");
ABSL_FLAG(double, rinse_low_pct, 15.0,
          "Rinse level that triggers a reorder offer");
ABSL_FLAG(
    std::string, server_name, sphere::rpc::kLocalServerName,
    "TLS name on the shards' certificates (cluster.json \"server_name\")");
ABSL_FLAG(std::string, server_names, "",
          "Per-shard TLS names, SHARD_ID=NAME,... (cluster.json "
          "\"server_names\"); other shards: --server_name");
ABSL_FLAG(std::string, management_server_name, "",
          "TLS name on management's certificate (default --server_name)");

namespace contoso::appsvc {
namespace {

int Fail(const absl::Status& s) {
  sphere::log::Error("appsvc failed", {{"error", s.ToString()}});
  return 1;
}

std::string Or(const std::string& flag, const std::string& dflt) {
  return flag.empty() ? dflt : flag;
}

std::string ManagementServerName() {
  return Or(absl::GetFlag(FLAGS_management_server_name),
            absl::GetFlag(FLAGS_server_name));
}

absl::StatusOr<sphere::rpc::TlsFiles> LoadTls(const std::string& cert,
                                              const std::string& key,
                                              const std::string& ca) {
  sphere::rpc::TlsFiles tls;
  for (auto [path, out] :
       {std::pair{cert, &tls.cert_pem}, std::pair{key, &tls.key_pem},
        std::pair{ca, &tls.ca_pem}}) {
    auto text = sphere::util::ReadFile(path);
    if (!text.ok()) return text.status();
    *out = std::move(*text);
  }
  return tls;
}

int Main() {
  sphere::log::SetComponent("appsvc");
  const std::string dir = absl::GetFlag(FLAGS_state_dir);
  if (dir.empty() || absl::GetFlag(FLAGS_management).empty()) {
    return Fail(absl::InvalidArgumentError(
        "--state_dir and --management are required"));
  }
  for (const std::string& name :
       {absl::GetFlag(FLAGS_server_name), ManagementServerName()}) {
    if (name.size() > sphere::cluster::kMaxServerNameBytes) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--server_name / --management_server_name longer than ",
                       sphere::cluster::kMaxServerNameBytes, " bytes")));
    }
  }
  auto shard_server_names = ParseServerNames(absl::GetFlag(FLAGS_server_names));
  if (!shard_server_names.ok()) return Fail(shard_server_names.status());
  const std::string cert = Or(absl::GetFlag(FLAGS_tls_cert),
                              sphere::cluster::PkiPath(dir, "server.pem"));
  const std::string key = Or(absl::GetFlag(FLAGS_tls_key),
                             sphere::cluster::PkiPath(dir, "server.key"));
  const std::string root = Or(absl::GetFlag(FLAGS_root_ca),
                              sphere::cluster::PkiPath(dir, "root.pem"));
  auto server_tls = LoadTls(cert, key, root);
  if (!server_tls.ok()) return Fail(server_tls.status());
  auto watch_tls = LoadTls(Or(absl::GetFlag(FLAGS_watch_cert),
                              sphere::cluster::PkiPath(dir, "shard.pem")),
                           Or(absl::GetFlag(FLAGS_watch_key),
                              sphere::cluster::PkiPath(dir, "shard.key")),
                           root);
  if (!watch_tls.ok()) return Fail(watch_tls.status());
  sphere::rpc::TlsFiles sphere_tls;
  if (!absl::GetFlag(FLAGS_sphere_cert).empty()) {
    auto t = LoadTls(absl::GetFlag(FLAGS_sphere_cert),
                     absl::GetFlag(FLAGS_sphere_key), root);
    if (!t.ok()) return Fail(t.status());
    sphere_tls = *t;
  }

  const std::string db_dir =
      Or(absl::GetFlag(FLAGS_db_dir), dir + "/appsvc/db");
  if (auto s = sphere::util::MakeDirs(db_dir, 0700); !s.ok()) return Fail(s);
  auto store = sphere::store::OpenRocksStore(db_dir, ColumnFamilies());
  if (!store.ok()) return Fail(store.status());
  sphere::store::GroupCommitWriter group(store->get(), {"appsvc"});
  SharedGroupCommit writer(&group);

  CloudOptions copts;
  copts.detector.baseline_c = absl::GetFlag(FLAGS_drying_baseline_c);
  copts.detector.model_tolerance_c = absl::GetFlag(FLAGS_drying_tolerance_c);
  copts.detector.consecutive = absl::GetFlag(FLAGS_anomaly_cycles);
  copts.rinse_low_pct = absl::GetFlag(FLAGS_rinse_low_pct);
  ContosoCloud cloud(store->get(), &writer, sphere::Clock::Real(), copts);
  std::vector<WebAccount> web_accounts;
  if (!absl::GetFlag(FLAGS_seed_file).empty()) {
    auto text = sphere::util::ReadFile(absl::GetFlag(FLAGS_seed_file));
    if (!text.ok()) return Fail(text.status());
    auto seed = ParseSeed(*text);
    if (!seed.ok()) return Fail(seed.status());
    if (auto s = cloud.LoadSeed(*seed); !s.ok()) return Fail(s);
    auto accounts = ParseSeedAccounts(*text);
    if (!accounts.ok()) return Fail(accounts.status());
    web_accounts = std::move(*accounts);
  }

  DeviceRegistry registry(
      {absl::GetFlag(FLAGS_tenant), absl::GetFlag(FLAGS_product)});
  WatchFollower follower(
      sphere::rpc::NewChannel(absl::GetFlag(FLAGS_management), *watch_tls,
                              ManagementServerName()),
      &registry);
  follower.Start();
  if (!registry.WaitForRevision(0, absl::GetFlag(FLAGS_sync_timeout))) {
    follower.Stop();
    return Fail(absl::DeadlineExceededError(absl::StrCat(
        "no catalog snapshot from management ", absl::GetFlag(FLAGS_management),
        " within --sync_timeout")));
  }
  auto revision_gauge = sphere::metrics::RegisterGaugeCallback(
      "contoso_catalog_revision",
      "Sphere catalog revision appsvc's device registry has applied",
      [&registry] {
        return std::vector<sphere::metrics::Sample>{
            {{}, static_cast<double>(registry.revision())}};
      });
  auto devices_gauge = sphere::metrics::RegisterGaugeCallback(
      "contoso_catalog_devices", "Devices in appsvc's device registry",
      [&registry] {
        return std::vector<sphere::metrics::Sample>{
            {{}, static_cast<double>(registry.device_count())}};
      });
  GrpcSphereSource sphere_source(&registry, sphere_tls, absl::Seconds(5),
                                 absl::GetFlag(FLAGS_server_name),
                                 *std::move(shard_server_names));
  sphere::WorkerPool pool(absl::GetFlag(FLAGS_workers),
                          absl::GetFlag(FLAGS_queue),
                          absl::GetFlag(FLAGS_per_device_in_flight));
  DeviceGatewayService gateway(&cloud, &registry, &pool, sphere::Clock::Real());
  ContosoSupportService support(&cloud, &registry, &sphere_source, &pool);
  // Gateway path (contoso.v1.ContosoGateway): appsvc's own token key, made
  // at first start in DIR/appsvc (0600).
  if (auto s = sphere::util::MakeDirs(dir + "/appsvc", 0700); !s.ok()) {
    return Fail(s);
  }
  auto gateway_key = LoadOrCreateGatewayKey(dir + "/appsvc/gateway_token.key");
  if (!gateway_key.ok()) return Fail(gateway_key.status());
  const int remembered_cas = absl::GetFlag(FLAGS_gateway_remembered_cas);
  if (remembered_cas < 0 || remembered_cas > 4096) {
    return Fail(absl::InvalidArgumentError(
        "--gateway_remembered_cas must be 0..4096"));
  }
  GatewayAuthOptions gateway_options;
  gateway_options.max_remembered_cas = static_cast<size_t>(remembered_cas);
  GatewayAuth gateway_auth(*gateway_key, server_tls->ca_pem, &registry,
                           sphere::Clock::Real(), gateway_options);
  auto gateway_gauge = sphere::metrics::RegisterGaugeCallback(
      "contoso_gateway_proofs",
      "Gateway path: tokens issued, chains verified through a remembered "
      "tenant CA, tenant CAs remembered",
      [&gateway_auth] {
        return std::vector<sphere::metrics::Sample>{
            {{{"what", "tokens_issued"}},
             static_cast<double>(gateway_auth.tokens_issued())},
            {{{"what", "chains_via_remembered_ca"}},
             static_cast<double>(gateway_auth.chains_via_remembered_ca())},
            {{{"what", "remembered_cas"}},
             static_cast<double>(gateway_auth.remembered_cas())}};
      });
  ContosoGatewayService gateway_path(&gateway_auth, &cloud, &pool);

  sphere::rpc::ServerOptions o;
  o.address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  o.tls = *server_tls;
  o.max_request_bytes = 512 << 10;
  sphere::rpc::ServerRunner runner(o);
  runner.AddService(&gateway);
  runner.AddService(&support);
  runner.AddService(&gateway_path);
  if (auto s = runner.Start(); !s.ok()) return Fail(s);

  WebAuth::Options auth_options;
  auth_options.session_ttl = absl::GetFlag(FLAGS_web_session_ttl);
  WebAuth web_auth(sphere::Clock::Real(), auth_options);
  if (auto s = web_auth.SetAccounts(web_accounts); !s.ok()) return Fail(s);
  if (web_accounts.empty() && absl::GetFlag(FLAGS_web_port) >= 0) {
    sphere::log::Warning(
        "no web accounts in the seed file: nobody can log in to the web pages",
        {});
  }
  std::unique_ptr<WebServer> web;
  if (absl::GetFlag(FLAGS_web_port) >= 0) {
    WebServerOptions w;
    w.host = absl::GetFlag(FLAGS_host);
    w.port = absl::GetFlag(FLAGS_web_port);
    w.cert_file = cert;
    w.key_file = key;
    web = std::make_unique<WebServer>(&cloud, &sphere_source, &web_auth, w);
    if (auto s = web->Start(); !s.ok()) return Fail(s);
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    if (auto s = sphere::util::WriteFile(absl::GetFlag(FLAGS_port_file),
                                         absl::StrCat(runner.port()));
        !s.ok())
      return Fail(s);
  }
  if (web && !absl::GetFlag(FLAGS_web_port_file).empty()) {
    if (auto s = sphere::util::WriteFile(absl::GetFlag(FLAGS_web_port_file),
                                         absl::StrCat(web->port()));
        !s.ok())
      return Fail(s);
  }
  sphere::log::Info(
      "appsvc serving",
      {{"grpc", runner.address()},
       {"web", web ? absl::StrCat("https://", absl::GetFlag(FLAGS_host), ":",
                                  web->port(), "/support")
                   : "off"},
       {"catalog_revision", absl::StrCat(registry.revision())}});
  sphere::rpc::WaitForTerminationSignal();
  sphere::log::Info("appsvc shutting down", {});
  if (web) web->Stop();
  runner.Shutdown(absl::Seconds(5));
  follower.Stop();
  return 0;
}

}  // namespace
}  // namespace contoso::appsvc

int main(int argc, char** argv) {
  sphere::rpc::InstallTerminationSignalMask();
  // As the shard: Debian's Abseil checks every Mutex acquisition for
  // lock-order cycles (deadlock detection, on in non-NDEBUG builds). A
  // gateway's telemetry call locks one stripe per device (16), so the cycle
  // graph was ~4 % of appsvc's CPU while readings arrive (issue 14). Tests
  // keep it; the server does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "appsvc: Contoso's DW100 cloud (telemetry, anomalies, diagnostics, "
      "notifications, parts, orders, web pages)");
  absl::ParseCommandLine(argc, argv);
  return contoso::appsvc::Main();
}
