#include "appsvc/web_server.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "appsvc/grpc_services.h"
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
  res.set_content(page, "text/html; charset=utf-8");
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

WebServer::WebServer(ContosoCloud* cloud, SphereSource* sphere,
                     WebServerOptions options)
    : cloud_(cloud), sphere_(sphere), options_(std::move(options)) {}

WebServer::~WebServer() { Stop(); }

absl::Status WebServer::Start() {
  server_ = std::make_unique<httplib::SSLServer>(options_.cert_file.c_str(),
                                                 options_.key_file.c_str());
  if (!server_->is_valid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot load the web server's TLS certificate ", options_.cert_file,
        " / key ", options_.key_file));
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
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    Html(res, kIndexPage);
  });
  s.Get("/support", [](const httplib::Request&, httplib::Response& res) {
    Html(res, kSupportPage);
  });
  s.Get("/owner", [](const httplib::Request&, httplib::Response& res) {
    Html(res, kOwnerPage);
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/api/devices", [this](const httplib::Request&,
                               httplib::Response& res) {
    v1::ListDevicesRequest req;
    req.set_page_size(kMaxPageSize);
    auto r = cloud_->ListDevices(req);
    if (!r.ok()) return Error(res, r.status());
    Json(res, *r);
  });
  s.Get(R"(/api/devices/([0-9a-f]{64}))",
        [this](const httplib::Request& req, httplib::Response& res) {
          const std::string id = req.matches[1];
          auto rec = cloud_->GetDeviceRecord(id);
          if (!rec.ok()) return Error(res, rec.status());
          auto insights = cloud_->GetDeviceInsights(id);
          if (!insights.ok()) return Error(res, insights.status());
          nlohmann::json j;
          std::string insights_json;
          google::protobuf::util::JsonPrintOptions o;
          o.always_print_primitive_fields = true;
          o.preserve_proto_field_names = true;
          (void)google::protobuf::util::MessageToJsonString(
              *insights, &insights_json, o);
          j["insights"] = nlohmann::json::parse(insights_json, nullptr, false);
          j["device_id"] = id;
          j["rinse_agent_level_pct"] = rec->rinse_agent_level_pct();
          j["cycles_completed"] = rec->cycles_completed();
          j["cycle_drying_means"] = std::vector<double>(
              rec->cycle_drying_means().begin(),
              rec->cycle_drying_means().end());
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
          auto t = JoinedTimeline(cloud_, sphere_, req.matches[1]);
          if (!t.ok()) return Error(res, t.status());
          Json(res, *t);
        });
  s.Post(R"(/api/devices/([0-9a-f]{64})/service-request)",
         [this](const httplib::Request& req, httplib::Response& res) {
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
