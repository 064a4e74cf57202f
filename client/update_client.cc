#include "client/update_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/attestation_client.h"

namespace sphere::client {
namespace {
// As securitysvc/auth/device_authenticator.h kSessionTokenMetadata (device
// side links no server code).
constexpr char kSessionTokenMetadataKey[] = "sphere-session-token";
}  // namespace

// UnaryCall: one logical unary call, re-sent on a redirect.
template <typename Req, typename Resp>
class UpdateClient::UnaryCall {
 public:
  using Invoke = void (*)(v1::UpdateService::Stub*, grpc::ClientContext*,
                          const Req*, Resp*, std::function<void(grpc::Status)>);
  UnaryCall(UpdateClient* client, const char* method, Req request,
            std::function<void(absl::StatusOr<Resp>)> done, Invoke invoke)
      : client_(client),
        method_(method),
        request_(std::move(request)),
        done_(std::move(done)),
        invoke_(invoke) {}

  void Start(std::string address) {
    address_ = std::move(address);
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(rpc::Deadline(client_->options_.deadline));
    response_.Clear();
    if (absl::Status proof =
            client_->AddProof(request_.device_id(), ctx_.get());
        !proof.ok()) {
      Finish(absl::Status(proof.code(),
                          absl::StrCat(method_, ": ", proof.message())));
      return;
    }
    invoke_(client_->StubFor(address_), ctx_.get(), &request_, &response_,
            [this](grpc::Status st) { OnDone(st); });
  }

 private:
  void OnDone(const grpc::Status& st) {
    if (std::string next = client_->FailoverTarget(request_.device_id(),
                                                   address_, st, &tried_);
        !next.empty()) {
      Start(std::move(next));
      return;
    }
    std::string target = client_->RedirectTarget(*ctx_, st);
    if (!target.empty() && hops_ < client_->options_.max_redirects) {
      ++hops_;
      client_->router_.Learn(request_.device_id(), target);
      Start(std::move(target));
      return;
    }
    if (st.ok()) {
      Finish(std::move(response_));
    } else {
      absl::Status s = rpc::FromGrpcStatus(st);
      Finish(absl::Status(s.code(), absl::StrCat(method_, " at ", address_,
                                                 ": ", s.message())));
    }
  }

  void Finish(absl::StatusOr<Resp> result) {
    UpdateClient* client = client_;
    done_(std::move(result));
    delete this;
    client->Ended();
  }

  UpdateClient* client_;
  const char* method_;
  Req request_;
  Resp response_;
  std::function<void(absl::StatusOr<Resp>)> done_;
  Invoke invoke_;
  std::string address_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  int hops_ = 0;
  std::vector<std::string> tried_;  // unreachable shards (failover)
};

// DownloadCall: one DownloadImage stream (re-sent on a redirect before any
// chunk arrived), keeping at most max_bytes of data.
class UpdateClient::DownloadCall final
    : public grpc::ClientReadReactor<v1::ImageChunk> {
 public:
  DownloadCall(UpdateClient* client, v1::DownloadImageRequest request,
               uint64_t max_bytes, DownloadCallback done)
      : client_(client),
        request_(std::move(request)),
        max_bytes_(max_bytes),
        done_(std::move(done)) {}

  void Start(std::string address) {
    address_ = std::move(address);
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(rpc::Deadline(client_->options_.deadline));
    if (absl::Status proof =
            client_->AddProof(request_.device_id(), ctx_.get());
        !proof.ok()) {
      result_.status = absl::Status(
          proof.code(), absl::StrCat("DownloadImage: ", proof.message()));
      UpdateClient* client = client_;
      done_(std::move(result_));
      delete this;
      client->Ended();
      return;
    }
    client_->StubFor(address_)->async()->DownloadImage(ctx_.get(), &request_,
                                                       this);
    StartRead(&chunk_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (chunk_.data().size() > max_bytes_ - kept_) {
      overrun_ = true;
      ctx_->TryCancel();
      return;
    }
    kept_ += chunk_.data().size();
    result_.chunks.push_back(std::move(chunk_));
    chunk_.Clear();
    StartRead(&chunk_);
  }

  void OnDone(const grpc::Status& st) override {
    std::string target;
    int hops = hops_;
    if (result_.chunks.empty() && !overrun_) {
      target =
          client_->FailoverTarget(request_.device_id(), address_, st, &tried_);
    }
    if (target.empty()) {
      target = client_->RedirectTarget(*ctx_, st);
      if (!target.empty()) {
        ++hops;
        if (hops <= client_->options_.max_redirects) {
          client_->router_.Learn(request_.device_id(), target);
        }
      }
    }
    if (!target.empty() && result_.chunks.empty() &&
        hops <= client_->options_.max_redirects) {
      // A fresh reactor for the redirected stream; this one is finished.
      auto* next = new DownloadCall(client_, std::move(request_), max_bytes_,
                                    std::move(done_));
      next->hops_ = hops;
      next->tried_ = std::move(tried_);
      delete this;
      next->Start(std::move(target));  // in_flight_ carries over
      return;
    }
    if (overrun_) {
      result_.status = absl::OutOfRangeError(absl::StrCat(
          "DownloadImage at ", address_, ": server sent more than the ",
          max_bytes_, " bytes left of the signed length; stream cancelled"));
    } else if (!st.ok()) {
      absl::Status s = rpc::FromGrpcStatus(st);
      result_.status = absl::Status(
          s.code(),
          absl::StrCat("DownloadImage at ", address_, ": ", s.message()));
    }
    UpdateClient* client = client_;
    done_(std::move(result_));
    delete this;
    client->Ended();
  }

 private:
  UpdateClient* client_;
  v1::DownloadImageRequest request_;
  const uint64_t max_bytes_;
  DownloadCallback done_;
  std::string address_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  v1::ImageChunk chunk_;
  DownloadResult result_;
  uint64_t kept_ = 0;
  bool overrun_ = false;
  int hops_ = 0;
  std::vector<std::string> tried_;  // unreachable shards (failover)
};

UpdateClient::UpdateClient(std::vector<cluster::ShardEndpoint> shards,
                           rpc::TlsFiles tls, Options options)
    : tls_(std::move(tls)),
      options_(options),
      router_(ShardMapFromEndpoints(shards), options.routing,
              options.clock != nullptr ? options.clock : Clock::Real()),
      shards_(shards) {}

UpdateClient::~UpdateClient() {
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &in_flight_));
}

absl::Status UpdateClient::AddProof(const std::string& device_id,
                                    grpc::ClientContext* ctx) const {
  if (!options_.session_token) return absl::OkStatus();
  std::string token = options_.session_token(device_id);
  if (token.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no session token for device ", device_id.substr(0, 64),
                     ": attest the device first"));
  }
  if (token.size() > options_.max_session_token_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("session token of ", token.size(), " bytes exceeds ",
                     options_.max_session_token_length));
  }
  ctx->AddMetadata(kSessionTokenMetadataKey, token);
  return absl::OkStatus();
}

void UpdateClient::Started() {
  absl::MutexLock l(&mu_);
  ++in_flight_;
}

void UpdateClient::Ended() {
  absl::MutexLock l(&mu_);
  --in_flight_;
}

v1::UpdateService::Stub* UpdateClient::StubFor(const std::string& address) {
  absl::MutexLock l(&mu_);
  for (auto& [a, stub] : stubs_) {
    if (a == address) return stub.get();
  }
  auto channel =
      rpc::NewChannel(address, tls_, cluster::ServerNameAt(shards_, address));
  channels_.push_back(channel);
  stubs_.emplace_back(address, v1::UpdateService::NewStub(channel));
  return stubs_.back().second.get();
}

std::string UpdateClient::FailoverTarget(const std::string& device_id,
                                         const std::string& call_address,
                                         const grpc::Status& st,
                                         std::vector<std::string>* tried) {
  bool ready = false;
  {
    absl::MutexLock l(&mu_);
    for (size_t i = 0; i < stubs_.size(); ++i) {
      if (stubs_[i].first == call_address) {
        ready = channels_[i]->GetState(/*try_to_connect=*/false) ==
                GRPC_CHANNEL_READY;
        break;
      }
    }
  }
  if (!IsTransportFailure(static_cast<absl::StatusCode>(st.error_code()),
                          ready)) {
    router_.ReportReachable(call_address);  // an answer: alive
    return "";
  }
  if (!router_.ReportUnreachable(call_address) ||
      static_cast<int>(tried->size()) >= router_.options().max_failovers) {
    return "";
  }
  tried->push_back(call_address);
  return router_.Route(device_id, *tried);
}

std::string UpdateClient::OwnerAddress(const std::string& device_id) {
  return router_.Route(device_id, {});
}

std::string UpdateClient::RedirectTarget(const grpc::ClientContext& ctx,
                                         const grpc::Status& st) const {
  if (st.error_code() != grpc::StatusCode::FAILED_PRECONDITION) return "";
  const auto& md = ctx.GetServerTrailingMetadata();
  auto a = md.find(kRedirectAddressKey);
  if (a == md.end() || md.find(kRedirectShardKey) == md.end()) return "";
  if (a->second.size() > options_.max_address_length) return "";
  return std::string(a->second.data(), a->second.size());
}

void UpdateClient::GetUpdates(v1::GetUpdatesRequest request,
                              UpdatesCallback done) {
  std::string owner = OwnerAddress(request.device_id());
  if (owner.empty()) {
    done(absl::UnavailableError("GetUpdates: cluster lists no shards"));
    return;
  }
  Started();
  (new UnaryCall<v1::GetUpdatesRequest, v1::GetUpdatesResponse>(
       this, "GetUpdates", std::move(request), std::move(done),
       +[](v1::UpdateService::Stub* stub, grpc::ClientContext* ctx,
           const v1::GetUpdatesRequest* req, v1::GetUpdatesResponse* resp,
           std::function<void(grpc::Status)> cb) {
         stub->async()->GetUpdates(ctx, req, resp, std::move(cb));
       }))
      ->Start(std::move(owner));
}

void UpdateClient::ReportUpdateResult(v1::ReportUpdateResultRequest request,
                                      ReportCallback done) {
  std::string owner = OwnerAddress(request.device_id());
  if (owner.empty()) {
    done(absl::UnavailableError("ReportUpdateResult: cluster lists no shards"));
    return;
  }
  Started();
  (new UnaryCall<v1::ReportUpdateResultRequest, v1::ReportUpdateResultResponse>(
       this, "ReportUpdateResult", std::move(request),
       [done =
            std::move(done)](absl::StatusOr<v1::ReportUpdateResultResponse> r) {
         done(r.status());
       },
       +[](v1::UpdateService::Stub* stub, grpc::ClientContext* ctx,
           const v1::ReportUpdateResultRequest* req,
           v1::ReportUpdateResultResponse* resp,
           std::function<void(grpc::Status)> cb) {
         stub->async()->ReportUpdateResult(ctx, req, resp, std::move(cb));
       }))
      ->Start(std::move(owner));
}

void UpdateClient::DownloadImage(v1::DownloadImageRequest request,
                                 uint64_t max_bytes, DownloadCallback done) {
  std::string owner = OwnerAddress(request.device_id());
  if (owner.empty()) {
    DownloadResult r;
    r.status = absl::UnavailableError("DownloadImage: cluster lists no shards");
    done(std::move(r));
    return;
  }
  Started();
  (new DownloadCall(this, std::move(request), max_bytes, std::move(done)))
      ->Start(std::move(owner));
}

}  // namespace sphere::client
