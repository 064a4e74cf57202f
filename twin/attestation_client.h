// AttestationClient runs the device side of attestation against the sharded
// Security Service: GetChallenge, quote over the nonce, Attest. A shard that
// does not own the device answers with a redirect naming the owner; the
// client follows it (at most 3 hops) and remembers the owner for next time.
// Every call has a deadline.
//
// Thread-safety: safe for concurrent use (channels are cached under a mutex).
#ifndef SPHERE_TWIN_ATTESTATION_CLIENT_H_
#define SPHERE_TWIN_ATTESTATION_CLIENT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "protos/attestation.grpc.pb.h"

namespace sphere::twin {

class AttestationClient {
 public:
  // `tls` is the credential the device presents (its manufacturing TLS
  // certificate or a gateway certificate).
  AttestationClient(std::vector<cluster::ShardEndpoint> shards,
                    rpc::TlsFiles tls,
                    absl::Duration deadline = absl::Seconds(10));

  using Quoter =
      std::function<absl::StatusOr<v1::Quote>(absl::string_view nonce)>;
  // Attest obtains a nonce for `device_id`, asks `quoter` for a quote over
  // it and submits it. Returns the issued certificate chain and token.
  // `min_catalog_revision` (0 = none) asks the shard to answer only from a
  // catalog that includes that revision.
  absl::StatusOr<v1::AttestResponse> Attest(const std::string& device_id,
                                            const Quoter& quoter,
                                            int64_t min_catalog_revision = 0);

  // AttestWithRetry retries what a device in the field would retry: an
  // unavailable shard, and (only when min_catalog_revision is 0) a catalog
  // that does not know the device yet, with exponential backoff up to
  // `budget`. Every other error returns at once: an unclaimed or revoked
  // device, a refused quote. `min_catalog_revision` as for Attest.
  absl::StatusOr<v1::AttestResponse> AttestWithRetry(
      const std::string& device_id, const Quoter& quoter,
      absl::Duration budget, int64_t min_catalog_revision = 0);

  // Redirects followed so far (for tests and metrics).
  int redirects() const;

 private:
  v1::AttestationService::Stub* StubFor(const std::string& address);
  std::string AddressFor(const std::string& device_id);

  const std::vector<cluster::ShardEndpoint> shards_;
  const rpc::TlsFiles tls_;
  const absl::Duration deadline_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<v1::AttestationService::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> owner_ ABSL_GUARDED_BY(mu_);
  int redirects_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_ATTESTATION_CLIENT_H_
