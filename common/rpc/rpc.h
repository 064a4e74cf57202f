// common/rpc: the gRPC plumbing every Sphere process shares, so service
// adapters stay thin.
//
//  * TLS credentials from PEM (server requires and verifies client certs
//    when a client CA is given: mutual TLS).
//  * PeerIdentity: who called, from the verified peer certificate's claims.
//  * ToGrpcStatus / FromGrpcStatus: one table mapping absl <-> gRPC codes.
//  * ServerRunner: binds (port 0 allowed), registers the health service,
//    server reflection and the Metrics service, bounds message sizes,
//    threads, memory, streams per connection, connections and handshake
//    time (see ServerOptions and GatedListener), and shuts down gracefully
//    with a deadline.
//  * CheckRequestSize: the per-method request cap adapters apply where a
//    method takes less than the server-wide maximum.
//  * WaitForTerminationSignal: blocks until SIGINT or SIGTERM.
//  * Observability (observability.h): ServerRunner installs an interceptor
//    counting and logging every call, routes gRPC's own log lines into the
//    JSON log, and serves Prometheus text over HTTP at /metrics on
//    ServerOptions::metrics_address. Every binary that links this library
//    accepts --metrics_address (default 127.0.0.1:0, empty = off) and
//    --metrics_port_file (the bound metrics port is written there once
//    serving), so local_cluster can list each process's /metrics address.
#ifndef SPHERE_COMMON_RPC_RPC_H_
#define SPHERE_COMMON_RPC_RPC_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "common/rpc/gated_listener.h"
#include "google/protobuf/message_lite.h"

namespace sphere::metrics {
class MetricsHttpServer;
}

namespace sphere::rpc {

struct TlsFiles {
  std::string cert_pem;
  std::string key_pem;
  std::string ca_pem;  // roots that authenticate the other side
};

// ServerCredentials: mTLS when `require_client_cert`, else server-auth TLS.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const TlsFiles& tls, bool require_client_cert = true);

// ChannelCredentials for a client presenting `tls.cert_pem` (may be empty).
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(
    const TlsFiles& tls);

// kLocalServerName is the TLS server name on a local cluster's server
// certificate (securitysvc/pki issues it for localhost and 127.0.0.1); it is
// cluster.json's default "server_name".
inline constexpr char kLocalServerName[] = "localhost";

// NewChannel creates a channel with bounded message sizes to `target`
// (host:port, or a gRPC target such as "ipv4:a:1,b:2"). The TLS handshake
// checks that the server's certificate names `server_name`: take it from the
// cluster configuration (cluster::ClusterConfig::ServerName) so hostname
// checks hold when the processes run on several machines. An empty
// `server_name` checks the host named in `target` itself.
std::shared_ptr<grpc::Channel> NewChannel(
    const std::string& target, const TlsFiles& tls,
    const std::string& server_name = kLocalServerName);

// PeerIdentity is the verified client certificate of the current call.
struct PeerIdentity {
  crypto::ParsedCertificate cert;
  const crypto::DeviceClaims& claims() const { return cert.claims; }
};

// PeerFromContext reads the peer certificate gRPC verified during the TLS
// handshake. Unauthenticated when the call carries none.
absl::StatusOr<PeerIdentity> PeerFromContext(
    const grpc::ServerContextBase& context);

// ToGrpcStatus maps the code one-to-one and caps the message at
// kMaxStatusMessageBytes (the rest is replaced by a note saying how much was
// cut), so an error that quotes its input never echoes megabytes back or
// into a log. FromGrpcStatus caps what it takes from a peer the same way.
inline constexpr size_t kMaxStatusMessageBytes = 1024;
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);
// TruncateForStatus cuts `text` to at most `max_bytes` (at a UTF-8 boundary),
// appending "... [N bytes cut]" when it cut anything.
std::string TruncateForStatus(absl::string_view text,
                              size_t max_bytes = kMaxStatusMessageBytes);

// CheckRequestSize refuses a request larger than `max_bytes` (serialized)
// with RESOURCE_EXHAUSTED naming the method and the limit, as gRPC does for
// messages over the server-wide maximum. Adapters call it first for methods
// whose requests must be smaller than ServerOptions::max_message_bytes.
//
// Example:
//   RETURN_IF_ERROR(rpc::CheckRequestSize(*req, 64 << 10, "CreateTenant"));
absl::Status CheckRequestSize(const google::protobuf::MessageLite& request,
                              size_t max_bytes, absl::string_view method);

// Deadline returns now + `d` as a gRPC deadline.
std::chrono::system_clock::time_point Deadline(absl::Duration d);

// ServerOptions: every limit a server applies before any handler runs. The
// defaults are the ones docs/threat-model.md lists ("Limits").
struct ServerOptions {
  std::string address = "127.0.0.1:0";
  TlsFiles tls;
  bool require_client_cert = true;
  // Largest request and response, server-wide. Methods that need less use
  // CheckRequestSize.
  int max_message_bytes = 8 << 20;
  // When positive, requests are capped lower than max_message_bytes (which
  // then bounds responses only): for servers whose requests are all small.
  int max_request_bytes = 0;
  int max_threads = 16;  // bounded thread pool for the sync parts of gRPC
  // gRPC resource quota: memory for all connections and calls together;
  // past it gRPC sheds load (drops connections, refuses calls) instead of
  // growing.
  int64_t max_memory_bytes = int64_t{512} << 20;
  // Concurrent calls (HTTP/2 streams) one connection may have open.
  int max_concurrent_streams_per_connection = 128;
  // A connection must finish TCP + TLS + HTTP/2 setup within this time or
  // it is closed (unauthenticated connections cannot linger).
  absl::Duration handshake_timeout = absl::Seconds(10);
  // A connection with no call for this long is closed (clients reconnect
  // transparently).
  absl::Duration max_connection_idle = absl::Minutes(5);
  // Open connections at most (descriptors beyond those open at start), and
  // descriptors always kept free below RLIMIT_NOFILE (raised to the hard
  // limit at Start). See GatedListener.
  int max_connections = 8192;
  int fd_headroom = 64;
  // HTTP /metrics listener (host:port, port 0 allowed; empty disables it).
  // Unset: the --metrics_address flag.
  std::optional<std::string> metrics_address;
  // Where the bound metrics port is written. Unset: --metrics_port_file.
  std::optional<std::string> metrics_port_file;
};

// ServerRunner owns one gRPC server.
//
// Example:
//   ServerRunner runner(options);
//   runner.AddService(&attestation_service);
//   RETURN_IF_ERROR(runner.Start());
//   WaitForTerminationSignal();
//   runner.Shutdown(absl::Seconds(5));
class ServerRunner {
 public:
  explicit ServerRunner(ServerOptions options);
  ~ServerRunner();

  void AddService(grpc::Service* service);
  // Start raises RLIMIT_NOFILE to the hard limit, binds, and starts serving;
  // port() is then the bound port.
  absl::Status Start();
  int port() const { return port_; }
  std::string address() const;
  // Shutdown stops accepting calls, lets in-flight calls finish until
  // `grace`, then cancels the rest. Health reports NOT_SERVING meanwhile.
  void Shutdown(absl::Duration grace);
  grpc::Server* server() { return server_.get(); }
  // listener() is the accept loop (connection counters); null before Start.
  const GatedListener* listener() const { return listener_.get(); }
  // metrics_port is the bound HTTP /metrics port (0 when disabled).
  int metrics_port() const;

 private:
  absl::Status StartMetricsHttp();

  ServerOptions options_;
  std::vector<grpc::Service*> services_;
  std::unique_ptr<grpc::Service> metrics_service_;
  std::unique_ptr<GatedListener> listener_;
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor_;
  std::unique_ptr<metrics::MetricsHttpServer> metrics_http_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// WaitForTerminationSignal blocks the calling thread until SIGINT or SIGTERM
// arrives. Call InstallTerminationSignalMask() at the top of main (before any
// thread starts) so that no other thread consumes the signal.
void InstallTerminationSignalMask();
int WaitForTerminationSignal();

}  // namespace sphere::rpc

#endif  // SPHERE_COMMON_RPC_RPC_H_
