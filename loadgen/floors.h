// Floors: what the machine can do at best, measured in the same run as the
// load, so ratios hold on a noisy shared machine (issue 14).
//
//  * MeasureEcdsa: P-256 sign and verify per second on one core
//    (common/crypto, the code the device model and the service use).
//  * AttestCryptoBound: cores / CPU time of the ECDSA work one attestation
//    must do, device and service together: the device signs the quote, the
//    service verifies it and signs the certificate (2 signs + 1 verify);
//    twins that verify their chain add 2 verifies each.
//  * MeasureEchoRpc: empty unary RPCs per second (grpc.health.v1.Health/
//    Check, served by every Sphere process) over gateway-authenticated
//    channels to every shard, `window` calls in flight: channels made by
//    rpc::NewChannel with the gateway credential, exactly as the twins'
//    client (client::AsyncAttestationClient) makes its own.
//  * MeasureRocksDbSyncedWrites: one writer committing small WriteBatches
//    with sync=true (what an attestation record costs the store at best
//    without group commit), in a scratch directory removed afterwards.
//
// Each call blocks its caller for about `duration`.
#ifndef SPHERE_LOADGEN_FLOORS_H_
#define SPHERE_LOADGEN_FLOORS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"

namespace sphere::loadgen {

struct EcdsaRates {
  double sign_per_s = 0;
  double verify_per_s = 0;
};
EcdsaRates MeasureEcdsa(absl::Duration duration);

double AttestCryptoBound(int cores, const EcdsaRates& rates, double signs,
                         double verifies);

absl::StatusOr<double> MeasureEchoRpc(
    const std::vector<cluster::ShardEndpoint>& shards, const rpc::TlsFiles& tls,
    absl::Duration duration, int window);

// CallEmpty makes one blocking unary call of `method` ("/pkg.Svc/Method")
// with an empty request on `channel` (its own completion queue; nothing
// outlives the call) and returns the server's status.
grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel,
                       const std::string& method, absl::Duration deadline);

absl::StatusOr<double> MeasureRocksDbSyncedWrites(const std::string& dir,
                                                  absl::Duration duration);

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_FLOORS_H_
