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

  // items: the logical calls this RPC carries (a batch carries several).
  virtual size_t items() const { return 1; }

  grpc::ClientContext* context() { return context_.get(); }
  int hops = 0;
  bool pinned = false;       // sent to `address` as is (a batch for one shard)
  bool failed_over = false;  // sent to `address` as is (routed past a dead one)
  std::vector<std::string> unreachable;  // shards this call could not reach
  std::string address;
  std::string session_token;  // sent as metadata when non-empty

 protected:
  std::unique_ptr<grpc::ClientContext> context_;
};

template <typename Req, typename Resp>
class AsyncAttestationClient::TypedCall final
    : public AsyncAttestationClient::Call {
 public:
  using Invoke = void (*)(const Stubs&, grpc::ClientContext*, const Req*, Resp*,
                          std::function<void(grpc::Status)>);
  TypedCall(const char* method, Req request,
            std::function<void(absl::StatusOr<Resp>)> done, Invoke invoke)
      : method_(method),
        request_(std::move(request)),
        done_(std::move(done)),
        invoke_(invoke) {}

  const std::string& device_id() const override { return request_.device_id(); }
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

// Batch calls: Traits name the batch RPC and its item types.
struct AsyncAttestationClient::ChallengeTraits {
  using Item = ChallengeItem;
  using Response = v1::GetChallengeResponse;
  using BatchRequest = v1::GetChallengesRequest;
  using BatchResponse = v1::GetChallengesResponse;
  static constexpr char kMethod[] = "GetChallenges";
  static constexpr char kItemMethod[] = "GetChallenge";
  // A batch holds only items asking for the same catalog revision
  // (HoldChallenge), so the batch asks for exactly what each item asked.
  static void Add(BatchRequest* b, const Item& item) {
    b->add_device_ids(item.request.device_id());
    b->set_min_catalog_revision(item.request.min_catalog_revision());
  }
  static void Invoke(const Stubs& stubs, grpc::ClientContext* ctx,
                     const BatchRequest* req, BatchResponse* resp,
                     std::function<void(grpc::Status)> cb) {
    stubs.attestation->async()->GetChallenges(ctx, req, resp, std::move(cb));
  }
  static Response* Answer(v1::ChallengeResult& r) {
    return r.mutable_challenge();
  }
  // The service's limit of items per GetChallenges call.
  static constexpr int kMaxItems = 256;
  static std::vector<Item>& Pending(Endpoint& e) {
    return e.pending_challenges;
  }
};

struct AsyncAttestationClient::AttestTraits {
  using Item = AttestItem;
  using Response = v1::AttestResponse;
  using BatchRequest = v1::AttestBatchRequest;
  using BatchResponse = v1::AttestBatchResponse;
  static constexpr char kMethod[] = "AttestBatch";
  static constexpr char kItemMethod[] = "Attest";
  // The request (its ~1 KB quote) moves into the batch instead of being
  // copied (issue 14: loadgen's CPU per attestation); the item keeps its
  // device id, and Reclaim gives the request back to an item that must be
  // sent again on its own.
  static void Add(BatchRequest* b, Item& item) {
    v1::AttestRequest* r = b->add_requests();
    r->Swap(&item.request);
    item.request.set_device_id(r->device_id());
  }
  static void Reclaim(BatchRequest* b, size_t i, Item& item) {
    item.request.Swap(b->mutable_requests(static_cast<int>(i)));
  }
  static void Invoke(const Stubs& stubs, grpc::ClientContext* ctx,
                     const BatchRequest* req, BatchResponse* resp,
                     std::function<void(grpc::Status)> cb) {
    stubs.attestation->async()->AttestBatch(ctx, req, resp, std::move(cb));
  }
  static Response* Answer(v1::AttestResult& r) { return r.mutable_response(); }
  // The service's limit of items per AttestBatch call.
  static constexpr int kMaxItems = 256;
  static std::vector<Item>& Pending(Endpoint& e) { return e.pending_attests; }
};

struct AsyncAttestationClient::UploadTraits {
  using Item = UploadItem;
  using Response = v1::UploadErrorsResponse;
  using BatchRequest = v1::UploadErrorsBatchRequest;
  using BatchResponse = v1::UploadErrorsBatchResponse;
  static constexpr char kMethod[] = "UploadErrorsBatch";
  static constexpr char kItemMethod[] = "UploadErrors";
  // The service's limit of items per UploadErrorsBatch call.
  static constexpr int kMaxItems = 256;
  // The upload (its events) and token move into the batch instead of being
  // copied, as attestations do (issue 14: loadgen's CPU per upload); the
  // item keeps its device id, and Reclaim gives both back to an item that
  // must be sent again on its own (a redirect).
  static void Add(BatchRequest* b, Item& item) {
    v1::UploadErrorsItem* i = b->add_items();
    i->mutable_upload()->Swap(&item.request);
    item.request.set_device_id(i->upload().device_id());
    i->mutable_session_token()->swap(item.session_token);
  }
  static void Reclaim(BatchRequest* b, size_t i, Item& item) {
    v1::UploadErrorsItem* it = b->mutable_items(static_cast<int>(i));
    item.request.Swap(it->mutable_upload());
    item.session_token.swap(*it->mutable_session_token());
  }
  static void Invoke(const Stubs& stubs, grpc::ClientContext* ctx,
                     const BatchRequest* req, BatchResponse* resp,
                     std::function<void(grpc::Status)> cb) {
    stubs.errors->async()->UploadErrorsBatch(ctx, req, resp, std::move(cb));
  }
  static Response* Answer(v1::UploadErrorsResult& r) {
    return r.mutable_response();
  }
  static std::vector<Item>& Pending(Endpoint& e) { return e.pending_uploads; }
};

struct AsyncAttestationClient::UpdatesTraits {
  using Item = UpdatesItem;
  using Response = v1::GetUpdatesResponse;
  using BatchRequest = v1::GetUpdatesBatchRequest;
  using BatchResponse = v1::GetUpdatesBatchResponse;
  static constexpr char kMethod[] = "GetUpdatesBatch";
  static constexpr char kItemMethod[] = "GetUpdates";
  // The service's limit of items per GetUpdatesBatch call.
  static constexpr int kMaxItems = 256;
  static void Add(BatchRequest* b, const Item& item) {
    v1::GetUpdatesItem* i = b->add_items();
    *i->mutable_request() = item.request;
    i->set_session_token(item.session_token);
  }
  static void Invoke(const Stubs& stubs, grpc::ClientContext* ctx,
                     const BatchRequest* req, BatchResponse* resp,
                     std::function<void(grpc::Status)> cb) {
    stubs.updates->async()->GetUpdatesBatch(ctx, req, resp, std::move(cb));
  }
  // The devices of one group variant share one answer on the wire: each
  // item gets its own copy.
  static absl::StatusOr<Response> Answer(BatchResponse& b,
                                         v1::GetUpdatesResult& r) {
    if (r.answer_index() >= static_cast<uint32_t>(b.answers_size())) {
      return absl::InternalError(absl::StrCat(
          "GetUpdatesBatch answered index ", r.answer_index(), " of ",
          b.answers_size(), " answers"));
    }
    return b.answers(static_cast<int>(r.answer_index()));
  }
  static std::vector<Item>& Pending(Endpoint& e) { return e.pending_updates; }
};

namespace {
// AnswerOf: an OK batch result's answer: Traits::Answer(batch, result) when
// the answer lives in the batch (shared by items), else the result's own
// (Traits::Answer(result), moved out).
template <typename Traits, typename Result>
auto AnswerOf(typename Traits::BatchResponse& b, Result& r, int)
    -> decltype(Traits::Answer(b, r)) {
  return Traits::Answer(b, r);
}
template <typename Traits, typename Result>
absl::StatusOr<typename Traits::Response> AnswerOf(
    typename Traits::BatchResponse&, Result& r, long) {
  return std::move(*Traits::Answer(r));
}
}  // namespace

// BatchCall carries one shard's held items in one RPC and answers each item
// on its own: OK with its response, a redirect by sending the item alone to
// the owner, anything else with the item's code and message.
template <typename Traits>
class AsyncAttestationClient::BatchCall final
    : public AsyncAttestationClient::Call {
 public:
  using Item = typename Traits::Item;
  BatchCall(AsyncAttestationClient* client, std::string target,
            std::vector<Item> items)
      : client_(client), items_(std::move(items)) {
    pinned = true;
    address = std::move(target);
    for (Item& item : items_) Traits::Add(&request_, item);
  }

  const std::string& device_id() const override {
    return items_.front().request.device_id();
  }
  const char* method() const override { return Traits::kMethod; }
  size_t items() const override { return items_.size(); }
  void Start(const Stubs& stubs, absl::Duration deadline,
             std::function<void(grpc::Status)> on_done) override {
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(rpc::Deadline(deadline));
    response_.Clear();
    Traits::Invoke(stubs, context_.get(), &request_, &response_,
                   std::move(on_done));
  }
  void Complete(absl::Status status) override {
    auto* results = response_.mutable_results();
    for (size_t i = 0; i < items_.size(); ++i) {
      Item& item = items_[i];
      const std::string& id = item.request.device_id();
      if (!status.ok()) {
        item.done(status);
        continue;
      }
      // A result names its item's device; the shard leaves the name out
      // only when refusing a malformed one (it never echoes those).
      if (i >= static_cast<size_t>(results->size()) ||
          ((*results)[i].device_id() != id &&
           !((*results)[i].device_id().empty() && (*results)[i].code() != 0))) {
        item.done(absl::InternalError(absl::StrCat(
            Traits::kItemMethod, " for device ", id, " at ", address, ": ",
            Traits::kMethod, " answered ", results->size(), " results for ",
            items_.size(), " items, not in request order")));
        continue;
      }
      auto& r = (*results)[i];
      if (r.code() == 0) {
        item.done(AnswerOf<Traits>(response_, r, 0));
        continue;
      }
      const int code = r.code() > 0 && r.code() <= 16 ? r.code() : 2;
      if (code == static_cast<int>(absl::StatusCode::kFailedPrecondition) &&
          !r.redirect_address().empty()) {
        if (r.redirect_address().size() >
            client_->options_.max_address_length) {
          item.done(absl::UnavailableError(
              absl::StrCat(Traits::kItemMethod, " for device ", id, ": shard ",
                           address, " redirected to an address longer than ",
                           client_->options_.max_address_length, " bytes")));
          continue;
        }
        client_->LearnOwner(id, r.redirect_address());
        Reclaim(i, item);
        Resubmit(item, r.redirect_address());
        continue;
      }
      item.done(absl::Status(static_cast<absl::StatusCode>(code),
                             absl::StrCat(Traits::kItemMethod, " at ", address,
                                          ": ", log_bound(r.message()))));
    }
  }

 private:
  static std::string log_bound(const std::string& m) {
    return m.size() <= 1024 ? m : m.substr(0, 1024) + "...";
  }
  // Reclaim: the item's request back from the batch, where Add moved it
  // (attestations, error uploads); the other kinds' items kept theirs.
  template <typename T = Traits>
  auto Reclaim(size_t i, Item& item)
      -> decltype(T::Reclaim(std::declval<typename T::BatchRequest*>(), i,
                             item)) {
    T::Reclaim(&request_, i, item);
  }
  template <typename... Ignored>
  void Reclaim(Ignored&&...) {}
  void Resubmit(ChallengeItem& item, const std::string& target) {
    client_->SubmitChallenge(std::move(item.request), std::move(item.done), 1,
                             target);
  }
  void Resubmit(AttestItem& item, const std::string& target) {
    client_->SubmitAttest(std::move(item.request), std::move(item.done), 1,
                          target);
  }
  void Resubmit(UploadItem& item, const std::string& target) {
    client_->SubmitUpload(std::move(item.request),
                          std::move(item.session_token), std::move(item.done),
                          1, target);
  }
  void Resubmit(UpdatesItem& item, const std::string& target) {
    client_->SubmitGetUpdates(std::move(item.request),
                              std::move(item.session_token),
                              std::move(item.done), 1, target);
  }

  AsyncAttestationClient* const client_;
  std::vector<Item> items_;
  typename Traits::BatchRequest request_;
  typename Traits::BatchResponse response_;
};

AsyncAttestationClient::AsyncAttestationClient(
    std::vector<cluster::ShardEndpoint> shards, rpc::TlsFiles tls,
    Options options)
    : tls_(std::move(tls)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      router_(
          ShardMapFromEndpoints(shards),
          [&] {
            OwnerRouter::Options r = options.routing;
            r.max_cached_owners = options.max_cached_owners;
            return r;
          }(),
          clock_),
      shards_(shards) {
  absl::MutexLock l(&mu_);
  for (const auto& s : shards) AddressIndexLocked(s.address);
}

AsyncAttestationClient::~AsyncAttestationClient() {
  std::deque<Call*> queued;
  std::vector<ChallengeItem> challenges;
  std::vector<AttestItem> attests;
  std::vector<UploadItem> uploads;
  std::vector<UpdatesItem> updates;
  {
    absl::MutexLock l(&mu_);
    queued.swap(queue_);
    for (Endpoint& e : endpoints_) {
      for (auto& c : e.pending_challenges) challenges.push_back(std::move(c));
      for (auto& a : e.pending_attests) attests.push_back(std::move(a));
      for (auto& u : e.pending_uploads) uploads.push_back(std::move(u));
      e.pending_challenges.clear();
      e.pending_attests.clear();
      e.pending_uploads.clear();
      for (auto& u : e.pending_updates) updates.push_back(std::move(u));
      e.pending_updates.clear();
    }
  }
  const absl::Status shut =
      absl::CancelledError("attestation client shut down");
  for (auto& c : challenges) c.done(shut);
  for (auto& a : attests) a.done(shut);
  for (auto& u : uploads) u.done(shut);
  for (auto& u : updates) u.done(shut);
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
  if (options_.max_batch > 1 && !request.device_id().empty()) {
    ChallengeItem item{std::move(request), std::move(done)};
    if (HoldChallenge(item)) return;
    request = std::move(item.request);
    done = std::move(item.done);
  }
  SubmitChallenge(std::move(request), std::move(done), 0, "");
}

void AsyncAttestationClient::Attest(v1::AttestRequest request,
                                    AttestCallback done) {
  if (options_.max_batch > 1 && !request.device_id().empty()) {
    AttestItem item{std::move(request), std::move(done)};
    if (HoldItem<AttestTraits>(item)) return;
    request = std::move(item.request);
    done = std::move(item.done);
  }
  SubmitAttest(std::move(request), std::move(done), 0, "");
}

void AsyncAttestationClient::SubmitChallenge(v1::GetChallengeRequest request,
                                             ChallengeCallback done, int hops,
                                             std::string address) {
  auto* call = new TypedCall<v1::GetChallengeRequest, v1::GetChallengeResponse>(
      "GetChallenge", std::move(request), std::move(done),
      +[](const Stubs& stubs, grpc::ClientContext* ctx,
          const v1::GetChallengeRequest* req, v1::GetChallengeResponse* resp,
          std::function<void(grpc::Status)> cb) {
        stubs.attestation->async()->GetChallenge(ctx, req, resp, std::move(cb));
      });
  call->hops = hops;
  call->address = std::move(address);
  Submit(call);
}

void AsyncAttestationClient::SubmitAttest(v1::AttestRequest request,
                                          AttestCallback done, int hops,
                                          std::string address) {
  auto* call = new TypedCall<v1::AttestRequest, v1::AttestResponse>(
      "Attest", std::move(request), std::move(done),
      +[](const Stubs& stubs, grpc::ClientContext* ctx,
          const v1::AttestRequest* req, v1::AttestResponse* resp,
          std::function<void(grpc::Status)> cb) {
        stubs.attestation->async()->Attest(ctx, req, resp, std::move(cb));
      });
  call->hops = hops;
  call->address = std::move(address);
  Submit(call);
}

int AsyncAttestationClient::OwnerIndexLocked(const std::string& device_id) {
  const std::string address = router_.Route(device_id, {});
  if (address.empty()) return -1;
  return AddressIndexLocked(address);
}

bool AsyncAttestationClient::HoldChallenge(ChallengeItem& item) {
  std::vector<ChallengeItem> full;
  std::vector<ChallengeItem> other_revision;
  std::string address;
  {
    absl::MutexLock l(&mu_);
    const int index = OwnerIndexLocked(item.request.device_id());
    if (index < 0) return false;
    Endpoint& e = endpoints_[index];
    // One batch carries one min_catalog_revision: items held for another
    // revision leave first, in their own batch.
    if (!e.pending_challenges.empty() &&
        e.pending_challenges.front().request.min_catalog_revision() !=
            item.request.min_catalog_revision()) {
      other_revision.swap(e.pending_challenges);
    }
    e.pending_challenges.push_back(std::move(item));
    address = e.address;
    if (e.pending_challenges.size() >=
        static_cast<size_t>(options_.max_batch)) {
      full.swap(e.pending_challenges);
    }
  }
  if (!other_revision.empty()) {
    SendBatch<ChallengeTraits>(address, std::move(other_revision));
  }
  if (!full.empty()) SendBatch<ChallengeTraits>(address, std::move(full));
  return true;
}

template <typename Traits>
bool AsyncAttestationClient::HoldItem(typename Traits::Item& item) {
  const size_t limit = static_cast<size_t>(
      std::min(options_.max_batch, static_cast<int>(Traits::kMaxItems)));
  std::vector<typename Traits::Item> full;
  std::string address;
  {
    absl::MutexLock l(&mu_);
    const int index = OwnerIndexLocked(item.request.device_id());
    if (index < 0) return false;
    Endpoint& e = endpoints_[index];
    std::vector<typename Traits::Item>& pending = Traits::Pending(e);
    pending.push_back(std::move(item));
    if (pending.size() < limit) return true;
    full.swap(pending);
    address = e.address;
  }
  SendBatch<Traits>(address, std::move(full));
  return true;
}

template <typename Traits>
void AsyncAttestationClient::SendBatch(
    const std::string& address, std::vector<typename Traits::Item> items) {
  {
    absl::MutexLock l(&mu_);
    ++stats_.batches;
    stats_.batched_items += items.size();
  }
  Submit(new BatchCall<Traits>(this, address, std::move(items)));
}

template <typename Traits>
void AsyncAttestationClient::FlushPending() {
  std::vector<std::pair<std::string, std::vector<typename Traits::Item>>> held;
  {
    absl::MutexLock l(&mu_);
    for (Endpoint& e : endpoints_) {
      std::vector<typename Traits::Item>& pending = Traits::Pending(e);
      if (pending.empty()) continue;
      held.emplace_back(e.address, std::move(pending));
      pending.clear();
    }
  }
  for (auto& [address, items] : held) {
    SendBatch<Traits>(address, std::move(items));
  }
}

void AsyncAttestationClient::Flush() {
  if (options_.max_batch <= 1) return;
  FlushPending<ChallengeTraits>();
  FlushPending<AttestTraits>();
  FlushPending<UploadTraits>();
  FlushPending<UpdatesTraits>();
}

void AsyncAttestationClient::LearnOwner(const std::string& device_id,
                                        const std::string& address) {
  {
    absl::MutexLock l(&mu_);
    ++stats_.redirects;
    // Only addresses the client can hold a channel for are worth caching.
    if (AddressIndexLocked(address) < 0) return;
  }
  router_.Learn(device_id, address);
}

bool AsyncAttestationClient::ChannelReady(const std::string& address) {
  std::shared_ptr<grpc::Channel> channel;
  {
    absl::MutexLock l(&mu_);
    for (const Endpoint& e : endpoints_) {
      if (e.address == address) {
        channel = e.channel;
        break;
      }
    }
  }
  return channel != nullptr &&
         channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
}

bool AsyncAttestationClient::TryFailover(Call* call, const grpc::Status& st) {
  if (st.ok()) {
    router_.ReportReachable(call->address);
    return false;
  }
  const auto code = static_cast<absl::StatusCode>(st.error_code());
  if (!IsTransportFailure(code, ChannelReady(call->address))) {
    router_.ReportReachable(call->address);  // an answer: the shard is alive
    return false;
  }
  {
    absl::MutexLock l(&mu_);
    ++stats_.unreachable;
  }
  const bool down = router_.ReportUnreachable(call->address);
  if (!down || call->pinned ||  // a batch's items are retried by the caller
      static_cast<int>(call->unreachable.size()) >=
          router_.options().max_failovers) {
    return false;
  }
  call->unreachable.push_back(call->address);
  std::string next = router_.Route(call->device_id(), call->unreachable);
  if (next.empty()) return false;
  {
    absl::MutexLock l(&mu_);
    ++stats_.failovers;
  }
  call->address = std::move(next);
  call->failed_over = true;
  Dispatch(call);
  return true;
}

void AsyncAttestationClient::UploadErrors(v1::UploadErrorsRequest request,
                                          std::string session_token,
                                          UploadErrorsCallback done) {
  // Batched only on the gateway path: the token is the item's own proof.
  if (options_.max_batch > 1 && !session_token.empty() &&
      !request.device_id().empty()) {
    UploadItem item{std::move(request), std::move(session_token),
                    std::move(done)};
    if (HoldItem<UploadTraits>(item)) return;
    request = std::move(item.request);
    session_token = std::move(item.session_token);
    done = std::move(item.done);
  }
  SubmitUpload(std::move(request), std::move(session_token), std::move(done),
               0, "");
}

void AsyncAttestationClient::SubmitUpload(v1::UploadErrorsRequest request,
                                          std::string session_token,
                                          UploadErrorsCallback done, int hops,
                                          std::string address) {
  auto* call = new TypedCall<v1::UploadErrorsRequest, v1::UploadErrorsResponse>(
      "UploadErrors", std::move(request), std::move(done),
      +[](const Stubs& stubs, grpc::ClientContext* ctx,
          const v1::UploadErrorsRequest* req, v1::UploadErrorsResponse* resp,
          std::function<void(grpc::Status)> cb) {
        stubs.errors->async()->UploadErrors(ctx, req, resp, std::move(cb));
      });
  call->session_token = std::move(session_token);
  call->hops = hops;
  call->address = std::move(address);
  Submit(call);
}

void AsyncAttestationClient::GetUpdates(v1::GetUpdatesRequest request,
                                        std::string session_token,
                                        UpdatesCallback done) {
  // Batched only on the gateway path: the token is the item's own proof.
  if (options_.max_batch > 1 && !session_token.empty() &&
      !request.device_id().empty()) {
    UpdatesItem item{std::move(request), std::move(session_token),
                     std::move(done)};
    if (HoldItem<UpdatesTraits>(item)) return;
    request = std::move(item.request);
    session_token = std::move(item.session_token);
    done = std::move(item.done);
  }
  SubmitGetUpdates(std::move(request), std::move(session_token),
                   std::move(done), 0, "");
}

void AsyncAttestationClient::SubmitGetUpdates(v1::GetUpdatesRequest request,
                                              std::string session_token,
                                              UpdatesCallback done, int hops,
                                              std::string address) {
  auto* call = new TypedCall<v1::GetUpdatesRequest, v1::GetUpdatesResponse>(
      "GetUpdates", std::move(request), std::move(done),
      +[](const Stubs& stubs, grpc::ClientContext* ctx,
          const v1::GetUpdatesRequest* req, v1::GetUpdatesResponse* resp,
          std::function<void(grpc::Status)> cb) {
        stubs.updates->async()->GetUpdates(ctx, req, resp, std::move(cb));
      });
  call->session_token = std::move(session_token);
  call->hops = hops;
  call->address = std::move(address);
  Submit(call);
}

AsyncAttestationClient::Stats AsyncAttestationClient::stats() const {
  absl::MutexLock l(&mu_);
  Stats s = stats_;
  s.cached_owners = router_.stats().cached_owners;
  return s;
}

void AsyncAttestationClient::Submit(Call* call) {
  bool dispatch = false;
  {
    absl::MutexLock l(&mu_);
    stats_.calls += call->items();
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
    if (call->hops > 0 || call->pinned || call->failed_over) {
      index = AddressIndexLocked(call->address);  // redirect target / batch
    } else {
      index = OwnerIndexLocked(call->device_id());
    }
    if (index >= 0) {
      Endpoint& e = endpoints_[index];
      if (!e.stub) {
        auto channel = rpc::NewChannel(
            e.address, tls_, cluster::ServerNameAt(shards_, e.address));
        e.channel = channel;
        e.stub = v1::AttestationService::NewStub(channel);
        e.errors_stub = v1::ErrorReportingService::NewStub(channel);
        e.updates_stub = v1::UpdateService::NewStub(channel);
      }
      call->address = e.address;
      stubs = Stubs{e.stub.get(), e.errors_stub.get(), e.updates_stub.get()};
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
  if (TryFailover(call, st)) return;
  if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
      !call->pinned) {  // a batch's redirects come per item
    const auto& md = call->context()->GetServerTrailingMetadata();
    auto a = md.find(kRedirectAddressKey);
    if (a != md.end() && md.find(kRedirectShardKey) != md.end()) {
      std::string target(
          a->second.data(),
          std::min(a->second.size(), options_.max_address_length + 1));
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
      LearnOwner(call->device_id(), target);
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
  Finish(call, absl::Status(s.code(),
                            absl::StrCat(call->method(), " at ", call->address,
                                         ": ", s.message())));
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
