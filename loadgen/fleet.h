// Fleet: the twins one loadgen process holds and everything its phases
// share: the cluster's addresses and credentials, the factory inputs (the
// platform image-signing key the ROM trusts, the factory OS images), the
// shared TwinConfig, the tenant that claims the devices.
//
// Twins are twin::Twin objects (the twin library over mcu::Device): the load
// generator has no device logic of its own. Memory per idle twin is what the
// Twin costs (see twin/twin.h); nothing per twin is kept here besides the
// owning pointer.
//
// Credentials (all read from the cluster's state directory, as the factory
// tool and spherectl do): the platform-operator credential for the factory
// registry and claims (management), and the gateway credential that
// multiplexes every twin's attestation over a few channels (DESIGN §5): the
// per-device proof is the quote, signed by the device key.
//
// Thread-safety: phases run one at a time on the runner's thread; a phase
// may use threads of its own inside Run.
#ifndef SPHERE_LOADGEN_FLEET_H_
#define SPHERE_LOADGEN_FLEET_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "loadgen/report.h"
#include "protos/management.grpc.pb.h"
#include "twin/twin.h"

namespace sphere::loadgen {

struct FleetOptions {
  std::string cluster_file;
  uint64_t twins = 1000;
  int cores = 2;  // the crypto bound's cores; manufacture's threads
  // Attestation: closed loop (rate 0: as fast as the window allows) or open
  // loop (new twins start at `rate` per second whatever the answers do).
  double rate = 0;
  size_t max_active = 256;       // twins mid-attestation (TwinDriver)
  int max_in_flight = 128;       // RPCs in flight (AsyncAttestationClient)
  int attest_batch = 256;        // twins per GetChallenges/AttestBatch RPC
  // attest phase on the gateway channels: twins mid-attestation at once
  // (--tls-per-twin and --fault use max_active: one connection per active
  // twin; twins left to start after the fault). Wide
  // enough that each shard's batch RPCs fill up (issue 14: per-RPC cost).
  size_t attest_window = 2048;
  int claim_window = 64;         // ClaimDevice calls in flight (batch 1)
  // Devices per ClaimDevices call (bulk claim into the fleet's group, one
  // catalog revision per batch); 1 = ClaimDevice + AssignDevice per device.
  int claim_batch = 1000;
  int verify_chain_every = 100;  // every Nth twin verifies its chain; 0 none
  bool tls_per_twin = false;     // one mTLS connection (handshake) per twin
  std::string fault;             // "" or "restart-shard"
  double fault_at = 0.3;         // fraction of attestations done
  absl::Duration phase_timeout = absl::Hours(4);
  std::string tenant;    // "" = loadgen-<unix seconds>
  int error_events = 3;  // error_report: app crashes per twin
  // error_report: twins per UploadErrorsBatch RPC (1 = one UploadErrors RPC
  // per twin) and those RPCs in flight (a shard's first-upload reads queue
  // on one ingest worker of bounded queue: keep batch x in-flight per shard
  // well under ErrorStoreOptions::max_worker_queue).
  int error_batch = 128;
  int error_in_flight = 16;
  // update_install: fraction of the certified fleet that installs a real
  // deployment (at least one twin; 0 skips the phase), and the size of the
  // deployed app image's payload.
  double update_fraction = 0.01;
  int update_image_kib = 64;
  // update_install: the fraction re-attests before its first GetUpdates
  // (the behaviour before stop 23) instead of a catalog barrier per shard.
  bool install_reattest = false;
  // update_install: turn tcmalloc's aggressive decommit on during the
  // installs (the behaviour of stop 22; it is off by default since stop 24,
  // third_party/system_libs/malloc_settings.cc).
  bool install_decommit = false;
  // update_check: twins per GetUpdatesBatch RPC on the gateway channels
  // (1 = one GetUpdates RPC per twin, --in-flight of them) and those batch
  // RPCs in flight per shard.
  int update_batch = 256;
  int update_in_flight = 4;
  // telemetry: readings per ReportTelemetry batch (<= 1000) and batches
  // per twin (0 skips the phase). One batch of 100 per twin by default:
  // 10^8 readings at a million twins (5 * 10^8 at the old 5 batches would
  // take 40 minutes even at 200k/s); ingest is still measured over all of
  // them. --telemetry-batches 5 runs the old volume.
  int telemetry_batch = 100;
  int telemetry_batches = 1;
  // Twins keep their device certificate from the attest phase
  // (TwinConfig::keep_certificate, one tenant CA copy per process), so the
  // telemetry phase proves without attesting again.
  bool keep_certificates = true;
  // telemetry: every Nth twin drops its kept certificate before proving and
  // attests again first (the path of a twin whose certificate expired or
  // was never kept); 0 = none, 1 = every twin (the pre-keeping behaviour).
  int prove_reattest_every = 0;
  // telemetry: twins proving themselves to appsvc at once (GetChallenge +
  // Prove per twin), and senders of readings, over the shared channels.
  int prove_window = 32;
  // appsvc for the telemetry phase instead of cluster.json's (e.g. one
  // started for the fleet's --tenant; its --product must be "loadgen").
  std::string appsvc;
};

// ReadProcessRss returns VmRSS of `pid` (0 = this process) in bytes.
absl::StatusOr<uint64_t> ReadProcessRss(pid_t pid);

class Fleet {
 public:
  static absl::StatusOr<std::unique_ptr<Fleet>> Open(FleetOptions options);

  const FleetOptions& options() const { return options_; }
  const cluster::ClusterConfig& cluster() const { return cluster_; }
  const rpc::TlsFiles& operator_tls() const { return operator_tls_; }
  const rpc::TlsFiles& gateway_tls() const { return gateway_tls_; }
  const std::string& rom_key() const { return rom_key_; }
  const std::vector<v1::StoredImage>& images() const { return images_; }
  v1::ManagementService::Stub* management() { return management_.get(); }

  // Shared twin configs: most twins skip chain verification (the service's
  // speed is measured), every verify_chain_every-th verifies it.
  twin::TwinConfig* config() { return &config_; }
  twin::TwinConfig* verifying_config() { return &verifying_; }
  void set_min_catalog_revision(int64_t revision);

  std::vector<std::unique_ptr<twin::Twin>>& twins() { return twins_; }

  std::string tenant_id;        // set by the claim phase
  std::string device_group_id;  // set by the claim phase; devices join it
  std::string product_id;       // set by the claim phase (the fleet's product)
  std::optional<FaultReport> fault;
  uint64_t tls_connections = 0;  // --tls-per-twin: connections opened
  // Error upload policy the twins' configs point at once the error_report
  // phase runs (outlives the twins' uploaders).
  twin::ErrorUploadPolicy error_upload;

  // ShardPid reads DIR/run/<shard id>.pid (written by local_cluster).
  absl::StatusOr<pid_t> ShardPid(const std::string& shard_id) const;
  // ShardsRss sums the shards' VmRSS (0 for a shard that cannot be read).
  uint64_t ShardsRss() const;

 private:
  explicit Fleet(FleetOptions options) : options_(std::move(options)) {}

  const FleetOptions options_;
  cluster::ClusterConfig cluster_;
  rpc::TlsFiles operator_tls_, gateway_tls_;
  std::string rom_key_;
  std::vector<v1::StoredImage> images_;
  std::unique_ptr<v1::ManagementService::Stub> management_;
  twin::TwinConfig config_, verifying_;
  twin::IssuerPool issuers_;  // keep_certificates: each tenant CA once
  std::vector<std::unique_ptr<twin::Twin>> twins_;
};

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_FLEET_H_
