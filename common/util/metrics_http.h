// MetricsHttpServer serves the process's metrics (metrics::ProcessCollectable)
// as Prometheus text over plain HTTP at `/metrics`, using prometheus-cpp's
// Exposer (civetweb, 2 worker threads: a slow scraper never blocks gRPC).
//
// Example:
//   auto server = MetricsHttpServer::Start("127.0.0.1:0");
//   if (!server.ok()) return server.status();
//   int port = (*server)->port();   // the bound port (0 picks a free one)
//
// Thread-safe; stopping happens in the destructor.
#ifndef SPHERE_COMMON_UTIL_METRICS_HTTP_H_
#define SPHERE_COMMON_UTIL_METRICS_HTTP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace prometheus {
class Exposer;
}

namespace sphere::metrics {

class MetricsHttpServer {
 public:
  // Start listens on `address` (host:port, port 0 allowed).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address);
  ~MetricsHttpServer();

  int port() const { return port_; }
  // address() is host:bound-port.
  std::string address() const;

 private:
  MetricsHttpServer(std::unique_ptr<prometheus::Exposer> exposer,
                    std::string host, int port);
  std::unique_ptr<prometheus::Exposer> exposer_;
  const std::string host_;
  const int port_;
};

}  // namespace sphere::metrics

#endif  // SPHERE_COMMON_UTIL_METRICS_HTTP_H_
