// UpdateClient: UpdateTransport over the gRPC callback API, for both device
// authentication paths (DESIGN §5): a device holding its own certificate
// (the twin binary: `tls` is the device chain), or many devices multiplexed
// over gateway channels (the load generator: `tls` is the gateway
// credential and Options::session_token supplies each call's per-device
// proof, sent as "sphere-session-token" metadata). Routing follows the
// shard ring (client/shard_ring.h) and the shards' redirect trailers (at most
// Options::max_redirects hops), with the attestation client's failover
// (client/owner_router.h): a shard unreachable at the transport for
// Options::routing.failures_before_failover calls in a row is skipped and
// the call goes to the next shard on the ring, whose live-ring redirect is
// followed and cached (a download only before its first chunk). Every RPC
// has a deadline. DownloadImage keeps
// at most `max_bytes` of chunk data and cancels the stream the moment a
// server sends more (OUT_OF_RANGE), so an endless stream costs the device
// nothing beyond the signed length. No thread of its own; callbacks run on
// gRPC's threads.
//
// Thread-safety: methods may be called from any thread. The destructor waits
// for calls in flight (bounded by their deadlines).
//
// Example:
//   UpdateClient client(config.shards, device_tls, {});
//   // Gateway: opts.session_token = [&](const std::string& id) {
//   //   return twins.at(id)->session_token(); };
//   client.GetUpdates(req, [](absl::StatusOr<v1::GetUpdatesResponse> r) {..});
#ifndef SPHERE_CLIENT_UPDATE_CLIENT_H_
#define SPHERE_CLIENT_UPDATE_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/owner_router.h"
#include "client/shard_ring.h"
#include "client/update_transport.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "protos/update.grpc.pb.h"

namespace sphere::client {

class UpdateClient final : public UpdateTransport {
 public:
  struct Options {
    int max_redirects = 3;
    size_t max_address_length = 255;
    absl::Duration deadline = absl::Seconds(30);  // per RPC (downloads too)
    // Gateway path: the session token (issued with the device's
    // certificate) for the device a request names; called once per RPC
    // attempt (redirects included) on the caller's or gRPC's thread, so it
    // must be thread-safe and must not block. Empty function: device
    // certificate path, no token sent. A token longer than
    // max_session_token_length fails the call (INVALID_ARGUMENT) unsent.
    std::function<std::string(const std::string& device_id)> session_token;
    size_t max_session_token_length = 1024;
    OwnerRouter::Options routing;  // failover and the learned-owner cache
    const Clock* clock = nullptr;  // nullptr = Clock::Real()
  };
  // `tls`: the device certificate chain and its key (TLS offload), and the
  // platform root.
  UpdateClient(std::vector<cluster::ShardEndpoint> shards, rpc::TlsFiles tls,
               Options options);
  ~UpdateClient() override;
  UpdateClient(const UpdateClient&) = delete;
  UpdateClient& operator=(const UpdateClient&) = delete;

  void GetUpdates(v1::GetUpdatesRequest request, UpdatesCallback done) override;
  void DownloadImage(v1::DownloadImageRequest request, uint64_t max_bytes,
                     DownloadCallback done) override;
  void ReportUpdateResult(v1::ReportUpdateResultRequest request,
                          ReportCallback done) override;

 private:
  template <typename Req, typename Resp>
  class UnaryCall;
  class DownloadCall;

  v1::UpdateService::Stub* StubFor(const std::string& address);
  std::string OwnerAddress(const std::string& device_id);
  // RedirectTarget: the address a FAILED_PRECONDITION redirect names, or "".
  std::string RedirectTarget(const grpc::ClientContext& ctx,
                             const grpc::Status& st) const;
  // AddProof adds the device's session token (gateway path) to `ctx`.
  absl::Status AddProof(const std::string& device_id,
                        grpc::ClientContext* ctx) const;
  // FailoverTarget: the address a call that ended with `st` at
  // `call_address` should go to next, or "" (not a transport failure, the
  // shard is not down yet, or no other shard); `tried` collects the call's
  // unreachable addresses.
  std::string FailoverTarget(const std::string& device_id,
                             const std::string& call_address,
                             const grpc::Status& st,
                             std::vector<std::string>* tried);
  void Started();
  void Ended();

  const rpc::TlsFiles tls_;
  const Options options_;
  OwnerRouter router_;  // thread-safe
  // The cluster file's shards: each channel checks the server name
  // cluster::ServerNameAt gives for its address.
  const std::vector<cluster::ShardEndpoint> shards_;
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, std::unique_ptr<v1::UpdateService::Stub>>>
      stubs_ ABSL_GUARDED_BY(mu_);
  // Same order as stubs_: each stub's channel (its connectivity state).
  std::vector<std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_UPDATE_CLIENT_H_
