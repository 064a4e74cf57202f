// GatedListener: the TCP accept loop of every Sphere server, in front of
// gRPC, so that a flood of connections can neither exhaust file descriptors
// nor stop the server from accepting again.
//
// Why not gRPC's own listener: in gRPC 1.51, when accept4() fails with
// EMFILE the listener is dropped from the poller and never accepts again,
// even after descriptors are freed (grpc/grpc#20418, #16058, #31080); and
// 1.51 has no connection limit (GRPC_ARG_MAX_ALLOWED_INCOMING_CONNECTIONS
// came later). GatedListener owns the listening socket instead and hands each
// admitted connection to gRPC through the (experimental, TLS-capable)
// ExternalConnectionAcceptor, where TLS, the handshake timeout and every
// channel argument apply as usual.
//
// Contract:
//  * A connection is admitted only while the process keeps `fd_headroom`
//    descriptors free below RLIMIT_NOFILE and holds fewer than
//    `max_connections` descriptors more than it did at Start (descriptor
//    numbers are allocated lowest-first, so an accepted descriptor's number
//    is a lower bound on the number of open descriptors). Others are
//    accepted and closed at once: the client sees the connection reset and
//    retries; nothing is queued for it.
//  * accept4() failing with EMFILE/ENFILE never stops the loop: one spare
//    descriptor held for the purpose is released, the pending connection is
//    accepted and closed, and the spare is reopened (the libev/nginx trick).
//  * After a flood (any refusal, or `flood_connections` admitted within a
//    second), the loop returns freed heap to the OS (malloc_trim) once a
//    second while connections are quiet, for `trim_window` after the last
//    flood activity (covering connections that gRPC drops at the handshake
//    timeout): memory goes back near its baseline instead of staying at the
//    flood's peak.
//  * Stop() returns once the loop has exited; no connection is handed to
//    gRPC afterwards.
//
// Thread-safety: Listen/Start/Stop from one thread; counters from any.
#ifndef SPHERE_COMMON_RPC_GATED_LISTENER_H_
#define SPHERE_COMMON_RPC_GATED_LISTENER_H_

#include <grpcpp/server_builder.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sphere::rpc {

class GatedListener {
 public:
  struct Options {
    int max_connections = 4096;  // descriptors for connections, beyond start
    int fd_headroom = 64;        // descriptors always left for files, pipes
    int backlog = 1024;
    int flood_connections = 256;
    absl::Duration trim_window = absl::Seconds(12);
  };

  // Listen binds `address` ("host:port", port 0 picks a free port; "[::]"
  // for IPv6) and listens; it does not accept until Start.
  static absl::StatusOr<std::unique_ptr<GatedListener>> Listen(
      const std::string& address, Options options);
  ~GatedListener();
  GatedListener(const GatedListener&) = delete;
  GatedListener& operator=(const GatedListener&) = delete;

  int port() const { return port_; }
  // Start runs the accept loop on its own thread, handing admitted
  // connections to `acceptor` (which must outlive Stop()).
  absl::Status Start(grpc::experimental::ExternalConnectionAcceptor* acceptor);
  // Stop ends the accept loop and closes the listening socket. Idempotent.
  void Stop();

  uint64_t admitted() const { return admitted_.load(); }
  uint64_t rejected() const { return rejected_.load(); }
  // trims() counts the times freed memory was returned after a flood.
  uint64_t trims() const { return trims_.load(); }
  // AdmitBelow is the descriptor number from which connections are refused.
  int admit_below() const { return admit_below_; }

 private:
  GatedListener(int fd, int port, Options options);
  void Loop();
  void ShedOneConnection();

  const int listen_fd_;
  const int port_;
  const Options options_;
  int wake_fd_ = -1;     // eventfd: Stop wakes the loop
  int reserve_fd_ = -1;  // spare descriptor released on EMFILE
  int admit_below_ = 0;
  grpc::experimental::ExternalConnectionAcceptor* acceptor_ = nullptr;
  std::thread thread_;
  std::atomic<uint64_t> admitted_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<uint64_t> trims_{0};
};

// RaiseFileDescriptorLimit raises the soft RLIMIT_NOFILE to the hard limit
// and returns the resulting soft limit.
absl::StatusOr<int> RaiseFileDescriptorLimit();

}  // namespace sphere::rpc

#endif  // SPHERE_COMMON_RPC_GATED_LISTENER_H_
