// TwinProcess: one twin as the twin binary runs it: the Twin (device model
// + attestation state machine) and its UpdateAgent, restored from and saved
// to DIR/twins/NAME/twin.state, talking to the cluster over gRPC (the
// manufacturing identity for attestation, the issued device certificate for
// the update service). It is the TwinHost of the TwinControl server, and
// `twin update` / `twin run` are built on it (RunUpdateCommand,
// RunTwinCommand).
//
// Thread-safety: not thread-safe; one thread (the twin's) uses it.
#ifndef SPHERE_TWIN_TWIN_PROCESS_H_
#define SPHERE_TWIN_TWIN_PROCESS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/attestation_client.h"
#include "common/cluster/cluster_config.h"
#include "twin/control_service.h"
#include "twin/twin.h"
#include "twin/twin_state.pb.h"
#include "twin/update_agent.h"

namespace sphere::twin {

class TwinProcess final : public TwinHost {
 public:
  // Load restores the twin NAME of the cluster (NotFound: run the factory).
  // `budget` bounds each attestation and each update check.
  static absl::StatusOr<std::unique_ptr<TwinProcess>> Load(
      const cluster::ClusterConfig& cluster, const std::string& name,
      absl::Duration budget, int64_t min_catalog_revision = 0);
  ~TwinProcess() override;

  // TwinHost (each saves the state file afterwards).
  v1::TwinStatus Status() override;
  absl::Status Attest() override;
  absl::Status Reboot() override;
  // CheckForUpdates attests first when the twin holds no valid certificate.
  absl::Status CheckForUpdates() override;

  absl::Status Save();
  Twin& twin() { return *twin_; }
  UpdateAgent& agent() { return *agent_; }
  // The last accepted attestation's answer (outcome, chain).
  const v1::AttestResponse& last_attestation() const { return issued_; }
  const std::string& state_path() const { return path_; }

 private:
  TwinProcess() = default;

  cluster::ClusterConfig cluster_;
  std::string name_;
  std::string path_;
  absl::Duration budget_;
  std::string root_pem_;
  TwinStateFile state_;
  TwinConfig twin_config_;
  UpdateAgentConfig agent_config_;
  std::unique_ptr<Twin> twin_;
  std::unique_ptr<UpdateAgent> agent_;
  std::unique_ptr<client::AsyncAttestationClient> attestation_;
  v1::AttestResponse issued_;
  absl::Status last_attest_status_;
};

// `twin update`: attest, run one update check (download, install, reboot,
// re-attest, report), print the results. Returns the process exit code.
// `min_catalog_revision` as for `twin attest`.
int RunUpdateCommand(const cluster::ClusterConfig& cluster,
                     const std::string& name, int64_t min_catalog_revision);
// `twin run`: attest, then serve TwinControl on 127.0.0.1:0 (port in
// DIR/twins/NAME/control.port, its self-signed certificate in control.crt)
// and run scheduled attestations and update checks until SIGINT/SIGTERM.
int RunTwinCommand(const cluster::ClusterConfig& cluster,
                   const std::string& name, int64_t min_catalog_revision);

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_TWIN_PROCESS_H_
