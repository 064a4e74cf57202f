// AttestationClient: a blocking, one-device convenience for tests that hold
// a bare mcu::Device (not a Twin): GetChallenge, quote, Attest, through
// client::AsyncAttestationClient (ring routing, redirects, deadlines). It
// does not retry. Devices and load generators use Twin + TwinDriver
// (twin/twin.h, twin/driver.h); this target is testonly.
//
// Thread-safety: safe for concurrent use; Attest blocks the calling thread
// until the service answers (never call it from a gRPC callback).
#ifndef SPHERE_TWIN_ATTESTATION_CLIENT_H_
#define SPHERE_TWIN_ATTESTATION_CLIENT_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/attestation_client.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "protos/attestation.pb.h"

namespace sphere::twin {

class AttestationClient {
 public:
  AttestationClient(std::vector<cluster::ShardEndpoint> shards,
                    rpc::TlsFiles tls,
                    absl::Duration deadline = absl::Seconds(10));

  using Quoter =
      std::function<absl::StatusOr<v1::Quote>(absl::string_view nonce)>;
  // Attest obtains a nonce for `device_id`, asks `quoter` for a quote over
  // it and submits it. `min_catalog_revision` (0 = none) asks the shard to
  // answer only from a catalog that includes that revision.
  absl::StatusOr<v1::AttestResponse> Attest(const std::string& device_id,
                                            const Quoter& quoter,
                                            int64_t min_catalog_revision = 0);

  // Redirects followed so far.
  int redirects() const;

 private:
  client::AsyncAttestationClient client_;
};

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_ATTESTATION_CLIENT_H_
