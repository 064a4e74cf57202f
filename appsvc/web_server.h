// WebServer: Contoso's web pages over HTTPS (cpp-httplib with OpenSSL, from
// Debian's libcpp-httplib-dev), plain HTML and a small script, no build
// step. Pages and JSON endpoints are backed by the same core as the gRPC
// API (ContosoCloud, JoinedTimeline):
//
//   GET  /login                        login page (sets the login CSRF
//                                      cookie, embeds the same token)
//   POST /login                        {"user", "password", "csrf"}: opens a
//                                      session (cookie sphere_session)
//   POST /logout                       ends the session
//   GET  /api/session                  who is logged in + the CSRF token
//   GET  /support                      support page: fleet, device timeline,
//                                      drying-temperature chart   [support]
//   GET  /owner[?device=ID]            owner page: my dishwasher  [owner,
//                                      support with ?device=]
//   GET  /api/devices                  fleet list (JSON)          [support]
//   GET  /api/devices/ID               device detail: insights, cycles,
//                                      rinse level, customer, open offer
//                                                                 [support,
//                                                                  its owner]
//   GET  /api/devices/ID/timeline      joined Contoso + Sphere timeline
//                                                                 [support]
//   POST /api/devices/ID/service-request  {"description": "..."} (<= 1 KiB)
//                                                      [support, its owner]
//   POST /api/devices/ID/order         {"offer_id": "..."}  [its owner]
//   GET  /healthz                      "ok" (no login)
//
// Authentication (web_auth.h): every page but /login and /healthz needs a
// session cookie (HttpOnly, Secure, SameSite=Strict, Max-Age = the session
// TTL); without one a page redirects (302) to /login and an /api call gets
// 401. A role or device the session does not cover gets 403. Every POST
// must carry the session's CSRF token in the X-CSRF-Token header (403
// otherwise); POST /login carries the login CSRF token (double-submit:
// cookie + body). API responses are Cache-Control: no-store.
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
#include "appsvc/web_auth.h"

namespace httplib {
class SSLServer;
}

namespace contoso::appsvc {

struct WebServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;           // 0 = any free port
  std::string cert_file;  // PEM server certificate (chain)
  std::string key_file;   // PEM private key
  int threads = 8;
};

class WebServer {
 public:
  // `auth` decides who may log in; it must outlive the server.
  WebServer(ContosoCloud* cloud, SphereSource* sphere, WebAuth* auth,
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
  WebAuth* const auth_;
  const WebServerOptions options_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_WEB_SERVER_H_
