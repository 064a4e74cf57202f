// Update phases of a load run (issue 14), both over the gateway channels
// (update_check batched through client::AsyncAttestationClient) through
// client::UpdateClient (the UpdateTransport the twin binary uses,
// here with the gateway credential and each twin's session token as the
// per-device proof, DESIGN §5):
//
//   update_check    GetUpdates per certified twin, a bounded window in
//                   flight; sent as GetUpdatesBatch per shard (each item with
//                   its twin's session token, --update-batch twins per RPC;
//                   1 = one GetUpdates RPC per twin through UpdateClient);
//                   each answer's signed metadata is verified as the
//                   device does (update::VerifyMetadata against the device's
//                   image-signing key) and must name the twin's tenant,
//                   group and deployment: an operation counts only then.
//   update_install  the platform deploys a real update to a fraction of the
//                   fleet (--update-fraction): a signed app image is uploaded
//                   through management (verified and re-signed there), a
//                   device group "updates" gets the fraction's devices and a
//                   deployment of that image. Those twins keep the session
//                   tokens of their attestation: one GetChallenges per shard
//                   with the deployment's min_catalog_revision is the
//                   barrier after which every shard serves it
//                   (--install-reattest: the fraction re-attests instead,
//                   the behaviour before stop 23). Each twin then runs the
//                   twin library's UpdateAgent
//                   (twin/update_runner.h): GetUpdates, metadata
//                   verification, resumable DownloadImage, install into the
//                   inactive slot, reboot, re-attestation, ReportUpdateResult.
//                   One operation = one twin's install, from GetUpdates to
//                   the acknowledged INSTALLED report. Metrics: "mb_per_s"
//                   and "bytes" (image bytes downloaded), "installed" (twins
//                   the agent installed on), "installed_on_service" (the
//                   shards' GetDeploymentCounts for the deployment, which
//                   must equal the acknowledged INSTALLED reports, and no
//                   failure may be counted; else the phase fails).
//                   During the installs tcmalloc keeps freed spans
//                   (aggressive decommit off, restored after them;
//                   --install-decommit leaves it on).
//
// Thread-safety: as Phase (loadgen/phases.h).
#ifndef SPHERE_LOADGEN_UPDATE_PHASES_H_
#define SPHERE_LOADGEN_UPDATE_PHASES_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "client/update_client.h"
#include "loadgen/fleet.h"
#include "loadgen/phases.h"

namespace sphere::loadgen {

std::unique_ptr<Phase> NewUpdateCheckPhase();
std::unique_ptr<Phase> NewUpdateInstallPhase();

// GatewayUpdateClient: an UpdateClient over the fleet's gateway channels
// whose per-call proof is the named twin's current session token. `twins`
// maps device id -> twin and must outlive the client (read-only while it
// is used; a twin's token may change only on the thread that waits for the
// call naming it).
std::unique_ptr<client::UpdateClient> GatewayUpdateClient(
    Fleet& fleet, const absl::flat_hash_map<std::string, twin::Twin*>* twins);

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_UPDATE_PHASES_H_
