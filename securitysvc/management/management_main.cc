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

#include <cstdio>
#include <memory>
#include <string>

#include "securitysvc/management/image_pipeline.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/keyring.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "common/util/log.h"
#include "common/util/rate_limiter.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/management_service.h"
#include "securitysvc/management/rollout_manager.h"
#include "securitysvc/management/rollout_service.h"
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
  // Leader gate for management replicas (branch etcd): wire
  // o.is_leader = [&election] { return election.IsLeader(); } here.
  return o;
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_state_dir);
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "--state-dir is required (the directory the cluster bootstrap wrote "
        "pki/ into)");
  }
  const std::string pki = dir + "/pki";
  absl::StatusOr<std::string> root_pem = rpc::ReadFile(pki + "/root.pem");
  if (!root_pem.ok()) return root_pem.status();
  if (auto s = pki::CheckPrivateFile(pki + "/root.key"); !s.ok()) return s;
  absl::StatusOr<std::string> root_key_pem = rpc::ReadFile(pki + "/root.key");
  if (!root_key_pem.ok()) return root_key_pem.status();
  std::string master_origin;
  absl::StatusOr<std::string> master = pki::LoadMasterKey(
      {absl::GetFlag(FLAGS_master_key_file), absl::GetFlag(FLAGS_master_key_env)},
      dir, /*create=*/false, &master_origin);
  if (!master.ok()) return master.status();
  absl::StatusOr<crypto::EcPrivateKey> root_key =
      crypto::EcPrivateKey::FromPem(*root_key_pem);
  if (!root_key.ok()) return root_key.status();
  absl::StatusOr<crypto::ParsedCertificate> root_cert =
      crypto::ParseCertificate(*root_pem);
  if (!root_cert.ok()) return root_cert.status();

  if (auto s = rpc::MakeDirs(dir + "/management", 0700); !s.ok()) return s;
  absl::StatusOr<std::string> data_key = store::LoadOrCreateDataKeyUnder(
      *master, master_origin, dir + "/management/data.key.wrapped");
  if (!data_key.ok()) return data_key.status();
  store::RocksOptions rocks;
  rocks.data_key = *data_key;
  absl::StatusOr<std::unique_ptr<store::Store>> db = store::OpenRocksStore(
      dir + "/management/db", Catalog::ColumnFamilies(), rocks);
  if (!db.ok()) return db.status();

  CatalogOptions options;
  options.root_key = *root_key;
  options.root_cert_pem = *root_pem;
  options.master_key = *master;
  options.virtual_nodes = absl::GetFlag(FLAGS_virtual_nodes);
  absl::StatusOr<RolloutManager::Options> rollout_options = RolloutFlags();
  if (!rollout_options.ok()) return rollout_options.status();
  if (absl::GetFlag(FLAGS_staged_rollout)) {
    options.new_deployment_rollout_fraction =
        rollout_options->plan.stage_percents.front() / 100.0;
  }
  absl::StatusOr<std::unique_ptr<Catalog>> catalog =
      Catalog::Open(db->get(), Clock::Real(), std::move(options));
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

  ManagementServiceOptions service_options;
  service_options.root_subject_line = root_cert->subject_line;
  service_options.watch_queue_limit = absl::GetFlag(FLAGS_watch_queue_limit);
  if (auto s = pki::CheckPrivateFile(pki + "/image-signing.key"); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> signing_pem =
      rpc::ReadFile(pki + "/image-signing.key");
  if (!signing_pem.ok()) return signing_pem.status();
  absl::StatusOr<crypto::EcPrivateKey> signing_key =
      crypto::EcPrivateKey::FromPem(*signing_pem);
  if (!signing_key.ok()) return signing_key.status();
  if (auto s = rpc::MakeDirs(dir + "/images/catalog", 0700); !s.ok()) {
    return s;
  }
  // Stored packages are sealed under a key derived from the master key.
  auto pipeline = std::make_shared<ImagePipeline>(
      *signing_key, dir + "/images/catalog", PackageKeyFromMasterKey(*master));
  service_options.verify_image_package =
      [pipeline](absl::string_view tenant_id, absl::string_view package) {
        return pipeline->Process(tenant_id, package);
      };
  RateLimiter::Options limits;
  limits.rate_per_second = absl::GetFlag(FLAGS_expensive_call_rate);
  limits.burst = absl::GetFlag(FLAGS_expensive_call_burst);
  RateLimiter expensive_calls(Clock::Real(), limits);
  service_options.expensive_call_limiter = &expensive_calls;
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
  rollout_spec.claims.scope = "platform-operator";
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
    if (auto s = rpc::WriteFile(absl::GetFlag(FLAGS_port_file),
                                absl::StrCat(runner.port(), "\n"));
        !s.ok()) {
      runner.Shutdown(absl::ZeroDuration());
      return s;
    }
  }
  (*rollouts)->RunEvery(absl::GetFlag(FLAGS_rollout_tick));
  log::Info("serving", {{"address", runner.address()},
                        {"revision", absl::StrCat((*catalog)->revision())}});
  int signal = rpc::WaitForTerminationSignal();
  log::Info("shutting down", {{"signal", absl::StrCat(signal)}});
  (*rollouts)->Stop();
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
