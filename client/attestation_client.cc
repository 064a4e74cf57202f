#include "client/attestation_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sphere::client {

namespace {
// Same key as securitysvc/auth/device_authenticator.h kSessionTokenMetadata
// (device-side code links no server code).
constexpr char kSessionTokenMetadataKey[] = "sphere-session-token";
}  // namespace

v1::ShardMap ShardMapFromEndpoints(
    const std::vector<cluster::ShardEndpoint>& shards) {
  v1::ShardMap map;
  map.set_virtual_nodes(kDefaultVirtualNodes);
  for (const auto& s : shards) {
    auto* shard = map.add_shards();
    shard->set_id(s.id);
    shard->set_address(s.address);
  }
  return map;
}

// Call is one logical request (possibly several RPCs when redirected).
class AsyncAttestationClient::Call {
 public:
  virtual ~Call() = default;
  virtual const std::string& device_id() const = 0;
  virtual const char* method() const = 0;
  // Start sends the request on `stub` with a fresh context.
  virtual void Start(const Stubs& stubs, absl::Duration deadline,
                     std::function<void(grpc::Status)> on_done) = 0;
  virtual void Complete(absl::Status status) = 0;

  grpc::ClientContext* context() { return context_.get(); }
  int hops = 0;
  std::string address;
  std::string session_token;  // sent as metadata when non-empty

 protected:
  std::unique_ptr<grpc::ClientContext> context_;
};

template <typename Req, typename Resp>
class AsyncAttestationClient::TypedCall final
    : public AsyncAttestationClient::Call {
 public:
  using Invoke = void (*)(const Stubs&, grpc::ClientContext*,
                          const Req*, Resp*, std::function<void(grpc::Status)>);
  TypedCall(const char* method, Req request,
            std::function<void(absl::StatusOr<Resp>)> done, Invoke invoke)
      : method_(method),
        request_(std::move(request)),
        done_(std::move(done)),
        invoke_(invoke) {}

  const std::string& device_id() const override {
    return request_.device_id();
  }
  const char* method() const override { return method_; }
  void Start(const Stubs& stubs, absl::Duration deadline,
             std::function<void(grpc::Status)> on_done) override {
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(rpc::Deadline(deadline));
    if (!session_token.empty()) {
      context_->AddMetadata(kSessionTokenMetadataKey, session_token);
    }
    response_.Clear();
    invoke_(stubs, context_.get(), &request_, &response_, std::move(on_done));
  }
  void Complete(absl::Status status) override {
    if (status.ok()) {
      done_(std::move(response_));
    } else {
      done_(std::move(status));
    }
  }

 private:
  const char* method_;
  Req request_;
  Resp response_;
  std::function<void(absl::StatusOr<Resp>)> done_;
  Invoke invoke_;
};

AsyncAttestationClient::AsyncAttestationClient(
    std::vector<cluster::ShardEndpoint> shards, rpc::TlsFiles tls,
    Options options)
    : tls_(std::move(tls)),
      options_(options),
      ring_(ShardMapFromEndpoints(shards)) {
  absl::MutexLock l(&mu_);
  for (const auto& s : shards) AddressIndexLocked(s.address);
}

AsyncAttestationClient::~AsyncAttestationClient() {
  std::deque<Call*> queued;
  {
    absl::MutexLock l(&mu_);
    queued.swap(queue_);
  }
  for (Call* call : queued) {
    call->Complete(absl::CancelledError("attestation client shut down"));
    delete call;
  }
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &in_flight_));
}

void AsyncAttestationClient::GetChallenge(v1::GetChallengeRequest request,
                                          ChallengeCallback done) {
  Submit(new TypedCall<v1::GetChallengeRequest, v1::GetChallengeResponse>(
      "GetChallenge", std::move(request), std::move(done),
      +[](const Stubs& stubs, grpc::ClientContext* ctx,
          const v1::GetChallengeRequest* req, v1::GetChallengeResponse* resp,
          std::function<void(grpc::Status)> cb) {
        stubs.attestation->async()->GetChallenge(ctx, req, resp, std::move(cb));
      }));
}

void AsyncAttestationClient::Attest(v1::AttestRequest request,
                                    AttestCallback done) {
  Submit(new TypedCall<v1::AttestRequest, v1::AttestResponse>(
      "Attest", std::move(request), std::move(done),
      +[](const Stubs& stubs, grpc::ClientContext* ctx,
          const v1::AttestRequest* req, v1::AttestResponse* resp,
          std::function<void(grpc::Status)> cb) {
        stubs.attestation->async()->Attest(ctx, req, resp, std::move(cb));
      }));
}

void AsyncAttestationClient::UploadErrors(v1::UploadErrorsRequest request,
                                          std::string session_token,
                                          UploadErrorsCallback done) {
  auto* call = new TypedCall<v1::UploadErrorsRequest, v1::UploadErrorsResponse>(
      "UploadErrors", std::move(request), std::move(done),
      +[](const Stubs& stubs, grpc::ClientContext* ctx,
          const v1::UploadErrorsRequest* req, v1::UploadErrorsResponse* resp,
          std::function<void(grpc::Status)> cb) {
        stubs.errors->async()->UploadErrors(ctx, req, resp, std::move(cb));
      });
  call->session_token = std::move(session_token);
  Submit(call);
}

AsyncAttestationClient::Stats AsyncAttestationClient::stats() const {
  absl::MutexLock l(&mu_);
  Stats s = stats_;
  s.cached_owners = owners_.size();
  return s;
}

void AsyncAttestationClient::Submit(Call* call) {
  bool dispatch = false;
  {
    absl::MutexLock l(&mu_);
    ++stats_.calls;
    if (in_flight_ < options_.max_in_flight) {
      ++in_flight_;
      stats_.max_in_flight_seen =
          std::max(stats_.max_in_flight_seen, in_flight_);
      dispatch = true;
    } else if (queue_.size() < options_.max_queued) {
      queue_.push_back(call);
      return;
    } else {
      ++stats_.rejected;
    }
  }
  if (dispatch) {
    Dispatch(call);
    return;
  }
  call->Complete(absl::ResourceExhaustedError(absl::StrCat(
      "attestation client window full (", options_.max_in_flight,
      " in flight, ", options_.max_queued, " queued): retry later")));
  delete call;
}

int AsyncAttestationClient::AddressIndexLocked(const std::string& address) {
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i].address == address) return static_cast<int>(i);
  }
  if (endpoints_.size() >= options_.max_addresses) return -1;
  endpoints_.push_back({address, nullptr});
  return static_cast<int>(endpoints_.size() - 1);
}

void AsyncAttestationClient::Dispatch(Call* call) {
  Stubs stubs{nullptr, nullptr};
  {
    absl::MutexLock l(&mu_);
    int index = -1;
    if (call->hops > 0) {
      index = AddressIndexLocked(call->address);  // redirect target
    } else if (auto it = owners_.find(call->device_id()); it != owners_.end()) {
      index = static_cast<int>(it->second);
    } else if (!ring_.empty()) {
      index = AddressIndexLocked(ring_.Owner(call->device_id()).address());
    }
    if (index >= 0) {
      Endpoint& e = endpoints_[index];
      if (!e.stub) {
        auto channel = rpc::NewChannel(e.address, tls_);
        e.stub = v1::AttestationService::NewStub(channel);
        e.errors_stub = v1::ErrorReportingService::NewStub(channel);
      }
      call->address = e.address;
      stubs = Stubs{e.stub.get(), e.errors_stub.get()};
    }
  }
  if (stubs.attestation == nullptr) {
    Finish(call, absl::UnavailableError(absl::StrCat(
                     call->method(), " for device ", call->device_id(),
                     ": no Security Service shard address available (",
                     call->hops > 0 ? "too many distinct redirect targets"
                                    : "cluster lists no shards",
                     ")")));
    return;
  }
  call->Start(stubs, options_.deadline,
              [this, call](grpc::Status st) { OnRpcDone(call, st); });
}

void AsyncAttestationClient::OnRpcDone(Call* call, const grpc::Status& st) {
  if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    const auto& md = call->context()->GetServerTrailingMetadata();
    auto a = md.find(kRedirectAddressKey);
    if (a != md.end() && md.find(kRedirectShardKey) != md.end()) {
      std::string target(a->second.data(),
                         std::min(a->second.size(),
                                  options_.max_address_length + 1));
      if (target.size() > options_.max_address_length) {
        Finish(call, absl::UnavailableError(absl::StrCat(
                         call->method(), " for device ", call->device_id(),
                         ": shard ", call->address,
                         " redirected to an address longer than ",
                         options_.max_address_length, " bytes")));
        return;
      }
      if (call->hops >= options_.max_redirects) {
        Finish(call, absl::UnavailableError(absl::StrCat(
                         call->method(), " for device ", call->device_id(),
                         ": more than ", options_.max_redirects,
                         " shard redirects (last to ", target,
                         "); the shard map is changing, retry later")));
        return;
      }
      {
        absl::MutexLock l(&mu_);
        ++stats_.redirects;
        int index = AddressIndexLocked(target);
        if (index >= 0) {
          if (owners_.size() >= options_.max_cached_owners &&
              !owners_.contains(call->device_id()) && !owners_.empty()) {
            owners_.erase(owners_.begin());
          }
          if (options_.max_cached_owners > 0) {
            owners_[call->device_id()] = static_cast<uint32_t>(index);
          }
        }
      }
      ++call->hops;
      call->address = std::move(target);
      Dispatch(call);
      return;
    }
  }
  if (st.ok()) {
    Finish(call, absl::OkStatus());
    return;
  }
  absl::Status s = rpc::FromGrpcStatus(st);
  Finish(call, absl::Status(s.code(), absl::StrCat(call->method(), " at ",
                                                   call->address, ": ",
                                                   s.message())));
}

void AsyncAttestationClient::Finish(Call* call, absl::Status status) {
  Call* next = nullptr;
  {
    absl::MutexLock l(&mu_);
    if (!queue_.empty()) {
      next = queue_.front();  // inherits this call's window slot
      queue_.pop_front();
    }
  }
  call->Complete(std::move(status));
  delete call;
  if (next != nullptr) {
    Dispatch(next);
  } else {
    absl::MutexLock l(&mu_);
    --in_flight_;
  }
}

}  // namespace sphere::client
