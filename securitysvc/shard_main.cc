// securitysvc shard: one shard of the Security Service. Serves the
// AttestationService for the devices the shard map assigns to it, follows the
// management catalog through Watch, and keeps its state in an encrypted
// RocksDB under DIR/shards/<id>/.
//
//   shard --state-dir DIR --shard-id shard-0 --management 127.0.0.1:PORT
//         [--port 0] [--port-file FILE]
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/store/keyring.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "common/util/log.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/attestation/attestation_service.h"
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

namespace sphere {
namespace {

int Fail(const absl::Status& s) {
  log::Error("shard failed", {{"error", s.ToString()}});
  return 1;
}

int Main() {
  const std::string dir = absl::GetFlag(FLAGS_state_dir);
  const std::string id = absl::GetFlag(FLAGS_shard_id);
  log::SetComponent(id);
  if (dir.empty() || absl::GetFlag(FLAGS_management).empty()) {
    return Fail(absl::InvalidArgumentError(
        "--state-dir and --management are required"));
  }
  auto pki = pki::Load(dir);
  if (!pki.ok()) return Fail(pki.status());
  const std::string shard_dir = absl::StrCat(dir, "/shards/", id);
  if (auto s = rpc::WriteFile(absl::StrCat(dir, "/.probe"), ""); !s.ok()) {
    return Fail(s);
  }
  std::string mkdir = absl::StrCat("mkdir -p '", shard_dir, "'");
  if (system(mkdir.c_str()) != 0) {
    return Fail(absl::InternalError(absl::StrCat("cannot create ", shard_dir)));
  }
  auto data_key = store::LoadOrCreateDataKey(
      pki->Path("master.key"), absl::StrCat(shard_dir, "/data.key.wrapped"));
  if (!data_key.ok()) return Fail(data_key.status());
  store::RocksOptions ropts;
  ropts.data_key = *data_key;
  auto db = store::OpenRocksStore(absl::StrCat(shard_dir, "/db"),
                                  attestation::ColumnFamilies(), ropts);
  if (!db.ok()) return Fail(db.status());

  auto server_tls = pki->TlsFor("server");
  if (!server_tls.ok()) return Fail(server_tls.status());
  auto shard_tls = pki->TlsFor("shard");
  if (!shard_tls.ok()) return Fail(shard_tls.status());

  catalog::InMemoryCatalog catalog(pki->master_key);
  sharding::ShardRouter router(id);
  auto mgmt_channel =
      rpc::NewChannel(absl::GetFlag(FLAGS_management), *shard_tls);
  catalog::CatalogFollower follower(
      mgmt_channel, &catalog,
      [&router](const v1::ShardMap& map) { router.Update(map); });

  attestation::NonceStore nonces(Clock::Real());
  auth::SessionTokens tokens(pki->SessionTokenKey());
  attestation::Attestor attestor(&catalog, db->get(), &nonces, &tokens,
                                 Clock::Real(), {});
  attestation::AttestationServiceImpl attestation_service(&attestor, &router);

  rpc::ServerOptions sopts;
  sopts.address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  sopts.tls = *server_tls;
  sopts.require_client_cert = true;
  rpc::ServerRunner runner(sopts);
  runner.AddService(&attestation_service);
  if (auto s = runner.Start(); !s.ok()) return Fail(s);

  // Register with management (which publishes the new shard map), then
  // follow the catalog.
  auto stub = v1::ManagementService::NewStub(mgmt_channel);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    ctx.set_wait_for_ready(true);
    v1::RegisterShardRequest req;
    req.mutable_shard()->set_id(id);
    req.mutable_shard()->set_address(runner.address());
    req.mutable_shard()->set_healthy(true);
    v1::ShardMap map;
    grpc::Status st = stub->RegisterShard(&ctx, req, &map);
    if (!st.ok()) {
      return Fail(absl::UnavailableError(absl::StrCat(
          "cannot register with management at ",
          absl::GetFlag(FLAGS_management), ": ", st.error_message())));
    }
    router.Update(map);
  }
  follower.Start();
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
  log::Info("shard ready", {{"address", runner.address()},
                            {"catalog_revision", absl::StrCat(catalog.revision())}});
  int sig = rpc::WaitForTerminationSignal();
  log::Info("shutting down", {{"signal", absl::StrCat(sig)}});
  runner.Shutdown(absl::Seconds(5));
  follower.Stop();
  return 0;
}

}  // namespace
}  // namespace sphere

int main(int argc, char** argv) {
  sphere::rpc::InstallTerminationSignalMask();
  absl::SetProgramUsageMessage(
      "Security Service shard: attestation and device certificates");
  absl::ParseCommandLine(argc, argv);
  return sphere::Main();
}
