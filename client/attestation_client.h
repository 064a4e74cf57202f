// Device-side attestation transport.
//
// AttestationTransport is what the twin library needs from the network: send
// one GetChallenge or Attest request for the device named in it and call
// back with the answer. The twin library (twin/) is written against this
// interface only, so its state machine is tested without gRPC.
//
// AsyncAttestationClient implements it on the gRPC callback API:
//  * Routing: the owning shard is computed from the consistent-hash ring
//    (client/shard_ring.h) built from the cluster's shard list. A shard that
//    does not own the device answers FAILED_PRECONDITION with redirect
//    trailers; the client follows (at most Options::max_redirects hops) and
//    remembers that device's owner in a bounded cache
//    (Options::max_cached_owners; when full, an arbitrary entry is evicted).
//  * Window: at most Options::max_in_flight RPCs are outstanding; further
//    calls wait in a FIFO of at most Options::max_queued and beyond that
//    fail at once with RESOURCE_EXHAUSTED, so one caller cannot fill memory.
//  * Every RPC has a deadline (Options::deadline).
//  * No retries here: a call ends with the shard's answer (after redirects).
//    Whether and when to try again is the caller's protocol decision, made
//    with client/backoff.h (IsRetryable, BackoffDelay); the twin library
//    does it per twin with timers, so no thread ever sleeps for a device.
//  * No thread of its own: callbacks run on gRPC's callback threads and must
//    not block.
//
// Thread-safety: all methods may be called from any thread, including from
// inside a callback. The destructor fails queued calls with CANCELLED and
// waits for the RPCs in flight to finish (each has a deadline).
//
// Example:
//   AsyncAttestationClient client(config.shards, gateway_tls, {});
//   v1::GetChallengeRequest req;
//   req.set_device_id(id);
//   client.GetChallenge(std::move(req), [](auto r) { ... });
#ifndef SPHERE_CLIENT_ATTESTATION_CLIENT_H_
#define SPHERE_CLIENT_ATTESTATION_CLIENT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/shard_ring.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/error_reporting.grpc.pb.h"

namespace sphere::client {

class AttestationTransport {
 public:
  using ChallengeCallback =
      std::function<void(absl::StatusOr<v1::GetChallengeResponse>)>;
  using AttestCallback = std::function<void(absl::StatusOr<v1::AttestResponse>)>;

  virtual ~AttestationTransport() = default;
  // Each call invokes `done` exactly once, possibly before returning (a
  // local refusal such as a full window) or on another thread.
  virtual void GetChallenge(v1::GetChallengeRequest request,
                            ChallengeCallback done) = 0;
  virtual void Attest(v1::AttestRequest request, AttestCallback done) = 0;

  // UploadErrors sends a device's error batch to its owning shard's
  // ErrorReportingService. `session_token` (from the device's attestation)
  // goes in metadata when non-empty: the gateway path; a device presenting
  // its own device certificate passes "". The default answers UNIMPLEMENTED
  // (a transport that carries attestation only).
  using UploadErrorsCallback =
      std::function<void(absl::StatusOr<v1::UploadErrorsResponse>)>;
  virtual void UploadErrors(v1::UploadErrorsRequest request,
                            std::string session_token,
                            UploadErrorsCallback done) {
    (void)request;
    (void)session_token;
    done(absl::UnimplementedError(
        "this attestation transport does not carry error uploads"));
  }
};

// ShardMapFromEndpoints builds the ring input from cluster.json's shard list
// (management's default number of virtual nodes).
v1::ShardMap ShardMapFromEndpoints(
    const std::vector<cluster::ShardEndpoint>& shards);

class AsyncAttestationClient final : public AttestationTransport {
 public:
  struct Options {
    int max_in_flight = 64;           // RPCs outstanding at once
    size_t max_queued = 1 << 20;      // calls waiting for the window
    size_t max_cached_owners = 1 << 16;  // redirect-learned device owners
    size_t max_addresses = 64;        // distinct shard addresses (channels)
    int max_redirects = 3;            // hops per call
    size_t max_address_length = 255;  // longer redirect targets refused
    absl::Duration deadline = absl::Seconds(10);  // per RPC
  };
  struct Stats {
    uint64_t calls = 0;           // GetChallenge + Attest + UploadErrors
    uint64_t redirects = 0;       // redirects followed
    uint64_t rejected = 0;        // refused locally: window and queue full
    int max_in_flight_seen = 0;   // high-water mark of the window
    size_t cached_owners = 0;
  };

  // `tls` is the credential presented: the device's manufacturing identity
  // (one device) or a gateway certificate (many devices).
  AsyncAttestationClient(std::vector<cluster::ShardEndpoint> shards,
                         rpc::TlsFiles tls, Options options);
  ~AsyncAttestationClient() override;
  AsyncAttestationClient(const AsyncAttestationClient&) = delete;
  AsyncAttestationClient& operator=(const AsyncAttestationClient&) = delete;

  void GetChallenge(v1::GetChallengeRequest request,
                    ChallengeCallback done) override;
  void Attest(v1::AttestRequest request, AttestCallback done) override;
  void UploadErrors(v1::UploadErrorsRequest request, std::string session_token,
                    UploadErrorsCallback done) override;

  Stats stats() const;

 private:
  class Call;
  // Stubs: one channel's service stubs (created with the channel).
  struct Stubs {
    v1::AttestationService::Stub* attestation;
    v1::ErrorReportingService::Stub* errors;
  };
  template <typename Req, typename Resp>
  class TypedCall;

  void Submit(Call* call);
  void Dispatch(Call* call);
  void OnRpcDone(Call* call, const grpc::Status& status);
  // Finish completes `call` with `status`, frees its window slot and starts
  // the next queued call.
  void Finish(Call* call, absl::Status status);
  // AddressIndexLocked returns the index of `address` in addresses_, adding
  // it if there is room; -1 when the address table is full.
  int AddressIndexLocked(const std::string& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const rpc::TlsFiles tls_;
  const Options options_;
  const ShardRing ring_;

  mutable absl::Mutex mu_;
  struct Endpoint {
    std::string address;
    std::unique_ptr<v1::AttestationService::Stub> stub;  // created lazily
    std::unique_ptr<v1::ErrorReportingService::Stub> errors_stub;  // same channel
  };
  std::vector<Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  // device id -> endpoint index, only for devices a redirect moved off the
  // ring's answer (bounded by max_cached_owners).
  absl::flat_hash_map<std::string, uint32_t> owners_ ABSL_GUARDED_BY(mu_);
  std::deque<Call*> queue_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_ATTESTATION_CLIENT_H_
