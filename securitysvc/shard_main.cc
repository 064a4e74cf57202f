// securitysvc shard: one shard of the Security Service (see
// securitysvc/shard_server/shard_server.h). Hosts the attestation plug-in for
// the devices the shard map assigns to it, follows the management catalog, and
// keeps its state in an encrypted RocksDB under DIR/shards/<id>/.
//
//   shard --state-dir DIR --shard-id shard-0 --management 127.0.0.1:PORT
//         [--port 0] [--port-file FILE] [--heartbeat_interval 5s]
//         [--challenge_burst 20] [--challenge_per_second 1]
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc/rpc.h"
#include "common/store/keyring.h"
#include "common/store/store.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "securitysvc/attestation/attestation_plugin.h"
#include "securitysvc/errors/error_flags.h"
#include "securitysvc/errors/error_plugin.h"
#include "securitysvc/pki/pki.h"
#include "securitysvc/shard_flags.h"
#include "securitysvc/shard_server/shard_server.h"
#include "securitysvc/update/cluster_package_source.h"
#include "securitysvc/update/update_plugin.h"

ABSL_FLAG(std::string, state_dir, "", "Cluster state directory (required)");
ABSL_FLAG(std::string, shard_id, "shard-0", "This shard's id");
ABSL_FLAG(std::string, management, "", "Management address host:port");
ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on");
ABSL_FLAG(int, port, 0, "Port to listen on (0 = any free port)");
ABSL_FLAG(std::string, port_file, "", "Write the bound port here when ready");
ABSL_FLAG(absl::Duration, sync_timeout, absl::Seconds(30),
          "How long to wait for the first catalog sync");
ABSL_FLAG(std::string, master_key_file, "",
          "Cluster master key file (32 raw bytes or 64 hex digits, mode 0600); "
          "default $CREDENTIALS_DIRECTORY/master.key if present, else "
          "DIR/pki/master.key");
ABSL_FLAG(std::string, master_key_env, "",
          "Environment variable holding the cluster master key (64 hex "
          "digits), instead of --master_key_file");
ABSL_FLAG(int, max_request_bytes, 1 << 20,
          "Largest request this shard accepts (attestation requests are "
          "small; see docs/threat-model.md, Limits)");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(5),
          "How often the shard re-registers with management (device count, "
          "health)");
ABSL_FLAG(absl::Duration, max_catalog_staleness, absl::Seconds(30),
          "Refuse attestation (UNAVAILABLE, 'catalog stale') once the "
          "catalog watch delivered nothing, event or progress notification, "
          "for this long; 0 = no bound");
ABSL_FLAG(double, challenge_burst, 20,
          "GetChallenge calls one device may make at once");
ABSL_FLAG(double, challenge_per_second, 1,
          "GetChallenge calls per second one device may sustain");

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
  if (absl::GetFlag(FLAGS_challenge_burst) < 1 ||
      absl::GetFlag(FLAGS_challenge_per_second) <= 0) {
    return Fail(absl::InvalidArgumentError(
        "--challenge_burst must be >= 1 and --challenge_per_second > 0"));
  }
  // --status_read_* and --session_token_slots (securitysvc/shard_flags.h).
  absl::StatusOr<ShardSizes> sizes = ShardSizesFromFlags();
  if (!sizes.ok()) return Fail(sizes.status());
  auto pki = pki::Load(dir, {absl::GetFlag(FLAGS_master_key_file),
                             absl::GetFlag(FLAGS_master_key_env)});
  if (!pki.ok()) return Fail(pki.status());
  const std::string shard_dir = absl::StrCat(dir, "/shards/", id);
  if (auto s = util::MakeDirs(shard_dir, 0700); !s.ok()) return Fail(s);
  auto data_key = store::LoadOrCreateDataKeyUnder(
      pki->master_key, pki->master_key_origin,
      absl::StrCat(shard_dir, "/data.key.wrapped"));
  if (!data_key.ok()) return Fail(data_key.status());
  auto server_tls = pki->TlsFor("server");
  if (!server_tls.ok()) return Fail(server_tls.status());
  auto shard_tls = pki->TlsFor("shard");
  if (!shard_tls.ok()) return Fail(shard_tls.status());

  shard::ShardServerOptions o;
  o.shard_id = id;
  o.address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  o.server_tls = *server_tls;
  o.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  o.session_token_key = pki->SessionTokenKey();
  o.master_key = pki->master_key;
  o.open_store = [db_path = absl::StrCat(shard_dir, "/db"), key = *data_key,
                  memtable = sizes->store_memtable_bytes,
                  block_cache = sizes->store_block_cache_bytes](
                     const std::vector<std::string>& cfs) {
    store::RocksOptions ro = shard::ShardStoreOptions(key);
    ro.memtable_budget_bytes = memtable;  // --store_memtable_mib
    ro.block_cache_bytes = block_cache;   // --store_block_cache_mib
    return store::OpenRocksStore(db_path, cfs, ro);
  };
  o.management_address = absl::GetFlag(FLAGS_management);
  o.management_tls = *shard_tls;
  o.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  o.sync_timeout = absl::GetFlag(FLAGS_sync_timeout);
  o.max_catalog_staleness = absl::GetFlag(FLAGS_max_catalog_staleness);

  o.session_token_slots = sizes->session_token_slots;
  attestation::AttestationPlugin::Options aopts;
  aopts.status_reads = sizes->status_reads;
  aopts.challenge_rate.burst = absl::GetFlag(FLAGS_challenge_burst);
  aopts.challenge_rate.rate_per_second =
      absl::GetFlag(FLAGS_challenge_per_second);
  update::UpdatePlugin::Options uopts;
  uopts.signer =
      std::make_shared<update::KeyMetadataSigner>(pki->image_signing_key);
  uopts.packages = update::ClusterPackageSource(dir, pki->master_key);
  auto update_plugin = std::make_unique<update::UpdatePlugin>(std::move(uopts));
  aopts.device_status_extension =
      [up = update_plugin.get()](absl::string_view id, v1::DeviceStatus* s) {
        up->FillDeviceStatus(id, s);
      };
  aopts.device_history_extension =
      [up = update_plugin.get()](absl::string_view id,
                                 std::vector<v1::DeviceHistoryEntry>* out) {
        up->FillDeviceHistory(id, out);
      };
  // Crashes and watchdog resets after an install count against the rollout
  // stage (issue 11).
  errors::ErrorReportingPlugin::Options eopts;
  // Per-device upload quota: --error_device_*
  // (securitysvc/errors/error_flags.h).
  absl::StatusOr<errors::ErrorStoreOptions> equota =
      errors::ErrorStoreOptionsFromFlags();
  if (!equota.ok()) return Fail(equota.status());
  eopts.store = *equota;
  eopts.store.max_cached_devices = sizes->error_cached_devices;
  eopts.on_accepted = [up = update_plugin.get()](
                          const std::string& id,
                          const v1::UploadErrorsRequest& batch) {
    up->OnErrorsAccepted(id, batch);
  };
  std::vector<std::unique_ptr<shard::ShardPlugin>> plugins;
  plugins.push_back(std::make_unique<attestation::AttestationPlugin>(aopts));
  plugins.push_back(std::move(update_plugin));
  plugins.push_back(std::make_unique<errors::ErrorReportingPlugin>(eopts));

  shard::ShardServer server(std::move(o), std::move(plugins));
  if (auto s = server.Run(absl::GetFlag(FLAGS_port_file)); !s.ok()) {
    return Fail(s);
  }
  return 0;
}

}  // namespace
}  // namespace sphere

int main(int argc, char** argv) {
  sphere::rpc::InstallTerminationSignalMask();
  // Debian's Abseil checks every Mutex acquisition for lock-order cycles
  // (deadlock detection, on in non-NDEBUG builds): 3-5 % of an attestation's
  // CPU (issue 14). Tests keep it; the server does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "Security Service shard: attestation and device certificates");
  // --master-key-file / --master-key-env are also accepted with dashes.
  for (int i = 1; i < argc; ++i) {
    for (const char* name : {"--master-key-file", "--master-key-env"}) {
      const size_t n = std::strlen(name);
      if (std::strncmp(argv[i], name, n) == 0 &&
          (argv[i][n] == '=' || argv[i][n] == '\0')) {
        for (size_t k = 2; k < n; ++k) {
          if (argv[i][k] == '-') argv[i][k] = '_';
        }
      }
    }
  }
  absl::ParseCommandLine(argc, argv);
  return sphere::Main();
}
