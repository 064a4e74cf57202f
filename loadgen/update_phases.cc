#include "loadgen/update_phases.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "client/attestation_client.h"
#include "common/crypto/crypto.h"
#include "common/update/metadata.h"
#include "common/util/clock.h"
#include "loadgen/allocator.h"
#include "loadgen/process_cpu.h"
#include "loadgen/verified_metadata.h"
#include "mcu-model/image.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/update.grpc.pb.h"
#include "twin/driver.h"
#include "twin/update_agent.h"
#include "twin/update_runner.h"

namespace sphere::loadgen {

std::unique_ptr<client::UpdateClient> GatewayUpdateClient(
    Fleet& fleet, const absl::flat_hash_map<std::string, twin::Twin*>* twins) {
  client::UpdateClient::Options co;
  co.deadline = absl::Seconds(20);
  co.session_token = [twins](const std::string& device_id) -> std::string {
    auto it = twins->find(device_id);
    return it == twins->end() ? std::string() : it->second->session_token();
  };
  return std::make_unique<client::UpdateClient>(fleet.cluster().shards,
                                                fleet.gateway_tls(), co);
}

namespace {

absl::Status Interrupted(uint64_t done, uint64_t total) {
  return absl::CancelledError(
      absl::StrCat("interrupted after ", done, " of ", total));
}

absl::flat_hash_map<std::string, twin::Twin*> TwinsById(
    Fleet& fleet, const std::vector<size_t>& indices) {
  absl::flat_hash_map<std::string, twin::Twin*> m;
  m.reserve(indices.size());
  for (size_t i : indices) {
    twin::Twin* t = fleet.twins()[i].get();
    m[t->device().device_id()] = t;
  }
  return m;
}

// Probe: why the update service cannot be driven on this cluster, or "".
std::string UpdateServiceUnavailable(Fleet& fleet, const char* method) {
  const absl::StatusCode code = ProbeMethod(
      fleet.cluster().shards[0].address, fleet.cluster().shards[0].server_name,
      fleet.gateway_tls(), method);
  if (code == absl::StatusCode::kUnimplemented) {
    return absl::StrCat(method,
                        " is not served (UNIMPLEMENTED): the update service "
                        "(issue 11) is not on this cluster");
  }
  if (code == absl::StatusCode::kUnavailable) {
    return absl::StrCat(method, " probe: server unavailable");
  }
  return "";
}

// ---------------------------------------------------------------- update_check

// CheckSender: how the update_check window sends one twin's GetUpdates
// (the UpdateTransport, one RPC per twin; or the gateway batch client) and
// sends what it holds back.
struct CheckSender {
  std::function<void(size_t index, v1::GetUpdatesRequest,
                     client::UpdateTransport::UpdatesCallback)>
      send;
  std::function<void()> flush = [] {};
};

// UpdateCheckWindow keeps up to `window` GetUpdates calls in flight; it
// refills `chunk` twins at a time (then flushes, so the batching client
// sends what it holds: a shard's batch fills from one chunk), or one at a
// time when chunk is 1.
class UpdateCheckWindow
    : public std::enable_shared_from_this<UpdateCheckWindow> {
 public:
  UpdateCheckWindow(Fleet* fleet, PhaseStats* stats, CheckSender sender,
                    std::vector<size_t> todo, size_t window, size_t chunk)
      : fleet_(fleet),
        stats_(stats),
        sender_(std::move(sender)),
        todo_(std::move(todo)),
        window_(std::max<size_t>(1, window)),
        chunk_(std::clamp<size_t>(chunk, 1, std::max<size_t>(1, window))) {}

  // Run returns once every call answered (or, after a stop request, once
  // the calls in flight answered); returns how many were started.
  size_t Run() {
    StartMore();
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(this, &UpdateCheckWindow::DoneLocked));
    return next_;
  }
  uint64_t verified() const { return verified_count_.load(); }
  std::string first_error() {
    absl::MutexLock l(&mu_);
    return first_error_;
  }

 private:
  bool DoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0 && (next_ >= todo_.size() || StopRequested());
  }

  void Fail(absl::Status s) {
    stats_->RecordError(s.code());
    absl::MutexLock l(&mu_);
    if (first_error_.empty()) first_error_ = s.ToString();
  }

  // Check: the answer is the twin's: it verifies under the device's
  // image-signing key (expiry and version too) and names the twin's tenant
  // and group (the fleet's; update_install moves its fraction later).
  absl::Status Check(const twin::Twin& t,
                     const v1::GetUpdatesResponse& answer) {
    // The ECDSA verify runs once per distinct document (the twins of a
    // group share it), not once per answer.
    auto md = verified_.Verify(answer.signed_metadata(),
                               t.device().image_signing_public_key(),
                               absl::Now(), 0);
    if (!md.ok()) {
      return absl::Status(
          md.status().code(),
          absl::StrCat("signed update metadata: ", md.status().message()));
    }
    if ((*md)->tenant_id() != fleet_->tenant_id ||
        (*md)->device_group_id() != fleet_->device_group_id ||
        (*md)->deployment_id() != answer.deployment_id()) {
      return absl::DataLossError(absl::StrCat(
          "update metadata for twin ", t.device().device_id().substr(0, 16),
          " is for tenant ", (*md)->tenant_id(), " group ",
          (*md)->device_group_id(), " deployment ", (*md)->deployment_id(),
          "; the twin is in tenant ", fleet_->tenant_id, " group ",
          fleet_->device_group_id, " (answer's deployment ", answer.deployment_id(),
          ")"));
    }
    return absl::OkStatus();
  }

  void OnDone(size_t index, absl::Time start,
              absl::StatusOr<v1::GetUpdatesResponse> answer) {
    absl::Status s = answer.ok() ? Check(*fleet_->twins()[index], *answer)
                                 : answer.status();
    if (s.ok()) {
      const absl::Time now = absl::Now();
      stats_->RecordOk(now, now - start);
      verified_count_.fetch_add(1);
    } else {
      Fail(std::move(s));
    }
    {
      absl::MutexLock l(&mu_);
      --in_flight_;
    }
    StartMore();
  }

  void StartMore() {
    auto self = shared_from_this();
    while (true) {
      std::vector<size_t> batch;
      {
        absl::MutexLock l(&mu_);
        if (next_ >= todo_.size() || StopRequested()) return;
        const size_t want = std::min(chunk_, todo_.size() - next_);
        if (window_ - static_cast<size_t>(in_flight_) < want) return;
        in_flight_ += static_cast<int>(want);
        batch.assign(todo_.begin() + next_, todo_.begin() + next_ + want);
        next_ += want;
      }
      for (size_t index : batch) {
        v1::GetUpdatesRequest req;
        req.set_device_id(fleet_->twins()[index]->device().device_id());
        const absl::Time start = absl::Now();
        sender_.send(
            index, std::move(req),
            [self, index, start](absl::StatusOr<v1::GetUpdatesResponse> a) {
              self->OnDone(index, start, std::move(a));
            });
      }
      sender_.flush();
    }
  }

  Fleet* const fleet_;
  PhaseStats* const stats_;
  const CheckSender sender_;
  const std::vector<size_t> todo_;
  const size_t window_;
  const size_t chunk_;
  VerifiedMetadataCache verified_;
  std::atomic<uint64_t> verified_count_{0};
  mutable absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

// CpuSeconds: this process's and the shards' CPU seconds so far (-1 when
// unreadable).
std::pair<double, double> CpuSeconds(const Fleet& fleet) {
  double self = -1, shards = 0;
  if (auto c = ProcessCpuSeconds(0); c.ok()) self = *c;
  for (const auto& shard : fleet.cluster().shards) {
    auto pid = fleet.ShardPid(shard.id);
    auto cpu = pid.ok() ? ProcessCpuSeconds(*pid)
                        : absl::StatusOr<double>(pid.status());
    if (!cpu.ok()) return {self, -1};
    shards += *cpu;
  }
  return {self, shards};
}

// ReportCpu sets loadgen_cpu_us_per_op and shards_cpu_us_per_op from two
// CpuSeconds readings around the phase's operations.
void ReportCpu(std::pair<double, double> before, std::pair<double, double> after,
               PhaseStats& stats) {
  const uint64_t ops = stats.ops();
  if (ops == 0) return;
  if (before.first >= 0 && after.first >= 0) {
    stats.SetMetric("loadgen_cpu_us_per_op",
                    (after.first - before.first) / ops * 1e6);
  }
  if (before.second >= 0 && after.second >= before.second) {
    stats.SetMetric("shards_cpu_us_per_op",
                    (after.second - before.second) / ops * 1e6);
  }
}

class UpdateCheckPhase final : public Phase {
 public:
  const char* name() const override { return "update_check"; }
  std::string Unavailable(Fleet& fleet) override {
    return UpdateServiceUnavailable(fleet,
                                    "/sphere.v1.UpdateService/GetUpdates");
  }
  absl::Status Run(Fleet& fleet, PhaseStats& stats) override {
    const FleetOptions& o = fleet.options();
    std::vector<size_t> todo;
    for (size_t i = 0; i < fleet.twins().size(); ++i) {
      if (fleet.twins()[i]->certified()) todo.push_back(i);
    }
    const size_t n = todo.size();
    const auto by_id = TwinsById(fleet, todo);
    // --update-batch 1: one GetUpdates RPC per twin (the UpdateTransport
    // the twin binary uses); more: GetUpdatesBatch per shard, each item
    // with its twin's session token.
    std::unique_ptr<client::UpdateClient> single;
    std::unique_ptr<client::AsyncAttestationClient> batching;
    CheckSender sender;
    size_t window = static_cast<size_t>(o.max_in_flight);
    size_t chunk = 1;
    if (o.update_batch <= 1) {
      single = GatewayUpdateClient(fleet, &by_id);
      sender.send = [u = single.get()](
                        size_t, v1::GetUpdatesRequest req,
                        client::UpdateTransport::UpdatesCallback done) {
        u->GetUpdates(std::move(req), std::move(done));
      };
    } else {
      client::AsyncAttestationClient::Options co;
      const int shards =
          std::max(1, static_cast<int>(fleet.cluster().shards.size()));
      co.max_in_flight = o.update_in_flight * shards;
      co.max_batch = o.update_batch;
      co.deadline = absl::Seconds(20);
      batching = std::make_unique<client::AsyncAttestationClient>(
          fleet.cluster().shards, fleet.gateway_tls(), co);
      sender.send = [&fleet, c = batching.get()](
                        size_t index, v1::GetUpdatesRequest req,
                        client::UpdateTransport::UpdatesCallback done) {
        c->GetUpdates(std::move(req), fleet.twins()[index]->session_token(),
                      std::move(done));
      };
      sender.flush = [c = batching.get()] { c->Flush(); };
      // A chunk fills each shard's batch about once; the window keeps
      // update_in_flight such chunks' worth of batches going.
      chunk = static_cast<size_t>(o.update_batch) * shards;
      window = chunk * static_cast<size_t>(std::max(2, o.update_in_flight));
    }
    const auto cpu_before = CpuSeconds(fleet);
    stats.Start(absl::Now(), n);
    auto check = std::make_shared<UpdateCheckWindow>(
        &fleet, &stats, std::move(sender), std::move(todo), window, chunk);
    const size_t started = check->Run();
    stats.Finish(absl::Now());
    ReportCpu(cpu_before, CpuSeconds(fleet), stats);
    if (batching != nullptr) {
      if (const auto cs = batching->stats(); cs.batches > 0) {
        stats.SetMetric("items_per_batch_rpc",
                        static_cast<double>(cs.batched_items) /
                            static_cast<double>(cs.batches));
      }
    }
    if (started < n) return Interrupted(started, n);
    if (check->verified() < n) {
      return absl::DataLossError(
          absl::StrCat("update_check: ", n - check->verified(), " of ", n,
                       " checks failed; first: ", check->first_error()));
    }
    return absl::OkStatus();
  }
};

// ----------------------------------------------------------------
// update_install

// CountingUpdateTransport forwards to the gateway UpdateClient and counts
// what the phase reports: image bytes received, failed RPCs by code, and
// the result reports the shards acknowledged for the deployment's image.
class CountingUpdateTransport final : public client::UpdateTransport {
 public:
  CountingUpdateTransport(client::UpdateTransport* inner, PhaseStats* stats,
                          std::string image_id)
      : inner_(inner), stats_(stats), image_id_(std::move(image_id)) {}

  void GetUpdates(v1::GetUpdatesRequest request,
                  UpdatesCallback done) override {
    inner_->GetUpdates(std::move(request),
                       [this, done = std::move(done)](
                           absl::StatusOr<v1::GetUpdatesResponse> r) {
                         if (!r.ok()) stats_->RecordError(r.status().code());
                         done(std::move(r));
                       });
  }
  void DownloadImage(v1::DownloadImageRequest request, uint64_t max_bytes,
                     DownloadCallback done) override {
    inner_->DownloadImage(
        std::move(request), max_bytes,
        [this, done = std::move(done)](client::DownloadResult r) {
          uint64_t bytes = 0;
          for (const auto& c : r.chunks) bytes += c.data().size();
          bytes_.fetch_add(bytes, std::memory_order_relaxed);
          if (!r.status.ok()) stats_->RecordError(r.status.code());
          done(std::move(r));
        });
  }
  void ReportUpdateResult(v1::ReportUpdateResultRequest request,
                          ReportCallback done) override {
    const bool ours = request.image_id() == image_id_;
    const auto result = request.result();
    inner_->ReportUpdateResult(std::move(request), [this, ours, result,
                                                    done = std::move(done)](
                                                       absl::Status s) {
      if (!s.ok()) {
        stats_->RecordError(s.code());
      } else if (ours && result == v1::ReportUpdateResultRequest::INSTALLED) {
        installed_acked_.fetch_add(1, std::memory_order_relaxed);
      } else if (ours) {
        other_acked_.fetch_add(1, std::memory_order_relaxed);
      }
      done(s);
    });
  }

  uint64_t bytes() const { return bytes_.load(); }
  uint64_t installed_acked() const { return installed_acked_.load(); }
  uint64_t other_acked() const { return other_acked_.load(); }

 private:
  client::UpdateTransport* const inner_;
  PhaseStats* const stats_;
  const std::string image_id_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> installed_acked_{0};
  std::atomic<uint64_t> other_acked_{0};
};

// Unary: one blocking management call with a deadline; the error names
// the call.
template <typename Resp, typename Call>
absl::StatusOr<Resp> Unary(const char* what, Call call) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  Resp resp;
  grpc::Status st = call(&ctx, &resp);
  if (!st.ok()) {
    return absl::Status(rpc::FromGrpcStatus(st).code(),
                        absl::StrCat(what, ": ", st.error_message()));
  }
  return resp;
}

// The app the loadgen deployment installs (a vendor app, signed for the
// fleet's tenant; management verifies and re-signs it).
v1::AppManifest LoadgenAppManifest() {
  v1::AppManifest m;
  m.set_component_id("loadgen-app");
  m.set_name("loadgen update_install app");
  m.set_memory_kib(64);
  return m;
}

class UpdateInstallPhase final : public Phase {
 public:
  const char* name() const override { return "update_install"; }
  std::string Unavailable(Fleet& fleet) override {
    if (fleet.options().update_fraction <= 0) {
      return "--update-fraction is 0: no twin selected to install";
    }
    if (fleet.product_id.empty()) {
      return "no fleet product (the claim phase did not create one)";
    }
    return UpdateServiceUnavailable(fleet,
                                    "/sphere.v1.UpdateService/DownloadImage");
  }

  absl::Status Run(Fleet& fleet, PhaseStats& stats) override {
    const FleetOptions& o = fleet.options();
    const absl::Time phase_start = absl::Now();
    const absl::Time deadline = phase_start + o.phase_timeout;

    // The fraction: every certified twin at an even stride.
    std::vector<size_t> certified;
    for (size_t i = 0; i < fleet.twins().size(); ++i) {
      if (fleet.twins()[i]->certified()) certified.push_back(i);
    }
    if (certified.empty()) {
      return absl::FailedPreconditionError("update_install: no certified twin");
    }
    const size_t k = std::clamp<size_t>(
        static_cast<size_t>(
            // (less a hair: 0.02 * 300 must select 6, not 7)
            std::ceil(o.update_fraction *
                          static_cast<double>(certified.size()) -
                      1e-9)),
        1, certified.size());
    std::vector<size_t> chosen;
    chosen.reserve(k);
    for (size_t j = 0; j < k; ++j) {
      chosen.push_back(certified[j * certified.size() / k]);
    }

    // The platform side, as an operator would (not timed): upload the
    // image, a group for the fraction, the deployment.
    auto deployment = Deploy(fleet, chosen);
    if (!deployment.ok()) return deployment.status();
    const std::string deployment_id = deployment->deployment_id;
    const std::string image_id = deployment->image_id;
    stats.SetMetric("twins_selected", static_cast<double>(k));

    const auto by_id = TwinsById(fleet, chosen);
    auto gateway = GatewayUpdateClient(fleet, &by_id);
    CountingUpdateTransport updates(gateway.get(), &stats, image_id);
    client::AsyncAttestationClient::Options ao;
    ao.max_in_flight = o.max_in_flight;
    // Gateway batches (GetChallenges / AttestBatch) for the fraction's
    // re-attestations, as the attest phase sends them: the setup's one
    // driver fills them; the installs' drivers flush after each request.
    ao.max_batch = o.attest_batch;
    ao.deadline = absl::Seconds(20);
    client::AsyncAttestationClient attestation(fleet.cluster().shards,
                                               fleet.gateway_tls(), ao);

    // Before the first GetUpdates every shard must serve the new group and
    // deployment. The twins keep the session tokens of their attestation (a
    // group assignment changes nothing the device attested): one catalog
    // barrier per shard. --install-reattest re-attests the fraction instead
    // (the challenge carries the deployment's revision; the behaviour
    // before stop 23). The install itself re-attests each twin after its
    // reboot (the new image set must be attested).
    const absl::Time gate_start = absl::Now();
    if (o.install_reattest) {
      if (auto s = Reattest(fleet, chosen, &attestation, deadline); !s.ok()) {
        return s;
      }
      stats.SetMetric("setup_reattested", static_cast<double>(k));
    } else {
      if (auto s = CatalogBarrier(fleet, *fleet.twins()[chosen[0]],
                                  deployment->revision, deadline);
          !s.ok()) {
        return s;
      }
      stats.SetMetric("setup_reattested", 0);
    }
    const absl::Time setup_end = absl::Now();
    stats.SetMetric("setup_gate_s",
                    absl::ToDoubleSeconds(setup_end - gate_start));
    stats.SetMetric("setup_s", absl::ToDoubleSeconds(setup_end - phase_start));

    // Installs: each twin's agent driven to the end on one of a few
    // worker threads (RunUpdateCheck blocks on each answer; the twin is
    // touched by that thread only).
    twin::UpdateAgentConfig agent_config;
    // Every install frees 64 KiB+ buffers (the download, the package parse,
    // gRPC's message buffers) on up to 256 worker threads; with aggressive
    // decommit each free was an madvise and a TLB shootdown on every core
    // (31 % of loadgen's CPU here in stop 23). It is off by default
    // (third_party/system_libs/malloc_settings.cc); --install-decommit turns
    // it on for the installs, the behaviour of stop 22.
    DecommitScope decommit(o.install_decommit);
    if (auto on = AggressiveDecommit(); on.has_value()) {
      stats.SetMetric("allocator_decommit_off", *on ? 0 : 1);
    }
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> installed{0};
    absl::Mutex err_mu;
    std::string first_error;
    const auto cpu_before = CpuSeconds(fleet);
    const absl::Time start = absl::Now();
    stats.Start(start, k);
    auto worker = [&] {
      while (!StopRequested()) {
        const size_t j = next.fetch_add(1);
        if (j >= k) return;
        twin::Twin& t = *fleet.twins()[chosen[j]];
        twin::UpdateAgent agent(&t, &agent_config, 0);
        const absl::Time t0 = absl::Now();
        absl::Status st =
            twin::RunUpdateCheck(t, agent, updates, attestation, Clock::Real(),
                                 std::min(deadline, t0 + absl::Minutes(5)));
        bool ok = false;
        for (const auto& r : agent.last_results()) {
          if (r.image_id() == image_id &&
              r.result() == v1::ReportUpdateResultRequest::INSTALLED) {
            ok = true;
          }
        }
        if (st.ok() && ok) {
          const absl::Time now = absl::Now();
          stats.RecordOk(now, now - t0);
          installed.fetch_add(1);
          continue;
        }
        if (st.ok()) {
          st = absl::FailedPreconditionError(
              absl::StrCat("the agent finished without installing ", image_id,
                           " (results: ", agent.last_results().size(), ")"));
        }
        stats.RecordError(st.code());
        absl::MutexLock l(&err_mu);
        if (first_error.empty()) {
          first_error = absl::StrCat(t.device().device_id().substr(0, 16), ": ",
                                     st.ToString());
        }
      }
    };
    // Each install is a chain of round trips (GetUpdates, download,
    // re-attestation, report) waited for in turn: throughput is workers /
    // latency until the CPU is full (issue 14: 32 workers left the CPU
    // idle at ~100 ms per install), so one worker per RPC of the window.
    const size_t workers = std::min<size_t>(
        k, static_cast<size_t>(std::clamp(o.max_in_flight, 1, 256)));
    std::vector<std::thread> threads;
    for (size_t w = 0; w < workers; ++w) threads.emplace_back(worker);
    for (auto& th : threads) th.join();
    const absl::Time end = absl::Now();
    stats.Finish(end);
    ReportCpu(cpu_before, CpuSeconds(fleet), stats);

    const double secs = std::max(1e-9, absl::ToDoubleSeconds(end - start));
    stats.SetMetric("bytes", static_cast<double>(updates.bytes()));
    stats.SetMetric("mb_per_s",
                    static_cast<double>(updates.bytes()) / 1e6 / secs);
    stats.SetMetric("installed", static_cast<double>(installed.load()));
    if (installed.load() < k) {
      if (StopRequested()) return Interrupted(installed.load(), k);
      return absl::DataLossError(
          absl::StrCat("update_install: ", k - installed.load(), " of ", k,
                       " twins did not install; first: ", first_error));
    }
    return CheckServiceCounts(fleet, stats, deployment_id,
                              updates.installed_acked(), updates.other_acked());
  }

 private:
  struct Deployed {
    std::string deployment_id;
    std::string image_id;
    int64_t revision = 0;  // the catalog revision that includes them
  };
  // Deploy uploads the app image, creates the "updates" group with the
  // chosen devices and the deployment.
  static absl::StatusOr<Deployed> Deploy(
      Fleet& fleet, const std::vector<size_t>& chosen) {
    const FleetOptions& o = fleet.options();
    auto* mgmt = fleet.management();
    auto package = mcu::BuildAppImage(
        crypto::EcPrivateKey::Generate(), LoadgenAppManifest(), 1,
        static_cast<size_t>(o.update_image_kib) * 1024, fleet.tenant_id);
    if (!package.ok()) return package.status();
    v1::UploadImageRequest up;
    up.set_tenant_id(fleet.tenant_id);
    up.set_package(package->SerializeAsString());
    auto image = Unary<v1::Image>("UploadImage", [&](auto* ctx, auto* r) {
      return mgmt->UploadImage(ctx, up, r);
    });
    if (!image.ok()) return image.status();

    v1::CreateDeviceGroupRequest greq;
    greq.set_tenant_id(fleet.tenant_id);
    greq.set_product(fleet.product_id);
    greq.set_name("updates");
    greq.set_description("loadgen update_install fraction");
    auto group =
        Unary<v1::DeviceGroup>("CreateDeviceGroup", [&](auto* ctx, auto* r) {
          return mgmt->CreateDeviceGroup(ctx, greq, r);
        });
    if (!group.ok()) return group.status();
    if (auto s = AssignAll(fleet, chosen, group->id()); !s.ok()) return s;
    v1::CreateDeploymentRequest dreq;
    dreq.set_tenant_id(fleet.tenant_id);
    dreq.set_device_group_id(group->id());
    dreq.add_image_ids(image->id());
    auto dep =
        Unary<v1::Deployment>("CreateDeployment", [&](auto* ctx, auto* r) {
          return mgmt->CreateDeployment(ctx, dreq, r);
        });
    if (!dep.ok()) return dep.status();
    auto rev = Unary<v1::CatalogRevision>("GetCatalogRevision", [&](auto* ctx,
                                                                    auto* r) {
      return mgmt->GetCatalogRevision(ctx, v1::GetCatalogRevisionRequest(), r);
    });
    if (!rev.ok()) return rev.status();
    fleet.set_min_catalog_revision(rev->revision());
    return Deployed{dep->id(), image->id(), rev->revision()};
  }

  // AssignAll moves the chosen twins into the group: AssignDevice calls
  // from kAssignThreads threads (each call is one catalog transaction; one
  // caller at a time left management idle between them: 10,000 calls took
  // most of the 53 s setup at a million twins).
  static absl::Status AssignAll(Fleet& fleet, const std::vector<size_t>& chosen,
                                const std::string& group_id) {
    constexpr size_t kAssignThreads = 16;
    auto* mgmt = fleet.management();
    std::atomic<size_t> next{0};
    absl::Mutex mu;
    absl::Status first;
    auto worker = [&] {
      while (true) {
        {
          absl::MutexLock l(&mu);
          if (!first.ok()) return;
        }
        if (StopRequested()) return;
        const size_t j = next.fetch_add(1);
        if (j >= chosen.size()) return;
        v1::AssignDeviceRequest a;
        a.set_tenant_id(fleet.tenant_id);
        a.set_device_id(fleet.twins()[chosen[j]]->device().device_id());
        a.set_device_group_id(group_id);
        auto assigned = Unary<v1::Device>(
            "AssignDevice",
            [&](auto* ctx, auto* r) { return mgmt->AssignDevice(ctx, a, r); });
        if (!assigned.ok()) {
          absl::MutexLock l(&mu);
          if (first.ok()) first = assigned.status();
          return;
        }
      }
    };
    std::vector<std::thread> threads;
    for (size_t w = 0; w < std::min(kAssignThreads, chosen.size()); ++w) {
      threads.emplace_back(worker);
    }
    for (auto& th : threads) th.join();
    if (!first.ok()) return first;
    if (StopRequested() && next.load() < chosen.size()) {
      return Interrupted(0, chosen.size());
    }
    return absl::OkStatus();
  }

  // CatalogBarrier returns once every shard's catalog has reached
  // `revision` (the deployment and the fraction's assignments), so each
  // shard answers the twins' GetUpdates from them. It asks each shard for
  // one challenge (`probe`, through the gateway) with min_catalog_revision:
  // the attestation service's read-your-writes, held on the shard without a
  // thread for up to 5 s; an item answered OK, or redirected to its owner,
  // was answered at that revision. UNAVAILABLE (not reached yet) is asked
  // again after a short bounded wait.
  static absl::Status CatalogBarrier(Fleet& fleet, const twin::Twin& probe,
                                     int64_t revision, absl::Time deadline) {
    if (revision <= 0) return absl::OkStatus();
    for (const auto& shard : fleet.cluster().shards) {
      auto stub = v1::AttestationService::NewStub(rpc::NewChannel(
          shard.address, fleet.gateway_tls(), shard.server_name));
      v1::GetChallengesRequest req;
      req.add_device_ids(probe.device().device_id());
      req.set_min_catalog_revision(revision);
      absl::Status last;
      while (true) {
        if (StopRequested()) return Interrupted(0, 1);
        if (absl::Now() >= deadline) {
          return absl::DeadlineExceededError(absl::StrCat(
              "update_install: shard at ", shard.address,
              " did not reach catalog revision ", revision, ": ",
              last.message()));
        }
        auto r = Unary<v1::GetChallengesResponse>(
            "GetChallenges (catalog barrier)", [&](auto* ctx, auto* resp) {
              return stub->GetChallenges(ctx, req, resp);
            });
        if (r.ok() && r->results_size() != 1) {
          return absl::InternalError(absl::StrCat(
              "catalog barrier: ", r->results_size(), " results for 1 item"));
        }
        if (r.ok()) {
          const auto code =
              static_cast<absl::StatusCode>(r->results(0).code());
          if (code == absl::StatusCode::kOk ||
              (code == absl::StatusCode::kFailedPrecondition &&
               !r->results(0).redirect_address().empty())) {
            break;  // answered at the revision
          }
          last = absl::Status(code, r->results(0).message());
        } else {
          last = r.status();
        }
        if (!absl::IsUnavailable(last) && !absl::IsDeadlineExceeded(last)) {
          return absl::Status(
              last.code(),
              absl::StrCat("update_install: catalog barrier at ",
                           shard.address, ": ", last.message()));
        }
        absl::Notification never;  // a bounded wait before asking again
        never.WaitForNotificationWithTimeout(absl::Milliseconds(100));
      }
    }
    return absl::OkStatus();
  }

  static absl::Status Reattest(Fleet& fleet, const std::vector<size_t>& chosen,
                               client::AttestationTransport* attestation,
                               absl::Time deadline) {
    twin::TwinDriver driver(attestation, Clock::Real(),
                            {.max_active = fleet.options().max_active});
    const absl::Time now = absl::Now();
    for (size_t i : chosen) {
      fleet.twins()[i]->RequestAttestation(now);
      driver.Add(fleet.twins()[i].get());
    }
    driver.RunUntil(
        [&] {
          return driver.certified() + driver.refused() == chosen.size() ||
                 StopRequested();
        },
        deadline);
    if (driver.certified() == chosen.size()) return absl::OkStatus();
    if (StopRequested()) return Interrupted(driver.certified(), chosen.size());
    for (size_t i : chosen) {
      const twin::Twin& t = *fleet.twins()[i];
      if (t.phase() != twin::Twin::Phase::kCertified) {
        return absl::Status(
            t.last_error().ok() ? absl::StatusCode::kDeadlineExceeded
                                : t.last_error().code(),
            absl::StrCat("update_install: re-attestation before the update: ",
                         chosen.size() - driver.certified(), " of ",
                         chosen.size(), " twins not certified; first ",
                         t.device().device_id().substr(0, 16), ": ",
                         t.last_error().message()));
      }
    }
    return absl::OkStatus();
  }

  // CheckServiceCounts: the shards' per-deployment counts (operator
  // credential, every shard) must show exactly the INSTALLED reports they
  // acknowledged, and every other acknowledged result.
  static absl::Status CheckServiceCounts(Fleet& fleet, PhaseStats& stats,
                                         const std::string& deployment_id,
                                         uint64_t installed_acked,
                                         uint64_t other_acked) {
    uint64_t installed = 0, others = 0;
    for (const auto& shard : fleet.cluster().shards) {
      auto stub = v1::UpdateAdminService::NewStub(rpc::NewChannel(
          shard.address, fleet.operator_tls(), shard.server_name));
      v1::GetDeploymentCountsRequest req;
      req.set_deployment_id(deployment_id);
      auto counts = Unary<v1::DeploymentCounts>(
          "GetDeploymentCounts", [&](auto* ctx, auto* r) {
            return stub->GetDeploymentCounts(ctx, req, r);
          });
      if (!counts.ok()) {
        return absl::Status(
            counts.status().code(),
            absl::StrCat("update_install verification at ", shard.address, ": ",
                         counts.status().message()));
      }
      for (const auto& s : counts->stages()) {
        installed += s.installed();
        others += s.failed() + s.rolled_back() + s.deferred();
      }
    }
    stats.SetMetric("installed_on_service", static_cast<double>(installed));
    if (installed != installed_acked || others != other_acked) {
      return absl::DataLossError(absl::StrCat(
          "update_install verification: the shards count ", installed,
          " installed and ", others, " other results for deployment ",
          deployment_id, "; the twins' acknowledged reports were ",
          installed_acked, " installed and ", other_acked, " other"));
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Phase> NewUpdateCheckPhase() {
  return std::make_unique<UpdateCheckPhase>();
}
std::unique_ptr<Phase> NewUpdateInstallPhase() {
  return std::make_unique<UpdateInstallPhase>();
}

}  // namespace sphere::loadgen
