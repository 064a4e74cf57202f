#include "common/util/metrics_http.h"

#include <netdb.h>
#include <prometheus/exposer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <exception>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/util/metrics.h"

namespace sphere::metrics {

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "' is not host:port"));
  }
  std::string host = address.substr(0, colon);
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb options: bounded workers, and idle keep-alive connections are
    // closed after 10 s so that scrapers cannot hold the workers.
    exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", address, "num_threads", "2", "request_timeout_ms",
        "10000", "enable_keep_alive", "no"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty() || ports[0] <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": no bound port"));
  }
  exposer->RegisterCollectable(ProcessCollectable(), "/metrics");
  return std::unique_ptr<MetricsHttpServer>(
      new MetricsHttpServer(std::move(exposer), host, ports[0]));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<prometheus::Exposer> e,
                                     std::string host, int port)
    : exposer_(std::move(e)), host_(std::move(host)), port_(port) {}

namespace {

// ConnectAndClose opens one TCP connection to host:port and closes it without
// sending anything (civetweb's worker sees end-of-file at once).
void ConnectAndClose(const std::string& host, int port) {
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  struct addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) !=
      0) {
    return;
  }
  for (struct addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const bool connected = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
    close(fd);
    if (connected) break;
  }
  freeaddrinfo(res);
}

// WakeHost is the address a local connection reaches the listener on.
std::string WakeHost(std::string host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0" || host == "*") return "127.0.0.1";
  if (host == "::") return "::1";
  if (host == "localhost") return "127.0.0.1";
  return host;
}

}  // namespace

// civetweb's accept loop polls its listening socket in 2-second quanta and
// reads its stop flag only between polls, so a plain mg_stop() (the Exposer's
// destructor) waits out that quantum: 2 s on every process shutdown. The
// destructor stops on a helper thread and wakes the accept loop with empty
// loopback connections until it has stopped; a connection that arrives before
// the stop flag is accepted and sees end-of-file, one that arrives after it is
// never accepted.
MetricsHttpServer::~MetricsHttpServer() {
  if (!exposer_) return;
  absl::Notification stopped;
  std::thread stopper([this, &stopped] {
    exposer_.reset();
    stopped.Notify();
  });
  const std::string wake_host = WakeHost(host_);
  while (!stopped.WaitForNotificationWithTimeout(absl::Milliseconds(5))) {
    ConnectAndClose(wake_host, port_);
  }
  stopper.join();
}

std::string MetricsHttpServer::address() const {
  return absl::StrCat(host_, ":", port_);
}

}  // namespace sphere::metrics
