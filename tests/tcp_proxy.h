// TcpProxy: a loopback TCP forwarder a test can cut and heal, to partition
// one process from another without iptables (issue 15's partition test).
//
// Listens on 127.0.0.1:0 and forwards every accepted connection to the
// target, one thread per direction. Cut() shuts down every open connection
// (both peers see the stream break) and, until Heal(), closes each new
// connection as soon as it is accepted, so the client's reconnects fail
// fast. Heal() forwards new connections again.
//
// Thread-safety: all methods may be called from any thread; the destructor
// stops accepting, cuts, and joins every thread.
#ifndef SPHERE_TESTS_TCP_PROXY_H_
#define SPHERE_TESTS_TCP_PROXY_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace sphere::testing {

class TcpProxy {
 public:
  // Start forwards 127.0.0.1:<port()> to `target_host`:`target_port`.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(
      const std::string& target_host, int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  std::string address() const;
  // Cut breaks every open connection and refuses new ones until Heal.
  void Cut();
  void Heal();
  // accepted: connections forwarded so far (not counting refused ones).
  int accepted() const;
  // refused: connections closed at accept because the proxy was cut.
  int refused() const;

 private:
  struct Conn {
    int client = -1;
    int server = -1;
    std::thread up, down;
  };
  TcpProxy() = default;
  void AcceptLoop();
  static void Pump(int from, int to);
  // Shuts down and joins `conns`, then closes their descriptors.
  static void Close(std::vector<std::unique_ptr<Conn>> conns);

  std::string target_host_;
  int target_port_ = 0;
  int listener_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  mutable absl::Mutex mu_;
  bool cut_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int accepted_ ABSL_GUARDED_BY(mu_) = 0;
  int refused_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<Conn>> conns_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_TCP_PROXY_H_
