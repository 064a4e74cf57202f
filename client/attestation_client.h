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
//    remembers that device's owner in a bounded, expiring cache
//    (Options::max_cached_owners, Options::routing.owner_ttl).
//  * Failover (client/owner_router.h): a shard that fails
//    Options::routing.failures_before_failover calls in a row at the
//    transport (no connection, or a deadline while not connected; never a
//    refusal or an answer) is skipped for routing.down_for: the call that
//    saw the last failure is sent at once to the next distinct shard on the
//    ring (then the others), which answers or redirects by ITS live ring
//    (shard leases), and the redirect is followed and cached. The earlier
//    failures come back to the caller as UNAVAILABLE, and the caller's
//    jittered backoff spaces the attempts, so one blip moves nothing.
//  * Window: at most Options::max_in_flight RPCs are outstanding; further
//    calls wait in a FIFO of at most Options::max_queued and beyond that
//    fail at once with RESOURCE_EXHAUSTED, so one caller cannot fill memory.
//  * Every RPC has a deadline (Options::deadline).
//  * Batching (gateways, Options::max_batch > 1): GetChallenge and Attest
//    calls are held per owning shard and sent as one GetChallenges /
//    AttestBatch RPC of up to max_batch items, when the batch is full or on
//    Flush(). Each item is answered on its own, with the code its single
//    call would get; an item the shard redirects is sent again on its own
//    to the owner (and the owner cached). A batch is one RPC in the window.
//    A batch carries one min_catalog_revision: challenges asking for
//    different revisions go in different batches.
//    UploadErrors calls that carry a session token (the gateway path) are
//    held the same way and sent as one UploadErrorsBatch RPC per shard, each
//    item with its own token (at most min(max_batch, 256) items).
//    GetUpdates calls with a session token are held the same way and sent
//    as one GetUpdatesBatch RPC per shard (at most min(max_batch, 256)
//    items); the devices of one group share one answer on the wire.
//    Only a gateway certificate may call the batch RPCs; a device keeps the
//    default max_batch = 1 (one RPC per call, Flush does nothing).
//  * No retries here beyond failover: a call ends with the shard's answer
//    (after redirects and at most routing.max_failovers failovers).
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
#include "client/owner_router.h"
#include "client/shard_ring.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/error_reporting.grpc.pb.h"
#include "protos/update.grpc.pb.h"

namespace sphere::client {

class AttestationTransport {
 public:
  using ChallengeCallback =
      std::function<void(absl::StatusOr<v1::GetChallengeResponse>)>;
  using AttestCallback =
      std::function<void(absl::StatusOr<v1::AttestResponse>)>;

  virtual ~AttestationTransport() = default;
  // Each call invokes `done` exactly once, possibly before returning (a
  // local refusal such as a full window) or on another thread.
  virtual void GetChallenge(v1::GetChallengeRequest request,
                            ChallengeCallback done) = 0;
  virtual void Attest(v1::AttestRequest request, AttestCallback done) = 0;

  // Flush sends the calls a transport holds back to batch them (see
  // AsyncAttestationClient::Options::max_batch); a caller that issues many
  // calls at once (TwinDriver, after each pass of its loop) calls it when it
  // has issued them all. The default holds nothing back.
  virtual void Flush() {}

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
    int max_in_flight = 64;              // RPCs outstanding at once
    size_t max_queued = 1 << 20;         // calls waiting for the window
    size_t max_cached_owners = 1 << 16;  // redirect-learned device owners
    size_t max_addresses = 64;           // distinct shard addresses (channels)
    int max_redirects = 3;               // hops per call
    size_t max_address_length = 255;     // longer redirect targets refused
    absl::Duration deadline = absl::Seconds(10);  // per RPC
    // Items per GetChallenges / AttestBatch RPC (the service takes at most
    // 256); 1 = no batching. Gateways only.
    int max_batch = 1;
    // Failover and the learned-owner cache's lifetime; its
    // max_cached_owners is replaced by the field above.
    OwnerRouter::Options routing;
    // Time for the owner cache and down marks; nullptr = Clock::Real().
    const Clock* clock = nullptr;
  };
  struct Stats {
    uint64_t calls = 0;          // GetChallenge + Attest + UploadErrors
    uint64_t batches = 0;  // GetChallenges + AttestBatch + UploadErrorsBatch
    uint64_t batched_items = 0;  // calls carried in them
    uint64_t redirects = 0;      // redirects followed
    uint64_t failovers = 0;      // calls re-sent past an unreachable shard
    uint64_t unreachable = 0;    // RPCs that failed at the transport
    uint64_t rejected = 0;       // refused locally: window and queue full
    int max_in_flight_seen = 0;  // high-water mark of the window
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
  // GetUpdates asks the owning shard's UpdateService for the device's
  // signed update set; `session_token` goes in metadata when non-empty (the
  // gateway path), and with max_batch > 1 such calls are held per shard
  // and sent as GetUpdatesBatch (each item with its own token).
  using UpdatesCallback =
      std::function<void(absl::StatusOr<v1::GetUpdatesResponse>)>;
  void GetUpdates(v1::GetUpdatesRequest request, std::string session_token,
                  UpdatesCallback done);
  // Flush sends every held batch now (no-op when max_batch is 1).
  void Flush() override;

  Stats stats() const;

 private:
  class Call;
  // Stubs: one channel's service stubs (created with the channel).
  struct Stubs {
    v1::AttestationService::Stub* attestation;
    v1::ErrorReportingService::Stub* errors;
    v1::UpdateService::Stub* updates = nullptr;
  };
  template <typename Req, typename Resp>
  class TypedCall;
  template <typename Traits>
  class BatchCall;
  struct ChallengeTraits;
  struct AttestTraits;
  struct UploadTraits;
  struct UpdatesTraits;
  struct ChallengeItem {
    v1::GetChallengeRequest request;
    ChallengeCallback done;
  };
  struct AttestItem {
    v1::AttestRequest request;
    AttestCallback done;
  };
  struct UploadItem {
    v1::UploadErrorsRequest request;
    std::string session_token;
    UploadErrorsCallback done;
  };
  struct UpdatesItem {
    v1::GetUpdatesRequest request;
    std::string session_token;
    UpdatesCallback done;
  };
  // SubmitGetUpdates sends one GetUpdates RPC (to `address` when set: a
  // batch item's redirect target).
  void SubmitGetUpdates(v1::GetUpdatesRequest request,
                        std::string session_token, UpdatesCallback done,
                        int hops, std::string address);
  // SubmitUpload sends one UploadErrors RPC (to `address` when set: a
  // batch item's redirect target).
  void SubmitUpload(v1::UploadErrorsRequest request, std::string session_token,
                    UploadErrorsCallback done, int hops, std::string address);
  // HoldItem adds an item to its owner's pending batch of Traits' items
  // (sending the batch when full); false when no owner is known (the caller
  // sends it alone). SendBatch sends held items as one batch RPC;
  // FlushPending sends every endpoint's held Traits items.
  template <typename Traits>
  bool HoldItem(typename Traits::Item& item);
  template <typename Traits>
  void SendBatch(const std::string& address,
                 std::vector<typename Traits::Item> items);
  template <typename Traits>
  void FlushPending();

  void SubmitChallenge(v1::GetChallengeRequest request, ChallengeCallback done,
                       int hops, std::string address);
  void SubmitAttest(v1::AttestRequest request, AttestCallback done, int hops,
                    std::string address);
  // HoldChallenge: HoldItem for challenges, which also keeps one catalog
  // revision per batch.
  bool HoldChallenge(ChallengeItem& item);
  // OwnerIndexLocked: the endpoint the router (owner cache, ring, failover)
  // names for `device_id`, or -1.
  int OwnerIndexLocked(const std::string& device_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // LearnOwner records a redirect: `device_id` lives at `address`.
  void LearnOwner(const std::string& device_id, const std::string& address);
  // ChannelReady: whether the channel to `address` is connected now.
  bool ChannelReady(const std::string& address);
  // TryFailover re-sends `call` past an unreachable shard; false when the
  // call must end with `st` (not a transport failure, the shard is not down
  // yet, the call's failovers are used up, or no other shard is left).
  bool TryFailover(Call* call, const grpc::Status& st);

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
  const Clock* const clock_;
  OwnerRouter router_;  // thread-safe; called with or without mu_ held
  // The cluster file's shards: each channel checks the server name
  // cluster::ServerNameAt gives for its address.
  const std::vector<cluster::ShardEndpoint> shards_;

  mutable absl::Mutex mu_;
  struct Endpoint {
    std::string address;
    std::unique_ptr<v1::AttestationService::Stub> stub;  // created lazily
    std::shared_ptr<grpc::Channel> channel;  // with the stub (its state)
    std::unique_ptr<v1::ErrorReportingService::Stub>
        errors_stub;                                // same channel
    std::vector<ChallengeItem> pending_challenges;  // < max_batch
    std::vector<AttestItem> pending_attests;        // < max_batch
    std::vector<UploadItem> pending_uploads;        // < upload batch size
    std::unique_ptr<v1::UpdateService::Stub> updates_stub;  // same channel
    std::vector<UpdatesItem> pending_updates;  // < update batch size
  };
  std::vector<Endpoint> endpoints_ ABSL_GUARDED_BY(mu_);
  std::deque<Call*> queue_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_ATTESTATION_CLIENT_H_
