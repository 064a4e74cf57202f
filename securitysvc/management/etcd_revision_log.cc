#include "securitysvc/management/etcd_revision_log.h"

#include <atomic>
#include <map>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "third_party/etcd/rpc.grpc.pb.h"

namespace sphere::management {
namespace {

// PrefixEnd: the smallest key greater than every key starting with `prefix`
// (etcd's range_end for a prefix).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    unsigned char c = static_cast<unsigned char>(prefix.back());
    if (c < 0xff) {
      prefix.back() = static_cast<char>(c + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');  // whole keyspace
}

bool Retryable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace

absl::Status EtcdStatus(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  const std::string msg =
      absl::StrCat("etcd ", what, ": ", status.error_message());
  if (absl::StrContains(status.error_message(), "compacted")) {
    return absl::OutOfRangeError(msg);
  }
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::UnavailableError(msg);
    case grpc::StatusCode::INVALID_ARGUMENT:
      return absl::InvalidArgumentError(msg);
    case grpc::StatusCode::OUT_OF_RANGE:
      return absl::OutOfRangeError(msg);
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::PermissionDeniedError(msg);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

absl::StatusOr<std::vector<std::string>> ParseEtcdUrl(absl::string_view url) {
  if (!absl::ConsumePrefix(&url, "etcd://")) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "catalog URL must look like etcd://host:port[,host:port...]"));
  }
  std::vector<std::string> out;
  for (absl::string_view e : absl::StrSplit(url, ',', absl::SkipEmpty())) {
    if (e.size() > 255 || e.find(':') == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "etcd endpoint \"%s\" must be host:port (at most 255 characters)",
          e.substr(0, 64)));
    }
    out.emplace_back(e);
  }
  if (out.empty() || out.size() > 16) {
    return absl::InvalidArgumentError(
        "etcd://... must name between 1 and 16 endpoints");
  }
  return out;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> EtcdChannel(
    const EtcdOptions& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("no etcd endpoints");
  }
  // "ipv4:a:1,b:2" lets pick_first move to the next member when one fails;
  // names that are not literal IPv4 addresses go through DNS one by one.
  bool all_ipv4 = true;
  for (const std::string& e : options.endpoints) {
    for (char c : e) {
      if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' ||
            c == ':')) {
        all_ipv4 = false;
      }
    }
  }
  const std::string target =
      all_ipv4 ? absl::StrCat("ipv4:", absl::StrJoin(options.endpoints, ","))
               : options.endpoints.front();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);  // paged ranges
  args.SetMaxSendMessageSize(static_cast<int>(options.max_request_bytes) +
                             4096);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  const bool tls = !options.ca_pem.empty() || !options.cert_pem.empty() ||
                   !options.key_pem.empty();
  if (tls) {
    if (options.ca_pem.empty() || options.cert_pem.empty() ||
        options.key_pem.empty()) {
      return absl::InvalidArgumentError(
          "etcd mTLS needs the CA, a client certificate and its key");
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.ca_pem;
    ssl.pem_cert_chain = options.cert_pem;
    ssl.pem_private_key = options.key_pem;
    creds = grpc::SslCredentials(ssl);
    std::string name = options.server_name;
    if (name.empty()) {
      name = std::string(absl::string_view(options.endpoints.front())
                             .substr(0, options.endpoints.front().rfind(':')));
    }
    args.SetSslTargetNameOverride(name);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateCustomChannel(target, creds, args);
}

// Impl holds the stubs.
class EtcdRevisionLog::Impl {
 public:
  explicit Impl(const std::shared_ptr<grpc::Channel>& channel)
      : kv(etcdserverpb::KV::NewStub(channel)),
        watch(etcdserverpb::Watch::NewStub(channel)) {}
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

namespace {

class EtcdSnapshot final : public RevisionLog::Snapshot {
 public:
  EtcdSnapshot(EtcdRevisionLog* log, int64_t revision)
      : log_(log), revision_(revision) {}
  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override {
    return log_->GetAt(cf, key, revision_);
  }
  absl::Status Scan(
      absl::string_view cf, absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn,
      absl::string_view start) override {
    return log_->ScanAt(cf, prefix, fn, start, revision_);
  }
  int64_t revision() const override { return revision_; }

 private:
  EtcdRevisionLog* const log_;
  const int64_t revision_;
};

}  // namespace

EtcdRevisionLog::EtcdRevisionLog(EtcdOptions options,
                                 std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      impl_(std::make_unique<Impl>(channel_)) {}

EtcdRevisionLog::~EtcdRevisionLog() = default;

absl::StatusOr<std::unique_ptr<EtcdRevisionLog>> EtcdRevisionLog::Connect(
    EtcdOptions options) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = EtcdChannel(options);
  if (!channel.ok()) return channel.status();
  std::unique_ptr<EtcdRevisionLog> log(
      new EtcdRevisionLog(std::move(options), *std::move(channel)));
  // Fail fast with a clear message when no member answers.
  absl::StatusOr<int64_t> r = log->Revision();
  if (!r.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot reach etcd at ", absl::StrJoin(log->options_.endpoints, ","),
        ": ", r.status().message()));
  }
  return log;
}

namespace {

// RangeWithRetry runs an idempotent Range, retrying on Unavailable until the
// deadline (a member failed; pick_first moves to the next).
grpc::Status RangeWithRetry(etcdserverpb::KV::Stub* kv,
                            const etcdserverpb::RangeRequest& req,
                            etcdserverpb::RangeResponse* resp,
                            absl::Duration timeout) {
  const auto deadline =
      std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
  int delay_ms = 20;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    ctx.set_wait_for_ready(true);
    grpc::Status s = kv->Range(&ctx, req, resp);
    if (s.ok() || !Retryable(s) ||
        std::chrono::system_clock::now() +
                std::chrono::milliseconds(delay_ms) >=
            deadline) {
      return s;
    }
    // Bounded backoff on the caller's own thread: this is the management
    // process's storage call, never a gRPC server callback of its own.
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    delay_ms = std::min(delay_ms * 2, 500);
  }
}

}  // namespace

absl::StatusOr<std::string> EtcdRevisionLog::GetAt(absl::string_view cf,
                                                   absl::string_view key,
                                                   int64_t revision) {
  etcdserverpb::RangeRequest req;
  req.set_key(absl::StrCat(options_.prefix, cf, "/", key));
  req.set_revision(revision);
  etcdserverpb::RangeResponse resp;
  grpc::Status s =
      RangeWithRetry(impl_->kv.get(), req, &resp, options_.rpc_timeout);
  if (!s.ok()) return EtcdStatus(s, "range");
  if (resp.kvs_size() == 0) {
    return absl::NotFoundError(absl::StrCat(cf, "/", key, " not found"));
  }
  return std::move(*resp.mutable_kvs(0)->mutable_value());
}

absl::StatusOr<std::string> EtcdRevisionLog::Get(absl::string_view cf,
                                                 absl::string_view key) {
  return GetAt(cf, key, 0);
}

absl::Status EtcdRevisionLog::ScanAt(
    absl::string_view cf, absl::string_view prefix,
    const std::function<bool(absl::string_view, absl::string_view)>& fn,
    absl::string_view start, int64_t revision) {
  const std::string base = absl::StrCat(options_.prefix, cf, "/");
  const std::string from = absl::StrCat(base, prefix);
  std::string next = start.empty() ? from : absl::StrCat(base, start);
  const std::string end = PrefixEnd(from);
  int64_t pinned = revision;
  while (true) {
    etcdserverpb::RangeRequest req;
    req.set_key(next);
    req.set_range_end(end);
    req.set_limit(options_.range_page);
    req.set_revision(pinned);  // every page at the first page's revision
    etcdserverpb::RangeResponse resp;
    grpc::Status s =
        RangeWithRetry(impl_->kv.get(), req, &resp, options_.rpc_timeout);
    if (!s.ok()) return EtcdStatus(s, "range");
    if (pinned == 0) pinned = resp.header().revision();
    for (const mvccpb::KeyValue& kv : resp.kvs()) {
      absl::string_view k(kv.key());
      k.remove_prefix(base.size());
      if (!fn(k, kv.value())) return absl::OkStatus();
    }
    if (!resp.more() || resp.kvs_size() == 0) return absl::OkStatus();
    next = resp.kvs(resp.kvs_size() - 1).key();
    next.push_back('\0');
  }
}

absl::Status EtcdRevisionLog::Scan(
    absl::string_view cf, absl::string_view prefix,
    const std::function<bool(absl::string_view, absl::string_view)>& fn,
    absl::string_view start) {
  return ScanAt(cf, prefix, fn, start, 0);
}

absl::StatusOr<RevisionLog::KeyInfo> EtcdRevisionLog::Stat(
    absl::string_view cf, absl::string_view key) {
  etcdserverpb::RangeRequest req;
  req.set_key(absl::StrCat(options_.prefix, cf, "/", key));
  etcdserverpb::RangeResponse resp;
  grpc::Status s =
      RangeWithRetry(impl_->kv.get(), req, &resp, options_.rpc_timeout);
  if (!s.ok()) return EtcdStatus(s, "range");
  KeyInfo info;
  info.revision = resp.header().revision();
  if (resp.kvs_size() > 0) {
    info.mod_revision = resp.kvs(0).mod_revision();
    info.value = resp.kvs(0).value();
  }
  return info;
}

absl::StatusOr<RevisionLog::TxnResult> EtcdRevisionLog::Txn(
    const std::vector<Compare>& compares, const store::WriteBatch& ops) {
  if (ops.ops().size() > options_.max_txn_ops ||
      compares.size() > options_.max_txn_ops) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the change needs %d etcd operations and %d comparisons; one etcd "
        "transaction carries at most %d (--max-txn-ops); nothing changed "
        "(import fewer devices per call)",
        ops.ops().size(), compares.size(), options_.max_txn_ops));
  }
  etcdserverpb::TxnRequest req;
  for (const Compare& c : compares) {
    etcdserverpb::Compare* cmp = req.add_compare();
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_target(etcdserverpb::Compare::MOD);
    cmp->set_key(absl::StrCat(options_.prefix, c.cf, "/", c.key));
    cmp->set_mod_revision(c.mod_revision);
  }
  for (const store::WriteBatch::Op& op : ops.ops()) {
    etcdserverpb::RequestOp* r = req.add_success();
    std::string key = absl::StrCat(options_.prefix, op.cf, "/", op.key);
    if (op.is_delete) {
      r->mutable_request_delete_range()->set_key(std::move(key));
    } else {
      r->mutable_request_put()->set_key(std::move(key));
      r->mutable_request_put()->set_value(op.value);
    }
  }
  const size_t bytes = req.ByteSizeLong();
  if (bytes > options_.max_request_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "the change would be a %d-byte etcd request; etcd accepts at most %d "
        "bytes (--max-request-bytes); nothing changed",
        bytes, options_.max_request_bytes));
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(options_.rpc_timeout));
  ctx.set_wait_for_ready(true);
  etcdserverpb::TxnResponse resp;
  grpc::Status s = impl_->kv->Txn(&ctx, req, &resp);
  if (!s.ok()) {
    absl::Status st = EtcdStatus(s, "txn");
    if (absl::IsUnavailable(st)) {
      return absl::UnavailableError(
          absl::StrCat(st.message(),
                       " (the outcome is unknown: if it was applied, the "
                       "catalog will show it; retry reads first)"));
    }
    return st;
  }
  return TxnResult{resp.succeeded(), resp.header().revision()};
}

absl::StatusOr<std::unique_ptr<RevisionLog::Snapshot>>
EtcdRevisionLog::NewSnapshot() {
  absl::StatusOr<int64_t> r = Revision();
  if (!r.ok()) return r.status();
  return std::unique_ptr<Snapshot>(new EtcdSnapshot(this, *r));
}

absl::StatusOr<int64_t> EtcdRevisionLog::Revision() {
  etcdserverpb::RangeRequest req;
  req.set_key(options_.prefix);
  req.set_count_only(true);
  etcdserverpb::RangeResponse resp;
  grpc::Status s =
      RangeWithRetry(impl_->kv.get(), req, &resp, options_.rpc_timeout);
  if (!s.ok()) return EtcdStatus(s, "range");
  return resp.header().revision();
}

absl::Status EtcdRevisionLog::Compact(int64_t revision) {
  etcdserverpb::CompactionRequest req;
  req.set_revision(revision);
  etcdserverpb::CompactionResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   absl::ToChronoMilliseconds(options_.rpc_timeout));
  ctx.set_wait_for_ready(true);
  grpc::Status s = impl_->kv->Compact(&ctx, req, &resp);
  // Compaction is idempotent: an older revision is already compacted.
  if (!s.ok() && absl::StrContains(s.error_message(), "compacted")) {
    return absl::OkStatus();
  }
  return EtcdStatus(s, "compact");
}

// ---- Watch -----------------------------------------------------------------

// EtcdWatcher runs one etcd watch on its own thread, delivering each revision
// whole and in order; when the stream breaks (a member died) it resumes from
// the last delivered revision + 1 on the next member.
class EtcdRevisionLog::EtcdWatcher final : public RevisionLog::Watcher {
 public:
  EtcdWatcher(EtcdRevisionLog* log, int64_t start, WatchCallbacks callbacks)
      : log_(log), next_(start), callbacks_(std::move(callbacks)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~EtcdWatcher() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
    }
    thread_.join();
  }

 private:
  void Run() {
    int delay_ms = 50;
    while (true) {
      auto ctx = std::make_unique<grpc::ClientContext>();
      ctx->set_wait_for_ready(true);
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        ctx_ = ctx.get();
      }
      absl::Status result = Stream(ctx.get());
      {
        absl::MutexLock lock(&mu_);
        ctx_ = nullptr;
        if (stopping_) return;
      }
      if (absl::IsOutOfRange(result)) {
        if (callbacks_.on_error) callbacks_.on_error(result);
        return;
      }
      // A member failed or the stream broke: resume on another one. The
      // wait is interruptible by the destructor.
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                           absl::Milliseconds(delay_ms));
      if (stopping_) return;
      delay_ms = std::min(delay_ms * 2, 1000);
    }
  }

  absl::Status Stream(grpc::ClientContext* ctx) {
    auto stream = log_->impl_->watch->Watch(ctx);
    etcdserverpb::WatchRequest req;
    auto* create = req.mutable_create_request();
    create->set_key(log_->options_.prefix);
    create->set_range_end(PrefixEnd(log_->options_.prefix));
    create->set_start_revision(next_);
    // etcd's progress notifications (every --experimental-watch-progress-
    // notify-interval, 10 min by default) keep an idle watch alive; the
    // liveness shards rely on is management's own probe + progress events
    // (ManagementServiceOptions::catalog_probe).
    create->set_progress_notify(true);
    if (!stream->Write(req)) return absl::UnavailableError("watch write");
    etcdserverpb::WatchResponse resp;
    std::vector<Change> pending;
    int64_t pending_rev = 0;
    auto flush = [&] {
      if (pending_rev == 0) return;
      if (callbacks_.on_changes) callbacks_.on_changes(pending_rev, pending);
      next_ = pending_rev + 1;
      pending.clear();
      pending_rev = 0;
    };
    const size_t base = log_->options_.prefix.size();
    while (stream->Read(&resp)) {
      if (resp.compact_revision() > 0 || resp.canceled()) {
        stream->WritesDone();
        ctx->TryCancel();
        stream->Finish().IgnoreError();
        if (resp.compact_revision() > 0) {
          return absl::OutOfRangeError(absl::StrFormat(
              "etcd compacted past revision %d (now %d); start again from a "
              "snapshot",
              next_, resp.compact_revision()));
        }
        return absl::UnavailableError(
            absl::StrCat("etcd canceled the watch: ", resp.cancel_reason()));
      }
      for (const mvccpb::Event& e : resp.events()) {
        const int64_t rev = e.kv().mod_revision();
        if (rev < next_) continue;  // already delivered before a resume
        if (rev != pending_rev) flush();
        pending_rev = rev;
        absl::string_view full(e.kv().key());
        if (full.size() < base) continue;
        full.remove_prefix(base);
        size_t slash = full.find('/');
        if (slash == absl::string_view::npos) continue;
        Change c;
        c.is_delete = e.type() == mvccpb::Event::DELETE;
        c.cf = std::string(full.substr(0, slash));
        c.key = std::string(full.substr(slash + 1));
        if (!c.is_delete) c.value = e.kv().value();
        pending.push_back(std::move(c));
      }
      // etcd never splits one revision across responses (no fragment
      // requested), so a response ends every revision it carries.
      flush();
    }
    grpc::Status s = stream->Finish();
    return EtcdStatus(s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                            "watch stream ended")
                             : s,
                      "watch");
  }

  EtcdRevisionLog* const log_;
  int64_t next_;  // touched only by the watch thread
  const WatchCallbacks callbacks_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

absl::StatusOr<std::unique_ptr<RevisionLog::Watcher>> EtcdRevisionLog::Watch(
    int64_t start_revision, WatchCallbacks callbacks) {
  if (start_revision < 1) start_revision = 1;
  return std::unique_ptr<Watcher>(
      new EtcdWatcher(this, start_revision, std::move(callbacks)));
}

}  // namespace sphere::management
