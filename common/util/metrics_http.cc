#include "common/util/metrics_http.h"

#include <prometheus/exposer.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/util/metrics.h"

namespace sphere::metrics {

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics address '", address, "' is not host:port"));
  }
  std::string host = address.substr(0, colon);
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    // civetweb options: bounded workers, and idle keep-alive connections are
    // closed after 10 s so that scrapers cannot hold the workers.
    exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", address, "num_threads", "2",
        "request_timeout_ms", "10000", "enable_keep_alive", "no"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", address, ": ", e.what()));
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

MetricsHttpServer::~MetricsHttpServer() = default;

std::string MetricsHttpServer::address() const {
  return absl::StrCat(host_, ":", port_);
}

}  // namespace sphere::metrics
