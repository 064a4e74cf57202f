#include "appsvc/web_server.h"

#include <httplib.h>
#include <openssl/crypto.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "appsvc/grpc_services.h"
#include "appsvc/password.h"
#include "appsvc/web_pages.h"
#include "common/util/log.h"
#include "google/protobuf/util/json_util.h"

namespace contoso::appsvc {
namespace {

constexpr size_t kMaxBodyBytes = 16 << 10;

int HttpCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

void Error(httplib::Response& res, const absl::Status& s) {
  nlohmann::json j;
  j["error"] = std::string(s.message());
  res.status = HttpCode(s);
  res.set_content(j.dump(), "application/json");
}

constexpr char kSessionCookie[] = "sphere_session";
constexpr char kLoginCsrfCookie[] = "sphere_login_csrf";
constexpr int kLoginFormSeconds = 600;
constexpr size_t kMaxCookieHeaderBytes = 4096;

// CookieValue: the value of cookie `name` in the request's Cookie headers,
// or "" (also for oversized headers).
std::string CookieValue(const httplib::Request& req, absl::string_view name) {
  const size_t n = req.get_header_value_count("Cookie");
  for (size_t i = 0; i < n && i < 8; ++i) {
    const std::string header = req.get_header_value("Cookie", i);
    if (header.size() > kMaxCookieHeaderBytes) continue;
    for (absl::string_view part : absl::StrSplit(header, ';')) {
      part = absl::StripAsciiWhitespace(part);
      if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=")) {
        return std::string(part);
      }
    }
  }
  return "";
}

std::string SetCookie(absl::string_view name, absl::string_view value,
                      absl::string_view path, int64_t max_age_seconds) {
  return absl::StrCat(name, "=", value, "; Path=", path,
                      "; Max-Age=", max_age_seconds,
                      "; Secure; HttpOnly; SameSite=Strict");
}

bool SameSecret(absl::string_view a, absl::string_view b) {
  return !a.empty() && a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

const char* RoleName(WebRole r) {
  return r == WebRole::kSupport ? "support" : "owner";
}

void Json(httplib::Response& res, const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  auto s = google::protobuf::util::MessageToJsonString(m, &out, o);
  if (!s.ok()) {
    Error(res, absl::InternalError("cannot render JSON"));
    return;
  }
  res.set_content(out, "application/json");
}

void Html(httplib::Response& res, const char* page) {
  res.set_header("Content-Security-Policy",
                 "default-src 'self'; script-src 'unsafe-inline'; "
                 "style-src 'unsafe-inline'");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("Cache-Control", "no-store");
  res.set_content(page, "text/html; charset=utf-8");
}

// Who may call an /api route.
enum class Access {
  kAnySession,        // any logged-in account
  kSupport,           // support staff only
  kSupportOrOwnerOf,  // support, or the owner of the device in the path
  kOwnerOf,           // only the owner of the device in the path
};

// ApiSession: the caller's session when it may make this call; otherwise
// the response is filled in (401 no/expired session, 403 missing or wrong
// CSRF token on a POST, 403 role/device not covered) and nullopt returned.
std::optional<WebSession> ApiSession(WebAuth* auth, const httplib::Request& req,
                                     httplib::Response& res, Access access,
                                     const std::string& device = "") {
  res.set_header("Cache-Control", "no-store");
  std::optional<WebSession> s = auth->Lookup(CookieValue(req, kSessionCookie));
  if (!s) {
    Error(res, absl::UnauthenticatedError("login required"));
    return std::nullopt;
  }
  if (req.method == "POST" &&
      !WebAuth::CsrfMatches(*s, req.get_header_value("X-CSRF-Token"))) {
    Error(res,
          absl::PermissionDeniedError("missing or wrong X-CSRF-Token header"));
    return std::nullopt;
  }
  const bool support = s->role == WebRole::kSupport;
  const bool owner_of =
      s->role == WebRole::kOwner && !device.empty() && s->device_id == device;
  bool allowed = true;
  switch (access) {
    case Access::kAnySession:
      break;
    case Access::kSupport:
      allowed = support;
      break;
    case Access::kSupportOrOwnerOf:
      allowed = support || owner_of;
      break;
    case Access::kOwnerOf:
      allowed = owner_of;
      break;
  }
  if (!allowed) {
    Error(res, absl::PermissionDeniedError(
                   support ? "support accounts cannot do this"
                           : "this account may see only its own dishwasher"));
    return std::nullopt;
  }
  return s;
}

// PageSession: the session for an HTML page, or a redirect to /login.
std::optional<WebSession> PageSession(WebAuth* auth,
                                      const httplib::Request& req,
                                      httplib::Response& res) {
  std::optional<WebSession> s = auth->Lookup(CookieValue(req, kSessionCookie));
  if (!s) {
    res.set_header("Cache-Control", "no-store");
    res.set_redirect("/login", 302);
  }
  return s;
}

// ParseBody: the JSON object in `req`, or InvalidArgument.
absl::StatusOr<nlohmann::json> ParseBody(const httplib::Request& req) {
  if (req.body.size() > kMaxBodyBytes) {
    return absl::InvalidArgumentError("request body over 16 KiB");
  }
  nlohmann::json j = nlohmann::json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("request body must be a JSON object");
  }
  return j;
}

std::string StringField(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

WebServer::WebServer(ContosoCloud* cloud, SphereSource* sphere, WebAuth* auth,
                     WebServerOptions options)
    : cloud_(cloud),
      sphere_(sphere),
      auth_(auth),
      options_(std::move(options)) {}

WebServer::~WebServer() { Stop(); }

absl::Status WebServer::Start() {
  server_ = std::make_unique<httplib::SSLServer>(options_.cert_file.c_str(),
                                                 options_.key_file.c_str());
  if (!server_->is_valid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load the web server's TLS certificate ",
                     options_.cert_file, " / key ", options_.key_file));
  }
  const int threads = options_.threads;
  server_->new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };
  server_->set_payload_max_length(kMaxBodyBytes);
  server_->set_read_timeout(10, 0);
  server_->set_write_timeout(10, 0);
  server_->set_keep_alive_max_count(100);
  Routes();
  port_ = options_.port == 0
              ? server_->bind_to_any_port(options_.host.c_str())
              : (server_->bind_to_port(options_.host.c_str(), options_.port)
                     ? options_.port
                     : -1);
  if (port_ <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot bind the web server to ", options_.host, ":", options_.port));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

void WebServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void WebServer::Routes() {
  httplib::SSLServer& s = *server_;
  s.Get("/", [this](const httplib::Request& req, httplib::Response& res) {
    if (auto who = PageSession(auth_, req, res)) {
      res.set_redirect(who->role == WebRole::kSupport ? "/support" : "/owner",
                       302);
    }
  });
  s.Get("/login", [](const httplib::Request&, httplib::Response& res) {
    const std::string token = RandomToken(32);
    res.set_header("Set-Cookie", SetCookie(kLoginCsrfCookie, token, "/login",
                                           kLoginFormSeconds));
    const std::string page =
        absl::StrReplaceAll(kLoginPage, {{"{{LOGIN_CSRF}}", token}});
    Html(res, page.c_str());
  });
  s.Post("/login", [this](const httplib::Request& req, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    auto body = ParseBody(req);
    if (!body.ok()) return Error(res, body.status());
    if (!SameSecret(StringField(*body, "csrf"),
                    CookieValue(req, kLoginCsrfCookie))) {
      return Error(res, absl::PermissionDeniedError(
                            "login form expired or forged; reload /login"));
    }
    auto r = auth_->Login(StringField(*body, "user"),
                          StringField(*body, "password"), req.remote_addr);
    if (!r.ok()) {
      sphere::log::Warning("web login refused",
                           {{"user", StringField(*body, "user")},
                            {"client", req.remote_addr},
                            {"error", std::string(r.status().message())}});
      return Error(res, r.status());
    }
    res.set_header(
        "Set-Cookie",
        SetCookie(
            kSessionCookie, r->token, "/",
            std::max<int64_t>(absl::ToInt64Seconds(auth_->session_ttl()), 1)));
    res.set_header("Set-Cookie", SetCookie(kLoginCsrfCookie, "", "/login", 0));
    nlohmann::json j;
    j["user"] = r->session.user;
    j["role"] = RoleName(r->session.role);
    j["device_id"] = r->session.device_id;
    j["next"] = r->session.role == WebRole::kSupport ? "/support" : "/owner";
    sphere::log::Info("web login", {{"user", r->session.user},
                                    {"role", RoleName(r->session.role)},
                                    {"client", req.remote_addr}});
    res.set_content(j.dump(), "application/json");
  });
  s.Post("/logout",
         [this](const httplib::Request& req, httplib::Response& res) {
           if (!ApiSession(auth_, req, res, Access::kAnySession)) return;
           auth_->Logout(CookieValue(req, kSessionCookie));
           res.set_header("Set-Cookie", SetCookie(kSessionCookie, "", "/", 0));
           res.set_content("{}", "application/json");
         });
  s.Get("/api/session",
        [this](const httplib::Request& req, httplib::Response& res) {
          auto who = ApiSession(auth_, req, res, Access::kAnySession);
          if (!who) return;
          nlohmann::json j;
          j["user"] = who->user;
          j["role"] = RoleName(who->role);
          j["device_id"] = who->device_id;
          j["csrf"] = who->csrf_token;
          j["expires_unix_ms"] = absl::ToUnixMillis(who->expires);
          res.set_content(j.dump(), "application/json");
        });
  s.Get("/support",
        [this](const httplib::Request& req, httplib::Response& res) {
          auto who = PageSession(auth_, req, res);
          if (!who) return;
          if (who->role != WebRole::kSupport) {
            res.status = 403;
            return Html(res, kForbiddenPage);
          }
          Html(res, kSupportPage);
        });
  s.Get("/owner", [this](const httplib::Request& req, httplib::Response& res) {
    if (PageSession(auth_, req, res)) Html(res, kOwnerPage);
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/api/devices",
        [this](const httplib::Request& http, httplib::Response& res) {
          if (!ApiSession(auth_, http, res, Access::kSupport)) return;
          v1::ListDevicesRequest req;
          req.set_page_size(kMaxPageSize);
          auto r = cloud_->ListDevices(req);
          if (!r.ok()) return Error(res, r.status());
          Json(res, *r);
        });
  s.Get(R"(/api/devices/([0-9a-f]{64}))", [this](const httplib::Request& req,
                                                 httplib::Response& res) {
    const std::string id = req.matches[1];
    if (!ApiSession(auth_, req, res, Access::kSupportOrOwnerOf, id)) {
      return;
    }
    auto rec = cloud_->GetDeviceRecord(id);
    if (!rec.ok()) return Error(res, rec.status());
    auto insights = cloud_->GetDeviceInsights(id);
    if (!insights.ok()) return Error(res, insights.status());
    nlohmann::json j;
    std::string insights_json;
    google::protobuf::util::JsonPrintOptions o;
    o.always_print_primitive_fields = true;
    o.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(*insights, &insights_json,
                                                      o);
    j["insights"] = nlohmann::json::parse(insights_json, nullptr, false);
    j["device_id"] = id;
    j["rinse_agent_level_pct"] = rec->rinse_agent_level_pct();
    j["cycles_completed"] = rec->cycles_completed();
    j["cycle_drying_means"] = std::vector<double>(
        rec->cycle_drying_means().begin(), rec->cycle_drying_means().end());
    j["open_anomalies"] = std::vector<std::string>(
        rec->open_anomalies().begin(), rec->open_anomalies().end());
    j["open_reorder_offer"] = rec->open_reorder_offer();
    j["last_seen_unix_ms"] = rec->last_seen_unix_ms();
    j["samples_stored"] = rec->samples_stored();
    j["baseline_c"] = cloud_->options().detector.baseline_c;
    auto customer = cloud_->GetCustomer(id);
    if (customer.ok()) {
      j["customer"] = {{"name", customer->name()},
                       {"shop_id", customer->shop_id()}};
    }
    res.set_content(j.dump(), "application/json");
  });
  s.Get(R"(/api/devices/([0-9a-f]{64})/timeline)",
        [this](const httplib::Request& req, httplib::Response& res) {
          if (!ApiSession(auth_, req, res, Access::kSupport)) return;
          auto t = JoinedTimeline(cloud_, sphere_, req.matches[1]);
          if (!t.ok()) return Error(res, t.status());
          Json(res, *t);
        });
  s.Post(R"(/api/devices/([0-9a-f]{64})/service-request)",
         [this](const httplib::Request& req, httplib::Response& res) {
           if (!ApiSession(auth_, req, res, Access::kSupportOrOwnerOf,
                           req.matches[1])) {
             return;
           }
           auto body = ParseBody(req);
           if (!body.ok()) return Error(res, body.status());
           v1::RequestServiceRequest r;
           r.set_device_id(req.matches[1]);
           r.set_description(StringField(*body, "description"));
           auto out = cloud_->RequestService(r);
           if (!out.ok()) return Error(res, out.status());
           Json(res, *out);
         });
  s.Post(R"(/api/devices/([0-9a-f]{64})/order)",
         [this](const httplib::Request& req, httplib::Response& res) {
           if (!ApiSession(auth_, req, res, Access::kOwnerOf, req.matches[1])) {
             return;
           }
           auto body = ParseBody(req);
           if (!body.ok()) return Error(res, body.status());
           v1::PlaceOrderRequest r;
           r.set_device_id(req.matches[1]);
           r.set_offer_id(StringField(*body, "offer_id"));
           auto out = cloud_->PlaceOrder(r);
           if (!out.ok()) return Error(res, out.status());
           Json(res, *out);
         });
}

}  // namespace contoso::appsvc
