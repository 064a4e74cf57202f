#include "common/rpc/rpc.h"

#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/rpc/observability.h"
#include "common/util/file.h"
#include "common/util/metrics.h"
#include "common/util/metrics_http.h"
#include "protos/ops.grpc.pb.h"

ABSL_FLAG(std::string, metrics_address, "127.0.0.1:0",
          "host:port of the HTTP /metrics listener (Prometheus text; port 0 "
          "picks a free port; empty disables it)");
ABSL_FLAG(std::string, metrics_port_file, "",
          "if set, the bound /metrics port is written here once serving");

namespace sphere::rpc {
namespace {

class MetricsServiceImpl final : public v1::Metrics::CallbackService {
  grpc::ServerUnaryReactor* GetMetrics(grpc::CallbackServerContext* ctx,
                                       const v1::GetMetricsRequest*,
                                       v1::GetMetricsResponse* resp) override {
    resp->set_text(metrics::RenderAll());
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

}  // namespace

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const TlsFiles& tls, bool require_client_cert) {
  grpc::SslServerCredentialsOptions opts(
      require_client_cert
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  opts.pem_root_certs = tls.ca_pem;
  opts.pem_key_cert_pairs.push_back({tls.key_pem, tls.cert_pem});
  return grpc::SslServerCredentials(opts);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(
    const TlsFiles& tls) {
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = tls.ca_pem;
  opts.pem_private_key = tls.key_pem;
  opts.pem_cert_chain = tls.cert_pem;
  return grpc::SslCredentials(opts);
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& target,
                                          const TlsFiles& tls,
                                          const std::string& server_name) {
  RouteGrpcLogsToJson();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  return grpc::CreateCustomChannel(target, ChannelCredentials(tls), args);
}

absl::StatusOr<PeerIdentity> PeerFromContext(
    const grpc::ServerContextBase& context) {
  auto auth = context.auth_context();
  if (auth == nullptr) {
    return absl::UnauthenticatedError("call carries no TLS peer identity");
  }
  auto pem = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) {
    return absl::UnauthenticatedError(
        "no client certificate: connect with a Sphere-issued certificate");
  }
  absl::string_view pem_text(pem.front().data(), pem.front().size());
  // Parsing X.509 costs hundreds of µs on OpenSSL 3 and a connection
  // presents the same certificate on every call: cache parsed peers by the
  // SHA-256 of their PEM (bounded; gRPC already verified the chain).
  static absl::Mutex cache_mu(absl::kConstInit);
  static auto* cache =
      new absl::flat_hash_map<std::string, crypto::ParsedCertificate>();
  constexpr size_t kMaxCachedPeers = 4096;
  std::string digest = crypto::Sha256(pem_text);
  {
    absl::MutexLock l(&cache_mu);
    auto it = cache->find(digest);
    if (it != cache->end()) return PeerIdentity{it->second};
  }
  auto parsed = crypto::ParseCertificate(pem_text);
  if (!parsed.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "unreadable client certificate: ", parsed.status().message()));
  }
  PeerIdentity id;
  id.cert = std::move(*parsed);
  absl::MutexLock l(&cache_mu);
  if (cache->size() >= kMaxCachedPeers) cache->clear();
  cache->emplace(std::move(digest), id.cert);
  return id;
}

std::string TruncateForStatus(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t cut = max_bytes;
  // Do not split a UTF-8 sequence: back up over continuation bytes.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return absl::StrCat(text.substr(0, cut), "... [", text.size() - cut,
                      " bytes cut]");
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share code numbers one-to-one.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      TruncateForStatus(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      TruncateForStatus(status.error_message()));
}

absl::Status CheckRequestSize(const google::protobuf::MessageLite& request,
                              size_t max_bytes, absl::string_view method) {
  const size_t size = request.ByteSizeLong();
  if (size <= max_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      method, " request is ", size, " bytes; this method accepts at most ",
      max_bytes, " bytes"));
}

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

ServerRunner::ServerRunner(ServerOptions options)
    : options_(std::move(options)) {}

ServerRunner::~ServerRunner() {
  if (server_) Shutdown(absl::ZeroDuration());
}

void ServerRunner::AddService(grpc::Service* service) {
  services_.push_back(service);
}

absl::Status ServerRunner::Start() {
  RouteGrpcLogsToJson();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  GatedListener::Options listen_options;
  listen_options.max_connections = options_.max_connections;
  listen_options.fd_headroom = options_.fd_headroom;
  listen_options.trim_window = options_.handshake_timeout + absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<GatedListener>> listener =
      GatedListener::Listen(options_.address, listen_options);
  if (!listener.ok()) return listener.status();
  listener_ = *std::move(listener);
  grpc::ServerBuilder builder;
  // Connections come from listener_ (see GatedListener for why not
  // AddListeningPort); TLS and every channel argument below still apply.
  acceptor_ = builder.experimental().AddExternalConnectionAcceptor(
      grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
      ServerCredentials(options_.tls, options_.require_client_cert));
  builder.SetMaxReceiveMessageSize(options_.max_request_bytes > 0
                                       ? options_.max_request_bytes
                                       : options_.max_message_bytes);
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options_.max_concurrent_streams_per_connection);
  builder.AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.handshake_timeout)));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(
                                 options_.max_connection_idle)));
  grpc::ResourceQuota quota("sphere");
  quota.SetMaxThreads(options_.max_threads);
  quota.Resize(static_cast<size_t>(options_.max_memory_bytes));
  builder.SetResourceQuota(quota);
  metrics_service_ = std::make_unique<MetricsServiceImpl>();
  builder.RegisterService(metrics_service_.get());
  for (auto* s : services_) builder.RegisterService(s);
  {
    std::vector<
        std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(NewObservabilityInterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  server_ = builder.BuildAndStart();
  if (!server_) {
    listener_.reset();
    return absl::UnavailableError(absl::StrCat(
        "cannot serve on ", options_.address, " (bad certificate/key?)"));
  }
  if (absl::Status s = listener_->Start(acceptor_.get()); !s.ok()) {
    server_->Shutdown(Deadline(absl::ZeroDuration()));
    server_.reset();
    return s;
  }
  port_ = listener_->port();
  if (auto s = StartMetricsHttp(); !s.ok()) {
    Shutdown(absl::ZeroDuration());
    return s;
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  return absl::OkStatus();
}

absl::Status ServerRunner::StartMetricsHttp() {
  const std::string address =
      options_.metrics_address.value_or(absl::GetFlag(FLAGS_metrics_address));
  const std::string port_file = options_.metrics_port_file.value_or(
      absl::GetFlag(FLAGS_metrics_port_file));
  if (address.empty()) return absl::OkStatus();
  auto http = metrics::MetricsHttpServer::Start(address);
  if (!http.ok()) return http.status();
  metrics_http_ = *std::move(http);
  if (!port_file.empty()) {
    return util::WriteFile(port_file,
                           absl::StrCat(metrics_http_->port(), "\n"));
  }
  return absl::OkStatus();
}

int ServerRunner::metrics_port() const {
  return metrics_http_ ? metrics_http_->port() : 0;
}

std::string ServerRunner::address() const {
  std::string host = options_.address.substr(0, options_.address.rfind(':'));
  return absl::StrCat(host, ":", port_);
}

void ServerRunner::Shutdown(absl::Duration grace) {
  if (!server_) return;
  // No new connections first; then drain the calls on the existing ones.
  if (listener_) listener_->Stop();
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(Deadline(grace));
  server_->Wait();
  server_.reset();
  metrics_http_.reset();
}

void InstallTerminationSignalMask() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace sphere::rpc
