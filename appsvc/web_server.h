// WebServer: Contoso's web pages over HTTPS (cpp-httplib with OpenSSL, from
// Debian's libcpp-httplib-dev), plain HTML and a small script, no build
// step. Pages and JSON endpoints are backed by the same core as the gRPC
// API (ContosoCloud, JoinedTimeline):
//
//   GET  /support                      support page: fleet, device timeline,
//                                      drying-temperature chart
//   GET  /owner?device=ID              owner page: my dishwasher
//   GET  /api/devices                  fleet list (JSON)
//   GET  /api/devices/ID               device detail: insights, cycles,
//                                      rinse level, customer, open offer
//   GET  /api/devices/ID/timeline      joined Contoso + Sphere timeline
//   POST /api/devices/ID/service-request  {"description": "..."} (<= 1 KiB)
//   POST /api/devices/ID/order         {"offer_id": "..."}
//   GET  /healthz                      "ok"
//
// Limits: request bodies <= 16 KiB, read/write timeouts of 10 s, a fixed
// pool of handler threads (httplib's own; never gRPC's).
//
// Thread-safety: Start/Stop from one thread.
#ifndef SPHERE_APPSVC_WEB_SERVER_H_
#define SPHERE_APPSVC_WEB_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/sphere_source.h"

namespace httplib {
class SSLServer;
}

namespace contoso::appsvc {

struct WebServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 = any free port
  std::string cert_file;  // PEM server certificate (chain)
  std::string key_file;   // PEM private key
  int threads = 8;
};

class WebServer {
 public:
  WebServer(ContosoCloud* cloud, SphereSource* sphere,
            WebServerOptions options);
  ~WebServer();
  // Start binds and serves on a background thread; port() is then bound.
  absl::Status Start();
  void Stop();
  int port() const { return port_; }

 private:
  void Routes();

  ContosoCloud* const cloud_;
  SphereSource* const sphere_;
  const WebServerOptions options_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_WEB_SERVER_H_
