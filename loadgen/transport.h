// Attestation transports the load generator puts between its TwinDriver and
// the network.
//
// TimingTransport wraps another transport: it remembers when each device's
// attestation began (the first GetChallenge, or the scheduled arrival in
// open loop) and counts every failed RPC by status code into a PhaseStats.
// The success side is recorded by the caller once the twin accepted the
// answer (TakeStart). Bounded: one entry per twin mid-attestation.
//
// PerTwinTlsTransport (--tls-per-twin) gives every device a gRPC channel of
// its own with its own subchannel pool, so each device's attestation opens a
// new TCP connection and does a full mutual-TLS handshake with the gateway
// credential; the channel is dropped after the Attest answer. It routes by
// the consistent-hash ring and does not follow redirects (the ring names
// the owner). Used to measure handshakes per second for a smaller fleet.
//
// Thread-safety: both may be called from any thread, callbacks run on
// gRPC's threads.
#ifndef SPHERE_LOADGEN_TRANSPORT_H_
#define SPHERE_LOADGEN_TRANSPORT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/attestation_client.h"
#include "client/shard_ring.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "loadgen/stats.h"

namespace sphere::loadgen {

class TimingTransport final : public client::AttestationTransport {
 public:
  TimingTransport(client::AttestationTransport* inner, PhaseStats* stats)
      : inner_(inner), stats_(stats) {}

  // MarkStart sets when `device_id`'s attestation is due (open loop), so
  // its latency includes any wait for the admission window.
  void MarkStart(const std::string& device_id, absl::Time t);
  // TakeStart returns and forgets when `device_id`'s attestation began
  // (InfinitePast if unknown).
  absl::Time TakeStart(const std::string& device_id);

  void GetChallenge(v1::GetChallengeRequest request,
                    ChallengeCallback done) override;
  void Attest(v1::AttestRequest request, AttestCallback done) override;
  void Flush() override { inner_->Flush(); }

 private:
  client::AttestationTransport* const inner_;
  PhaseStats* const stats_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> start_ ABSL_GUARDED_BY(mu_);
};

class PerTwinTlsTransport final : public client::AttestationTransport {
 public:
  PerTwinTlsTransport(const std::vector<cluster::ShardEndpoint>& shards,
                      rpc::TlsFiles tls, absl::Duration deadline);
  ~PerTwinTlsTransport() override;

  void GetChallenge(v1::GetChallengeRequest request,
                    ChallengeCallback done) override;
  void Attest(v1::AttestRequest request, AttestCallback done) override;

  uint64_t connections() const;

 private:
  std::shared_ptr<v1::AttestationService::Stub> StubFor(
      const std::string& device_id, bool create);
  void Release(const std::string& device_id);

  const rpc::TlsFiles tls_;
  const absl::Duration deadline_;
  const client::ShardRing ring_;
  const std::vector<cluster::ShardEndpoint> shards_;  // for server names
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string,
                      std::shared_ptr<v1::AttestationService::Stub>>
      stubs_ ABSL_GUARDED_BY(mu_);
  uint64_t connections_ ABSL_GUARDED_BY(mu_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::loadgen

#endif  // SPHERE_LOADGEN_TRANSPORT_H_
