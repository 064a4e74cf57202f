#include "common/rpc/observability.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>

#include <cstdlib>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "common/util/metrics.h"

namespace sphere::rpc {
namespace {

using grpc::experimental::InterceptionHookPoints;

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

// Rejections: codes that mean "the server refused this call".
bool IsRejection(grpc::StatusCode code) {
  return code == grpc::StatusCode::INVALID_ARGUMENT ||
         code == grpc::StatusCode::PERMISSION_DENIED ||
         code == grpc::StatusCode::UNAUTHENTICATED ||
         code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
         code == grpc::StatusCode::FAILED_PRECONDITION ||
         code == grpc::StatusCode::OUT_OF_RANGE;
}

metrics::CounterMetric* Started() {
  static auto* c = metrics::Counter("grpc_server_started_total",
                                    "RPCs started on the server, by method");
  return c;
}
metrics::CounterMetric* Handled() {
  static auto* c = metrics::Counter(
      "grpc_server_handled_total",
      "RPCs completed on the server, by method and status code");
  return c;
}
metrics::HistogramMetric* Latency() {
  static auto* h = metrics::Histogram(
      "grpc_server_handling_seconds",
      "Time from the start of an RPC to its status, by method");
  return h;
}
metrics::CounterMetric* Rejections() {
  static auto* c = metrics::Counter("sphere_rejections_total",
                                    "Calls or connections refused, by reason");
  return c;
}

// MethodLabel bounds the number of distinct method labels (a method name
// comes from the registered services, but stay safe anyway).
std::string MethodLabel(absl::string_view method) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* seen = new absl::flat_hash_set<std::string>();
  absl::MutexLock l(&mu);
  if (seen->contains(method)) return std::string(method);
  if (seen->size() >= kMaxMethodLabels) return "other";
  std::string m = log::Bound(method, 128);
  seen->insert(m);
  return m;
}

bool IsQuietMethod(absl::string_view method) {
  return absl::StartsWith(method, "/grpc.health.") ||
         absl::StartsWith(method, "/grpc.reflection.") ||
         absl::EndsWith(method, "/GetMetrics") ||
         absl::EndsWith(method, "/RegisterShard");
}

absl::string_view MethodName(absl::string_view full_method) {
  size_t slash = full_method.rfind('/');
  return slash == absl::string_view::npos ? full_method
                                          : full_method.substr(slash + 1);
}

// Overrides of the request-line level (SetMethodLogLevel and
// SPHERE_RPC_LOG_LEVELS, the latter read once by MethodLogLevel).
struct LevelOverrides {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, log::Level> levels ABSL_GUARDED_BY(mu);
};
LevelOverrides& Overrides() {
  static auto* o = new LevelOverrides();
  return *o;
}
bool LoadLevelsFromEnvironment() {
  const char* env = std::getenv("SPHERE_RPC_LOG_LEVELS");
  if (env != nullptr && !ParseMethodLogLevels(env)) {
    log::Warning("SPHERE_RPC_LOG_LEVELS ignored: expected Method=level,...",
                 {{"value", log::Bound(env, 128)}});
  }
  return true;
}

bool WellFormedRequestId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdBytes) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

std::string NewRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static auto* bitgen = new absl::BitGen();
  uint64_t a, b;
  {
    absl::MutexLock l(&mu);
    a = absl::Uniform<uint64_t>(*bitgen);
    b = absl::Uniform<uint64_t>(*bitgen);
  }
  return absl::StrFormat("%016x%016x", a, b);
}

// Identifying fields of a catalog object, in the order they are shown.
constexpr absl::string_view kObjectFields[] = {
    "id",   "name",   "device_id", "tenant_id", "product_id", "device_group_id",
    "feed", "version"};

// DescribeObject renders "Device id=ab12 tenant_id=..." from the scalar
// identifying fields of `m` (never bytes, never repeated fields).
std::string DescribeObject(const google::protobuf::Message& m) {
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  std::string out = d->name();
  bool any = false;
  for (absl::string_view name : kObjectFields) {
    const auto* f = d->FindFieldByName(std::string(name));
    if (f == nullptr || f->is_repeated()) continue;
    std::string value;
    switch (f->cpp_type()) {
      case google::protobuf::FieldDescriptor::CPPTYPE_STRING:
        if (f->type() == google::protobuf::FieldDescriptor::TYPE_BYTES) {
          continue;
        }
        value = r->GetString(m, f);
        break;
      case google::protobuf::FieldDescriptor::CPPTYPE_ENUM:
        value = r->GetEnum(m, f)->name();
        break;
      case google::protobuf::FieldDescriptor::CPPTYPE_INT32:
        value = absl::StrCat(r->GetInt32(m, f));
        break;
      case google::protobuf::FieldDescriptor::CPPTYPE_UINT32:
        value = absl::StrCat(r->GetUInt32(m, f));
        break;
      case google::protobuf::FieldDescriptor::CPPTYPE_INT64:
        value = absl::StrCat(r->GetInt64(m, f));
        break;
      case google::protobuf::FieldDescriptor::CPPTYPE_UINT64:
        value = absl::StrCat(r->GetUInt64(m, f));
        break;
      default:
        continue;
    }
    if (value.empty()) continue;
    absl::StrAppend(&out, " ", name, "=", log::Bound(value, 96));
    any = true;
  }
  return any ? out : "";
}

std::string CallerIdentity(const grpc::ServerContextBase& ctx) {
  auto peer = PeerFromContext(ctx);
  if (!peer.ok()) return "anonymous";
  const auto& claims = peer->claims();
  std::string who = absl::StrCat("CN=", peer->cert.common_name);
  if (!claims.tenant_id.empty())
    absl::StrAppend(&who, " tenant=", claims.tenant_id);
  if (!claims.device_id.empty())
    absl::StrAppend(&who, " device=", claims.device_id);
  return who;
}

class ObservabilityInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ObservabilityInterceptor(grpc::experimental::ServerRpcInfo* info)
      : info_(info),
        method_(MethodLabel(info->method())),
        audited_(IsStateChangingMethod(info->method()) &&
                 !IsHotDeviceMethod(info->method())),
        start_(absl::Now()) {
    Started()->Increment({{"grpc_method", method_}});
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      auto* md = m->GetRecvInitialMetadata();
      if (md != nullptr) {
        auto it = md->find(
            grpc::string_ref(kRequestIdHeader.data(), kRequestIdHeader.size()));
        if (it != md->end()) {
          absl::string_view id(it->second.data(), it->second.size());
          if (WellFormedRequestId(id)) request_id_ = std::string(id);
        }
      }
    }
    if (m->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      if (auto* md = m->GetSendInitialMetadata()) {
        md->emplace(std::string(kRequestIdHeader), RequestId());
      }
    }
    if (audited_ && object_from_request_.empty() &&
        m->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE)) {
      if (void* msg = m->GetRecvMessage()) {
        object_from_request_ =
            DescribeObject(*static_cast<google::protobuf::Message*>(msg));
      }
    }
    if (audited_ && object_from_response_.empty() &&
        m->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      if (const void* msg = m->GetSendMessage()) {
        object_from_response_ =
            DescribeObject(*static_cast<const google::protobuf::Message*>(msg));
      }
    }
    if (m->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(m->GetSendStatus());
    }
    m->Proceed();
  }

 private:
  const std::string& RequestId() {
    if (request_id_.empty()) request_id_ = NewRequestId();
    return request_id_;
  }

  void Finish(const grpc::Status& status) {
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start_);
    const char* code = CodeName(status.error_code());
    Handled()->Increment({{"grpc_method", method_}, {"grpc_code", code}});
    Latency()->Observe(seconds, {{"grpc_method", method_}});
    if (IsRejection(status.error_code())) {
      CountRejection(absl::AsciiStrToLower(code));
    }
    const log::Level level = MethodLogLevel(method_, status.ok());
    const bool audit = audited_ && status.ok();
    // Nothing to write: skip the caller lookup and the line's formatting
    // (the hot device calls at the default level end here).
    if (level < log::MinLevel() && !audit) return;
    const grpc::ServerContextBase* ctx = info_->server_context();
    const std::string who = ctx ? CallerIdentity(*ctx) : "anonymous";
    log::Fields fields = {{"request_id", RequestId()},
                          {"method", method_},
                          {"caller", who},
                          {"code", code},
                          {"ms", absl::StrFormat("%.3f", seconds * 1e3)}};
    if (ctx != nullptr) fields.push_back({"peer", ctx->peer()});
    if (!status.ok()) fields.push_back({"error", status.error_message()});
    if (level >= log::MinLevel()) log::Write(level, "request", fields);
    if (audit) {
      log::AuditEvent event;
      event.who = who;
      event.what = std::string(
          absl::string_view(method_).substr(method_.rfind('/') + 1));
      event.object = !object_from_response_.empty() ? object_from_response_
                                                    : object_from_request_;
      event.details = {{"request_id", RequestId()}, {"method", method_}};
      log::Audit(event);
    }
  }

  grpc::experimental::ServerRpcInfo* const info_;
  const std::string method_;
  const bool audited_;
  const absl::Time start_;
  std::string request_id_;
  std::string object_from_request_;
  std::string object_from_response_;
};

class ObservabilityInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new ObservabilityInterceptor(info);
  }
};

void GrpcLogToJson(gpr_log_func_args* args) {
  log::Level level = log::Level::kInfo;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = log::Level::kDebug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) level = log::Level::kError;
  log::Write(level, args->message ? args->message : "",
             {{"source", "grpc"},
              {"file", args->file ? args->file : ""},
              {"line", absl::StrCat(args->line)}});
}

// Protobuf logs one ERROR line for every string field with invalid UTF-8,
// while gRPC parses a request, before any handler runs: any client could grow
// the log by one line per request. Its lines go through the bounded JSON log
// and at most kProtobufLinesPerSecond of them a second are written; the rest
// are counted in sphere_log_suppressed_total{source="protobuf"}.
constexpr int kProtobufLinesPerSecond = 10;

void ProtobufLogToJson(google::protobuf::LogLevel level, const char* filename,
                       int line, const std::string& message) {
  static absl::Mutex mu(absl::kConstInit);
  static int64_t window = 0;
  static int written = 0;
  static auto* suppressed = metrics::Counter(
      "sphere_log_suppressed_total",
      "Log lines dropped by a per-source rate limit, by source");
  {
    const int64_t now = absl::ToUnixSeconds(absl::Now());
    absl::MutexLock l(&mu);
    if (now != window) {
      window = now;
      written = 0;
    }
    if (++written > kProtobufLinesPerSecond) {
      suppressed->Increment({{"source", "protobuf"}});
      return;
    }
  }
  log::Level out = log::Level::kWarning;
  if (level == google::protobuf::LOGLEVEL_INFO) out = log::Level::kInfo;
  if (level >= google::protobuf::LOGLEVEL_ERROR) out = log::Level::kError;
  log::Write(out, message,
             {{"source", "protobuf"},
              {"file", filename ? filename : ""},
              {"line", absl::StrCat(line)}});
}

}  // namespace

bool IsStateChangingMethod(absl::string_view full_method) {
  size_t slash = full_method.rfind('/');
  absl::string_view name = slash == absl::string_view::npos
                               ? full_method
                               : full_method.substr(slash + 1);
  for (absl::string_view verb : kStateChangingVerbs) {
    if (absl::StartsWith(name, verb)) return true;
  }
  return false;
}

bool IsHotDeviceMethod(absl::string_view full_method) {
  const absl::string_view name = MethodName(full_method);
  for (absl::string_view hot : kHotDeviceMethods) {
    if (name == hot) return true;
  }
  return false;
}

log::Level MethodLogLevel(absl::string_view full_method, bool ok) {
  log::Level level = log::Level::kInfo;
  bool overridden = false;
  static const bool env_loaded = LoadLevelsFromEnvironment();
  (void)env_loaded;
  {
    LevelOverrides& o = Overrides();
    absl::MutexLock l(&o.mu);
    if (!o.levels.empty()) {
      auto it = o.levels.find(full_method);
      if (it == o.levels.end()) it = o.levels.find(MethodName(full_method));
      if (it != o.levels.end()) {
        level = it->second;
        overridden = true;
      }
    }
  }
  if (!overridden &&
      (IsQuietMethod(full_method) || IsHotDeviceMethod(full_method))) {
    level = log::Level::kDebug;
  }
  if (!ok && level < log::Level::kInfo) level = log::Level::kInfo;
  return level;
}

void SetMethodLogLevel(absl::string_view method, log::Level level) {
  LevelOverrides& o = Overrides();
  absl::MutexLock l(&o.mu);
  if (o.levels.size() >= kMaxMethodLabels && !o.levels.contains(method)) {
    return;
  }
  o.levels[std::string(method)] = level;
}

bool ParseMethodLogLevels(absl::string_view spec) {
  if (spec.size() > 4096) return false;
  std::vector<std::pair<std::string, log::Level>> parsed;
  for (absl::string_view entry :
       absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(entry, absl::MaxSplits('=', 1));
    const absl::string_view method = absl::StripAsciiWhitespace(kv.first);
    log::Level level;
    if (method.empty() || method.size() > 128 ||
        !log::ParseLevel(absl::StripAsciiWhitespace(kv.second), &level)) {
      return false;
    }
    parsed.emplace_back(std::string(method), level);
  }
  for (const auto& [method, level] : parsed) SetMethodLogLevel(method, level);
  return true;
}

void CountRejection(absl::string_view reason) {
  Rejections()->Increment({{"reason", std::string(reason)}});
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
NewObservabilityInterceptorFactory() {
  return std::make_unique<ObservabilityInterceptorFactory>();
}

void RouteGrpcLogsToJson() {
  static std::once_flag once;
  std::call_once(once, [] {
    gpr_set_log_function(GrpcLogToJson);
    google::protobuf::SetLogHandler(ProtobufLogToJson);
  });
}

}  // namespace sphere::rpc
