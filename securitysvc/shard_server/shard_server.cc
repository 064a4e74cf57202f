#include "securitysvc/shard_server/shard_server.h"

#include <algorithm>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "common/util/metrics.h"

namespace sphere::shard {

// Heartbeat calls `beat` every `interval`, and sooner (checked every
// min(interval, 250 ms)) when `changed` says there is news, until destroyed.
class ShardServer::Heartbeat {
 public:
  Heartbeat(absl::Duration interval, std::function<bool()> changed,
            std::function<void()> beat)
      : interval_(interval),
        tick_(std::min(interval, absl::Milliseconds(250))),
        changed_(std::move(changed)),
        beat_(std::move(beat)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Heartbeat() {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    absl::Time last = absl::Now();
    while (true) {
      {
        absl::MutexLock l(&mu_);
        auto stop = [this]()
                        ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), tick_)) return;
      }
      if (changed_() || absl::Now() - last >= interval_) {
        beat_();
        last = absl::Now();
      }
    }
  }

  const absl::Duration interval_;
  const absl::Duration tick_;
  const std::function<bool()> changed_;
  const std::function<void()> beat_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

ShardServer::ShardServer(ShardServerOptions options,
                         std::vector<std::unique_ptr<ShardPlugin>> plugins)
    : options_(std::move(options)), plugins_(std::move(plugins)) {}

ShardServer::~ShardServer() {
  if (started_) Shutdown(absl::Seconds(1));
}

uint64_t ShardServer::DeviceCount() const {
  uint64_t n = 0;
  for (const auto& p : plugins_) n = std::max(n, p->DeviceCount());
  return n;
}

int64_t ShardServer::GateRevision() const {
  // A followed catalog counts as at a revision once the follower applied
  // all of it, the shard map included (the router is updated after the
  // catalog): a call released at R is routed by R's map.
  return follower_ ? follower_->applied_revision() : catalog_->revision();
}

absl::Status ShardServer::Register(bool wait_for_ready) {
  const uint64_t count = DeviceCount();
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  ctx.set_wait_for_ready(wait_for_ready);
  v1::RegisterShardRequest req;
  req.mutable_shard()->set_id(options_.shard_id);
  req.mutable_shard()->set_address(runner_->address());
  req.mutable_shard()->set_healthy(true);
  req.mutable_shard()->set_device_count(count);
  v1::ShardMap map;
  grpc::Status st = management_->RegisterShard(&ctx, req, &map);
  if (!st.ok()) return rpc::FromGrpcStatus(st);
  reported_count_ = count;
  router_->Update(map);
  return absl::OkStatus();
}

absl::Status ShardServer::Start() {
  if (started_) return absl::FailedPreconditionError("shard already started");
  if (!options_.open_store) {
    return absl::InvalidArgumentError("ShardServerOptions.open_store is unset");
  }
  const bool standalone = options_.management_address.empty();
  if (options_.catalog != nullptr && !standalone) {
    return absl::InvalidArgumentError(
        "a shard following management keeps its own catalog; pass "
        "ShardServerOptions.catalog only without a management address");
  }

  // The store, with every plug-in's column families.
  std::vector<std::string> cfs;
  absl::flat_hash_set<std::string> seen;
  for (const auto& p : plugins_) {
    for (auto& cf : p->ColumnFamilies()) {
      if (!seen.insert(cf).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            "column family '", cf,
            "' is claimed by two plug-ins (second: ", p->name(), ")"));
      }
      cfs.push_back(std::move(cf));
    }
  }
  auto store = options_.open_store(cfs);
  if (!store.ok()) return store.status();
  store_ = *std::move(store);

  if (options_.catalog != nullptr) {
    catalog_ = options_.catalog;
  } else {
    own_catalog_ =
        std::make_unique<catalog::InMemoryCatalog>(options_.master_key);
    catalog_ = own_catalog_.get();
  }
  router_ = std::make_unique<sharding::ShardRouter>(options_.shard_id);
  tokens_ = std::make_unique<auth::SessionTokens>(options_.session_token_key);
  authenticator_ = std::make_unique<auth::DeviceAuthenticator>(
      tokens_.get(), catalog_, options_.clock, options_.session_token_slots);
  device_calls_ =
      std::make_unique<DeviceCallHandler>(authenticator_.get(), router_.get());

  if (!standalone) {
    management_channel_ =
        rpc::NewChannel(options_.management_address, options_.management_tls);
    management_ = v1::ManagementService::NewStub(management_channel_);
    follower_ = std::make_unique<catalog::CatalogFollower>(
        management_channel_, catalog_,
        [this](const v1::ShardMap& map) { router_->Update(map); });
    if (own_catalog_ != nullptr) {
      own_catalog_->SetStalenessLimit(options_.clock,
                                      options_.max_catalog_staleness);
    }
    context_.management = management_.get();
    context_.wait_for_revision = [this](int64_t revision, absl::Duration d) {
      return follower_->WaitForRevision(revision, d);
    };
  }
  revision_gate_ = std::make_unique<RevisionGate>(
      [this] { return GateRevision(); }, context_.wait_for_revision,
      options_.revision_gate);

  context_.shard_id = options_.shard_id;
  context_.store = store_.get();
  context_.catalog = catalog_;
  context_.router = router_.get();
  context_.session_tokens = tokens_.get();
  context_.authenticator = authenticator_.get();
  context_.device_calls = device_calls_.get();
  context_.revision_gate = revision_gate_.get();
  context_.clock = options_.clock;
  if (auto root = crypto::ParseCertificate(options_.server_tls.ca_pem);
      root.ok()) {
    context_.root_subject_line = root->subject_line;
  }

  rpc::ServerOptions sopts;
  sopts.address = options_.address;
  sopts.tls = options_.server_tls;
  sopts.require_client_cert = true;
  sopts.max_message_bytes = options_.max_message_bytes;
  sopts.max_request_bytes = options_.max_request_bytes;
  runner_ = std::make_unique<rpc::ServerRunner>(sopts);
  for (auto& p : plugins_) {
    if (auto s = p->Init(context_); !s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("plug-in ", p->name(), ": ", s.message()));
    }
    for (grpc::Service* service : p->Services()) runner_->AddService(service);
  }
  if (auto s = runner_->Start(); !s.ok()) return s;
  started_ = true;

  if (!standalone) {
    // Register (management publishes the new shard map), then follow.
    if (auto s = Register(/*wait_for_ready=*/true); !s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot register with management at ",
                       options_.management_address, ": ", s.message()));
    }
    heartbeat_ = std::make_unique<Heartbeat>(
        options_.heartbeat_interval,
        [this] { return DeviceCount() != reported_count_; },
        [this] {
          if (auto s = Register(/*wait_for_ready=*/false); !s.ok()) {
            log::Warning("heartbeat to management failed",
                         {{"error", std::string(s.message())}});
          }
        });
    follower_->Start();
    // Catalog lag of this follower: revisions behind management, asked at
    // scrape time (1 s deadline; -1 when management does not answer).
    catalog_gauges_.push_back(metrics::RegisterGaugeCallback(
        "sphere_catalog_lag_revisions",
        "Catalog revisions this shard's follower is behind management "
        "(-1: management unreachable)",
        [this] {
          const int64_t applied = catalog_->revision();
          grpc::ClientContext ctx;
          ctx.set_deadline(rpc::Deadline(absl::Seconds(1)));
          v1::CatalogRevision head;
          grpc::Status st = management_->GetCatalogRevision(
              &ctx, v1::GetCatalogRevisionRequest(), &head);
          const double lag =
              st.ok() ? std::max<int64_t>(0, head.revision() - applied) : -1;
          return std::vector<metrics::Sample>{
              {{{"follower", options_.shard_id}}, lag}};
        }));
    catalog_gauges_.push_back(metrics::RegisterGaugeCallback(
        "sphere_catalog_staleness_seconds",
        "Seconds since this shard last heard from its catalog source (an "
        "event or a progress notification); above --max_catalog_staleness "
        "it refuses attestation",
        [this] {
          return std::vector<metrics::Sample>{
              {{{"follower", options_.shard_id}},
               absl::ToDoubleSeconds(catalog_->staleness())}};
        }));
    catalog_gauges_.push_back(metrics::RegisterGaugeCallback(
        "sphere_catalog_applied_revision",
        "Catalog revision this shard's follower has applied", [this] {
          return std::vector<metrics::Sample>{
              {{{"follower", options_.shard_id}},
               static_cast<double>(catalog_->revision())}};
        }));
    if (!follower_->WaitUntilSynced(options_.sync_timeout)) {
      log::Warning("catalog not synced yet; serving with what is known");
    }
  }
  log::Info("shard ready",
            {{"address", runner_->address()},
             {"catalog_revision", absl::StrCat(catalog_->revision())}});
  return absl::OkStatus();
}

std::string ShardServer::address() const {
  return runner_ ? runner_->address() : "";
}

int ShardServer::port() const { return runner_ ? runner_->port() : 0; }

void ShardServer::Shutdown(absl::Duration grace) {
  if (!started_ || stopped_) return;
  stopped_ = true;
  heartbeat_.reset();
  catalog_gauges_.clear();
  // Parked calls are answered before the server waits for in-flight ones.
  revision_gate_->Stop();
  runner_->Shutdown(grace);
  for (auto& p : plugins_) p->Stop();
  if (follower_) follower_->Stop();
}

absl::Status ShardServer::Run(const std::string& port_file) {
  if (auto s = Start(); !s.ok()) return s;
  if (!port_file.empty()) {
    if (auto s = util::WriteFile(port_file, absl::StrCat(port(), "\n"));
        !s.ok()) {
      Shutdown(absl::Seconds(5));
      return s;
    }
  }
  int sig = rpc::WaitForTerminationSignal();
  log::Info("shutting down", {{"signal", absl::StrCat(sig)}});
  Shutdown(absl::Seconds(5));
  return absl::OkStatus();
}

}  // namespace sphere::shard
