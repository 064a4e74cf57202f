#include "loadgen/phases.h"

#include <grpcpp/generic/generic_stub.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/attestation_client.h"
#include "client/shard_ring.h"
#include "common/update/metadata.h"
#include "common/util/clock.h"
#include "loadgen/fault_check.h"
#include "loadgen/floors.h"
#include "loadgen/phase_cpu.h"
#include "loadgen/telemetry_phase.h"
#include "loadgen/transport.h"
#include "loadgen/update_phases.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image_signature_cache.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/error_reporting.grpc.pb.h"
#include "protos/update.grpc.pb.h"
#include "twin/driver.h"

namespace sphere::loadgen {

absl::StatusCode ProbeMethod(const std::string& address,
                             const std::string& server_name,
                             const rpc::TlsFiles& tls,
                             const std::string& method) {
  grpc::Status status = CallEmpty(rpc::NewChannel(address, tls, server_name),
                                  method, absl::Seconds(5));
  return static_cast<absl::StatusCode>(status.error_code());
}

namespace {

absl::Status Interrupted(uint64_t done, uint64_t total) {
  return absl::CancelledError(
      absl::StrCat("interrupted after ", done, " of ", total));
}

// ---------------------------------------------------------------- manufacture

class ManufacturePhase final : public Phase {
 public:
  const char* name() const override { return "manufacture"; }
  absl::Status Run(Fleet& fleet, PhaseStats& stats) override {
    const uint64_t n = fleet.options().twins;
    const int every = fleet.options().verify_chain_every;
    auto& twins = fleet.twins();
    twins.clear();
    stats.Start(absl::Now(), n);
    const mcu::ImageSignatureCacheStats cache0 =
        mcu::GetImageSignatureCacheStats();
    // Key generation is CPU-bound and the cluster is idle meanwhile, so one
    // thread per core (--cores) builds a contiguous range of the fleet; each
    // twin lands in its own slot, so twin i is the same twin whatever the
    // thread count (verify_chain_every picks by index). The RSS charged per
    // twin is read after malloc_trim, so the second thread's allocator arena
    // keeps no garbage on the bill.
    const uint64_t threads = std::clamp<uint64_t>(
        static_cast<uint64_t>(std::max(fleet.options().cores, 1)), 1,
        std::max<uint64_t>(n, 1));
    twins.resize(n);  // slot i: twin i
    absl::Mutex failed_mu;
    absl::Status failed;  // the first error, guarded by failed_mu
    std::atomic<bool> stop{false};
    auto build_range = [&](uint64_t first, uint64_t last) {
      for (uint64_t i = first; i < last; ++i) {
        if (stop.load(std::memory_order_relaxed) || StopRequested()) return;
        const absl::Time t0 = absl::Now();
        absl::Status s;
        auto dev = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                            fleet.rom_key(), {});
        if (!dev.ok()) {
          s = dev.status();
        } else {
          s = (*dev)->InstallFactoryImages(fleet.images());
        }
        if (!s.ok()) {
          stats.RecordError(s.code());
          absl::MutexLock l(&failed_mu);
          if (failed.ok()) failed = s;
          stop.store(true, std::memory_order_relaxed);
          return;
        }
        const bool verify = every > 0 && i % every == 0;
        twins[i] = std::make_unique<twin::Twin>(
            std::move(*dev),
            verify ? fleet.verifying_config() : fleet.config());
        const absl::Time t1 = absl::Now();
        stats.RecordOk(t1, t1 - t0);
      }
    };
    std::vector<std::thread> workers;
    for (uint64_t t = 1; t < threads; ++t) {
      workers.emplace_back(build_range, n * t / threads,
                           n * (t + 1) / threads);
    }
    build_range(0, n / threads);
    for (auto& w : workers) w.join();
    // The fleet is every twin built, in index order (all of them unless an
    // error or a stop request cut a range short).
    twins.erase(std::remove(twins.begin(), twins.end(), nullptr),
                twins.end());
    {
      absl::MutexLock l(&failed_mu);
      if (!failed.ok()) return failed;
    }
    if (twins.size() < n) return Interrupted(twins.size(), n);
    stats.Finish(absl::Now());
    // Image signature checks (factory install + first boot): how many were
    // ECDSA verifications and how many the verified-signature cache answered.
    const mcu::ImageSignatureCacheStats cache1 =
        mcu::GetImageSignatureCacheStats();
    stats.SetMetric("image_signature_verifications",
                    static_cast<double>(cache1.misses - cache0.misses));
    stats.SetMetric("image_signature_cache_hits",
                    static_cast<double>(cache1.hits - cache0.hits));
    return absl::OkStatus();
  }
};

// ---------------------------------------------------------------- register

class RegisterPhase final : public Phase {
 public:
  const char* name() const override { return "register"; }
  absl::Status Run(Fleet& fleet, PhaseStats& stats) override {
    constexpr size_t kBatch = 1000;  // management's import batch
    auto& twins = fleet.twins();
    stats.Start(absl::Now(), twins.size());
    for (size_t start = 0; start < twins.size(); start += kBatch) {
      if (StopRequested()) return Interrupted(start, twins.size());
      const size_t end = std::min(twins.size(), start + kBatch);
      v1::ImportDevicesRequest req;
      for (size_t i = start; i < end; ++i) {
        auto* d = req.add_devices();
        d->set_public_key(twins[i]->device().public_key());
        d->set_device_type("mt3620");
      }
      const absl::Time t0 = absl::Now();
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
      v1::ImportDevicesResponse resp;
      auto writer = fleet.management()->ImportDevices(&ctx, &resp);
      writer->Write(req);
      writer->WritesDone();
      grpc::Status st = writer->Finish();
      if (!st.ok()) {
        stats.RecordError(static_cast<absl::StatusCode>(st.error_code()));
        return absl::Status(
            rpc::FromGrpcStatus(st).code(),
            absl::StrCat("ImportDevices: ", st.error_message()));
      }
      const absl::Time t1 = absl::Now();
      for (size_t i = start; i < end; ++i) stats.RecordOk(t1, t1 - t0);
    }
    stats.Finish(absl::Now());
    return absl::OkStatus();
  }
};

// ---------------------------------------------------------------- claim

// ClaimWindow claims the fleet in order, `k` devices per step and up to
// `window` steps in flight (callback API); each answer starts the next step.
// A step of k > 1 is one ClaimDevices call straight into the fleet's device
// group (all-or-nothing: every device of the batch shares its outcome and
// latency); a step of k = 1 is the per-device path, ClaimDevice then
// AssignDevice into the group (update_check needs it). Shared with the
// callbacks.
class ClaimWindow : public std::enable_shared_from_this<ClaimWindow> {
 public:
  ClaimWindow(Fleet* fleet, PhaseStats* stats, size_t k, int window)
      : fleet_(fleet),
        stats_(stats),
        k_(std::max<size_t>(k, 1)),
        window_(std::max(window, 1)) {}

  // Run returns once every step answered, or (after a stop request) once
  // the steps in flight answered; returns how many devices were started.
  size_t Run() {
    StartMore();
    absl::MutexLock l(&mu_);
    while (!mu_.AwaitWithTimeout(
        absl::Condition(this, &ClaimWindow::DoneLocked), absl::Seconds(1))) {
    }
    return next_;
  }

 private:
  struct Step {
    size_t first = 0;  // fleet index of the step's first device
    size_t count = 0;  // devices in the step
    absl::Time start;
    grpc::ClientContext ctx;
    v1::ClaimDevicesRequest batch;  // k > 1
    v1::ClaimDevicesResponse batch_resp;
    v1::ClaimDeviceRequest one;  // k = 1
    v1::Device one_resp;
    grpc::ClientContext assign_ctx;  // k = 1: then AssignDevice
    v1::AssignDeviceRequest assign;
    v1::Device assign_resp;
  };

  void Done(const std::shared_ptr<Step>& step, const grpc::Status& st) {
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < step->count; ++i) {
      if (st.ok()) {
        stats_->RecordOk(now, now - step->start);
      } else {
        stats_->RecordError(static_cast<absl::StatusCode>(st.error_code()));
      }
    }
    StartMore();
    absl::MutexLock l(&mu_);
    --in_flight_;
  }

  bool DoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0 &&
           (next_ >= fleet_->twins().size() || StopRequested());
  }

  void StartMore() {
    while (true) {
      auto step = std::make_shared<Step>();
      {
        absl::MutexLock l(&mu_);
        if (in_flight_ >= window_ || next_ >= fleet_->twins().size() ||
            StopRequested()) {
          return;
        }
        ++in_flight_;
        step->first = next_;
        step->count = std::min(k_, fleet_->twins().size() - next_);
        next_ += step->count;
      }
      step->start = absl::Now();
      Send(step);
    }
  }

  std::string DeviceId(size_t i) const {
    return fleet_->twins()[i]->device().device_id();
  }

  void Send(const std::shared_ptr<Step>& step) {
    auto self = shared_from_this();
    step->ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    if (k_ > 1) {
      step->batch.set_tenant_id(fleet_->tenant_id);
      step->batch.set_device_group_id(fleet_->device_group_id);
      for (size_t i = 0; i < step->count; ++i) {
        step->batch.add_device_ids(DeviceId(step->first + i));
      }
      fleet_->management()->async()->ClaimDevices(
          &step->ctx, &step->batch, &step->batch_resp,
          [self, step](grpc::Status st) { self->Done(step, st); });
      return;
    }
    step->one.set_tenant_id(fleet_->tenant_id);
    step->one.set_device_id(DeviceId(step->first));
    fleet_->management()->async()->ClaimDevice(
        &step->ctx, &step->one, &step->one_resp, [self, step](grpc::Status st) {
          if (!st.ok() || self->fleet_->device_group_id.empty()) {
            self->Done(step, st);
            return;
          }
          step->assign.set_tenant_id(self->fleet_->tenant_id);
          step->assign.set_device_id(step->one.device_id());
          step->assign.set_device_group_id(self->fleet_->device_group_id);
          step->assign_ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
          self->fleet_->management()->async()->AssignDevice(
              &step->assign_ctx, &step->assign, &step->assign_resp,
              [self, step](grpc::Status st2) { self->Done(step, st2); });
        });
  }

  Fleet* const fleet_;
  PhaseStats* const stats_;
  const size_t k_;
  const int window_;
  mutable absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

class ClaimPhase final : public Phase {
 public:
  const char* name() const override { return "claim"; }
  absl::Status Run(Fleet& fleet, PhaseStats& stats) override {
    // The claiming tenant (created once per run; not timed).
    const std::string tenant =
        fleet.options().tenant.empty()
            ? absl::StrCat("loadgen-", absl::ToUnixSeconds(absl::Now()))
            : fleet.options().tenant;
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
      v1::CreateTenantRequest req;
      req.set_name(tenant);
      v1::Tenant resp;
      grpc::Status st = fleet.management()->CreateTenant(&ctx, req, &resp);
      if (!st.ok()) {
        return absl::Status(
            rpc::FromGrpcStatus(st).code(),
            absl::StrCat("CreateTenant ", tenant, ": ", st.error_message()));
      }
      fleet.tenant_id = resp.id();
    }
    // A product and device group for the fleet (not timed): each claimed
    // device is assigned to it, so the update service has a group to
    // answer for (update_check).
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
      v1::CreateProductRequest req;
      req.set_tenant_id(fleet.tenant_id);
      req.set_name("loadgen");
      v1::Product product;
      grpc::Status st = fleet.management()->CreateProduct(&ctx, req, &product);
      if (!st.ok()) {
        return absl::Status(
            rpc::FromGrpcStatus(st).code(),
            absl::StrCat("CreateProduct: ", st.error_message()));
      }
      grpc::ClientContext gctx;
      gctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
      v1::CreateDeviceGroupRequest greq;
      greq.set_tenant_id(fleet.tenant_id);
      greq.set_product(product.id());
      greq.set_name("fleet");
      v1::DeviceGroup group;
      st = fleet.management()->CreateDeviceGroup(&gctx, greq, &group);
      if (!st.ok()) {
        return absl::Status(
            rpc::FromGrpcStatus(st).code(),
            absl::StrCat("CreateDeviceGroup: ", st.error_message()));
      }
      fleet.device_group_id = group.id();
      fleet.product_id = product.id();
    }
    stats.Start(absl::Now(), fleet.twins().size());
    // Bulk claims: the catalog commits one batch at a time, so a few in
    // flight keep it busy; per-device claims: --claim-window in flight.
    constexpr int kBatchesInFlight = 3;
    const size_t k =
        static_cast<size_t>(std::max(fleet.options().claim_batch, 1));
    const int window = k > 1 ? kBatchesInFlight : fleet.options().claim_window;
    const size_t started =
        std::make_shared<ClaimWindow>(&fleet, &stats, k, window)->Run();
    stats.Finish(absl::Now());
    if (started < fleet.twins().size()) {
      return Interrupted(started, fleet.twins().size());
    }
    // Shards answer the twins from a catalog that includes every claim.
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::CatalogRevision rev;
    grpc::Status st = fleet.management()->GetCatalogRevision(
        &ctx, v1::GetCatalogRevisionRequest(), &rev);
    if (!st.ok()) return rpc::FromGrpcStatus(st);
    fleet.set_min_catalog_revision(rev.revision());
    return absl::OkStatus();
  }
};

// ---------------------------------------------------------------- attest

class AttestPhase final : public Phase {
 public:
  const char* name() const override { return "attest"; }
  absl::Status Run(Fleet& fleet, PhaseStats& stats) override {
    const FleetOptions& o = fleet.options();
    std::unique_ptr<client::AttestationTransport> inner;
    if (o.tls_per_twin) {
      inner = std::make_unique<PerTwinTlsTransport>(
          fleet.cluster().shards, fleet.gateway_tls(), absl::Seconds(20));
    } else {
      client::AsyncAttestationClient::Options co;
      co.max_in_flight = o.max_in_flight;
      co.deadline = absl::Seconds(20);
      co.max_batch = o.attest_batch;  // gateway batch RPCs
      inner = std::make_unique<client::AsyncAttestationClient>(
          fleet.cluster().shards, fleet.gateway_tls(), co);
    }
    TimingTransport timing(inner.get(), &stats);
    auto& twins = fleet.twins();
    const size_t n = twins.size();
    client::ShardRing ring(
        client::ShardMapFromEndpoints(fleet.cluster().shards));

    // Fault: SIGKILL one shard once fault_at of the fleet is certified;
    // local_cluster restarts it on the same port.
    const bool fault = o.fault == "restart-shard";
    const std::string fault_shard = fleet.cluster().shards[0].id;
    absl::Time killed_at = absl::InfinitePast();
    absl::Time recovered_at = absl::InfinitePast();
    absl::Time phase_start = absl::Now();

    auto on_certified = [&](uint32_t, twin::Twin& t,
                            const v1::AttestResponse&) {
      const absl::Time now = absl::Now();
      const absl::Time start = timing.TakeStart(t.device().device_id());
      stats.RecordOk(now, start == absl::InfinitePast() ? absl::ZeroDuration()
                                                        : now - start);
      if (killed_at != absl::InfinitePast() &&
          recovered_at == absl::InfinitePast() &&
          ring.Owner(t.device().device_id()).id() == fault_shard) {
        recovered_at = now;
      }
    };
    std::string fault_error;
    auto maybe_fault = [&](const twin::TwinDriver& d) {
      if (!fault || killed_at != absl::InfinitePast()) return;
      if (d.certified() < static_cast<size_t>(o.fault_at * n)) return;
      auto pid = fleet.ShardPid(fault_shard);
      if (!pid.ok() || kill(*pid, SIGKILL) != 0) {
        fault_error = pid.ok() ? "kill failed" : pid.status().ToString();
        killed_at = absl::Now();  // once
        return;
      }
      killed_at = absl::Now();
    };

    // Gateway channels: a wide window fills each shard's batch RPCs. Per-twin
    // TLS opens one connection per active twin, and the fault scenario needs
    // twins still waiting to start when the shard dies (so its recovery is
    // observed): both keep the narrow --window.
    const size_t window =
        o.tls_per_twin || fault ? o.max_active : o.attest_window;
    twin::TwinDriver driver(&timing, Clock::Real(), {.max_active = window});
    driver.set_attest_observer(on_certified);
    const PhaseCpu cpu_before = PhaseCpu::Take(fleet);
    stats.Start(phase_start, n);
    const absl::Time deadline = phase_start + o.phase_timeout;
    auto settled = [&] { return driver.certified() + driver.refused() == n; };
    if (o.rate <= 0) {
      for (auto& t : twins) driver.Add(t.get());
      driver.RunUntil(
          [&] {
            maybe_fault(driver);
            return settled() || StopRequested();
          },
          deadline);
    } else {
      // Open loop: twin i is due at start + i / rate, whatever the answers.
      const absl::Duration gap = absl::Seconds(1) / o.rate;
      size_t added = 0;
      while (absl::Now() < deadline && !StopRequested()) {
        const absl::Time now = absl::Now();
        const size_t due = std::min<size_t>(
            n, static_cast<size_t>((now - phase_start) / gap) + 1);
        for (; added < due; ++added) {
          timing.MarkStart(twins[added]->device().device_id(),
                           phase_start + gap * static_cast<double>(added));
          driver.Add(twins[added].get());
        }
        if (added == n && settled()) break;
        const absl::Time next =
            added < n ? phase_start + gap * static_cast<double>(added)
                      : deadline;
        driver.RunUntil(
            [&] {
              maybe_fault(driver);
              return (added == n && settled()) || StopRequested();
            },
            std::max(next, absl::Now() + absl::Milliseconds(1)));
      }
    }

    // A twin whose nonce a restarted shard forgot was refused
    // (UNAUTHENTICATED: unknown nonce). Its owner retries it once, with a
    // fresh challenge, as an operator would after an outage.
    uint64_t retried = 0;
    if (fault && killed_at != absl::InfinitePast()) {
      twin::TwinDriver again(&timing, Clock::Real(), {.max_active = window});
      again.set_attest_observer(on_certified);
      for (auto& t : twins) {
        if (t->phase() == twin::Twin::Phase::kRefused &&
            t->last_error().code() == absl::StatusCode::kUnauthenticated) {
          t->Retry(absl::Now());
          again.Add(t.get());
          ++retried;
        }
      }
      const size_t target = retried;
      again.RunUntil(
          [&] { return again.certified() + again.refused() == target; },
          deadline);
    }
    stats.Finish(absl::Now());
    // A restarted shard's CPU starts again from zero: no shard figure then.
    PhaseCpu cpu_after = PhaseCpu::Take(fleet);
    if (fault) cpu_after.shards = -1;
    cpu_after.management = -1;  // the runner's, over the whole phase
    PhaseCpu::Report(cpu_before, cpu_after, stats.ops(), stats);
    if (o.tls_per_twin) {
      fleet.tls_connections =
          static_cast<PerTwinTlsTransport*>(inner.get())->connections();
    } else {
      // How full the gateway's batch RPCs were (per-RPC costs are shared by
      // this many attestation steps).
      const auto cs =
          static_cast<client::AsyncAttestationClient*>(inner.get())->stats();
      if (cs.batches > 0) {
        stats.SetMetric("items_per_batch_rpc",
                        static_cast<double>(cs.batched_items) /
                            static_cast<double>(cs.batches));
      }
    }

    if (fault) {
      FaultReport f;
      f.kind = o.fault;
      f.shard = fault_shard;
      if (killed_at != absl::InfinitePast()) {
        f.at_s = absl::ToDoubleSeconds(killed_at - phase_start);
        if (recovered_at != absl::InfinitePast()) {
          f.recover_s = absl::ToDoubleSeconds(recovered_at - killed_at);
        }
      }
      f.retried = retried;
      VerifyAcknowledged(fleet, &f);
      fleet.fault = f;
      if (!fault_error.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("fault injection failed: ", fault_error));
      }
      if (killed_at == absl::InfinitePast()) {
        return absl::FailedPreconditionError(
            "fault never injected: too few twins were certified");
      }
    }
    size_t certified = 0;
    for (const auto& t : twins) certified += t->certified();
    if (certified < n && StopRequested()) return Interrupted(certified, n);
    if (certified < n) {
      for (const auto& t : twins) {
        if (!t->certified()) {
          return absl::Status(
              t->last_error().ok() ? absl::StatusCode::kDeadlineExceeded
                                   : t->last_error().code(),
              absl::StrCat(
                  n - certified, " of ", n,
                  " twins not certified; first: ", t->device().device_id(), " ",
                  twin::Twin::PhaseName(t->phase()), ": ",
                  t->last_error().message()));
        }
      }
    }
    return absl::OkStatus();
  }
};

// ---------------------------------------------------------------- error_report

// UploadTiming forwards UploadErrors to the gateway client and records one
// operation per answered upload (latency = the RPC, redirects included).
class UploadTiming final : public client::AttestationTransport {
 public:
  UploadTiming(client::AttestationTransport* inner, PhaseStats* stats)
      : inner_(inner), stats_(stats) {}
  void GetChallenge(v1::GetChallengeRequest r,
                    ChallengeCallback done) override {
    inner_->GetChallenge(std::move(r), std::move(done));
  }
  void Attest(v1::AttestRequest r, AttestCallback done) override {
    inner_->Attest(std::move(r), std::move(done));
  }
  // The gateway client holds uploads to batch them: TwinDriver's Flush
  // after each pass must reach it.
  void Flush() override { inner_->Flush(); }
  void UploadErrors(v1::UploadErrorsRequest r, std::string token,
                    UploadErrorsCallback done) override {
    const absl::Time t0 = absl::Now();
    inner_->UploadErrors(
        std::move(r), std::move(token),
        [this, t0,
         done = std::move(done)](absl::StatusOr<v1::UploadErrorsResponse> a) {
          if (a.ok()) {
            const absl::Time now = absl::Now();
            stats_->RecordOk(now, now - t0);
            acknowledged_.fetch_add(a->stored() + a->duplicates(),
                                    std::memory_order_relaxed);
          } else {
            stats_->RecordError(a.status().code());
          }
          done(std::move(a));
        });
  }
  uint64_t acknowledged() const {
    return acknowledged_.load(std::memory_order_relaxed);
  }

 private:
  client::AttestationTransport* const inner_;
  PhaseStats* const stats_;
  std::atomic<uint64_t> acknowledged_{0};
};

// ErrorReportPhase: every certified twin's device crashes an app
// `error_events` times (mcu-model's APP_CRASH trigger fills its error ring);
// the twin library's ErrorUploader uploads the ring through TwinDriver over
// the gateway channels (session token from the attestation), `error_batch`
// twins per UploadErrorsBatch RPC (each item with its own token). One
// operation = one twin's acknowledged upload (latency: from the twin's
// request to its item's answer, batching included). Afterwards each shard's QueryErrors
// (operator credential) must hold every acknowledged event exactly once.
class ErrorReportPhase final : public Phase {
 public:
  const char* name() const override { return "error_report"; }
  std::string Unavailable(Fleet& fleet) override {
    const absl::StatusCode code =
        ProbeMethod(fleet.cluster().shards[0].address,
                    fleet.cluster().shards[0].server_name, fleet.gateway_tls(),
                    "/sphere.v1.ErrorReportingService/UploadErrors");
    if (code == absl::StatusCode::kUnimplemented) {
      return "UploadErrors is not served (UNIMPLEMENTED): error reporting "
             "(issue 12) is not on this cluster";
    }
    if (code == absl::StatusCode::kUnavailable) {
      return "UploadErrors probe: server unavailable";
    }
    return "";
  }

  absl::Status Run(Fleet& fleet, PhaseStats& stats) override {
    const FleetOptions& o = fleet.options();
    auto& twins = fleet.twins();
    twin::ErrorUploadPolicy& policy = fleet.error_upload;
    policy.batch_delay = absl::ZeroDuration();  // the ring is full already
    policy.max_batch = 1000;                    // the service's batch limit
    policy.max_pending = std::max<size_t>(policy.max_pending, 1000);
    fleet.config()->error_upload = &policy;
    fleet.verifying_config()->error_upload = &policy;

    // Fill the rings: an app crash per event (APP_CRASH, exit code 3).
    std::vector<uint32_t> expected(twins.size(), 0);
    uint64_t total_events = 0;
    size_t uploading = 0;
    for (size_t i = 0; i < twins.size(); ++i) {
      twin::Twin& t = *twins[i];
      if (!t.certified()) continue;
      for (int k = 0; k < o.error_events; ++k) {
        (void)t.device().ReportAppExit("loadgen-crashy-app", 3, 0);
      }
      expected[i] = static_cast<uint32_t>(t.device().pending_error_events());
      total_events += expected[i];
      uploading += expected[i] > 0;
    }

    client::AsyncAttestationClient::Options co;
    co.max_in_flight = o.error_in_flight;
    co.max_batch = o.error_batch;  // UploadErrorsBatch (gateway)
    co.deadline = absl::Seconds(20);
    client::AsyncAttestationClient inner(fleet.cluster().shards,
                                         fleet.gateway_tls(), co);
    UploadTiming timing(&inner, &stats);
    const PhaseCpu cpu_before = PhaseCpu::Take(fleet);
    const absl::Time start = absl::Now();
    stats.Start(start, uploading);
    {
      twin::TwinDriver driver(&timing, Clock::Real(),
                              {.max_active = o.max_active});
      for (size_t i = 0; i < twins.size(); ++i) {
        if (expected[i] > 0) driver.Add(twins[i].get());
      }
      driver.RunUntil(
          [&] {
            return (timing.acknowledged() >= total_events &&
                    driver.outstanding() == 0) ||
                   StopRequested();
          },
          start + o.phase_timeout);
    }
    stats.Finish(absl::Now());
    // Issue 12's target is in events (acknowledged = durable), not uploads:
    // one upload carries a twin's whole ring (<= error_ring_capacity).
    const double upload_s = absl::ToDoubleSeconds(absl::Now() - start);
    PhaseCpu cpu_after = PhaseCpu::Take(fleet);
    cpu_after.management = -1;  // the runner's, over the whole phase
    PhaseCpu::Report(cpu_before, cpu_after, stats.ops(), stats);
    // Per event too (the target's unit); and how full the batch RPCs were.
    if (timing.acknowledged() > 0) {
      const double events = static_cast<double>(timing.acknowledged());
      if (cpu_before.loadgen >= 0 && cpu_after.loadgen >= 0) {
        stats.SetMetric("loadgen_cpu_us_per_event",
                        (cpu_after.loadgen - cpu_before.loadgen) / events * 1e6);
      }
      if (cpu_before.shards >= 0 && cpu_after.shards >= cpu_before.shards) {
        stats.SetMetric("shards_cpu_us_per_event",
                        (cpu_after.shards - cpu_before.shards) / events * 1e6);
      }
    }
    if (const auto cs = inner.stats(); cs.batches > 0) {
      stats.SetMetric("items_per_batch_rpc",
                      static_cast<double>(cs.batched_items) /
                          static_cast<double>(cs.batches));
    }
    stats.SetMetric("acknowledged", static_cast<double>(timing.acknowledged()));
    stats.SetMetric("events_per_s",
                    upload_s > 0 ? timing.acknowledged() / upload_s : 0);
    if (timing.acknowledged() < total_events) {
      if (StopRequested()) {
        return Interrupted(timing.acknowledged(), total_events);
      }
      return absl::DeadlineExceededError(absl::StrCat(
          "error_report: ", timing.acknowledged(), " of ", total_events,
          " events acknowledged before the deadline"));
    }
    const absl::Time verify_start = absl::Now();
    absl::Status verified = VerifyStoredOnce(fleet, expected, start);
    stats.SetMetric("verify_s",
                    absl::ToDoubleSeconds(absl::Now() - verify_start));
    return verified;
  }

 private:
  // VerifyStoredOnce pages through every shard's reports of the tenant
  // since `since` and checks each fleet device has exactly its expected
  // events, no (device, sequence) twice.
  static absl::Status VerifyStoredOnce(Fleet& fleet,
                                       const std::vector<uint32_t>& expected,
                                       absl::Time since) {
    auto& twins = fleet.twins();
    absl::flat_hash_map<std::string, size_t> index;
    index.reserve(twins.size());
    for (size_t i = 0; i < twins.size(); ++i) {
      if (expected[i] > 0) index[twins[i]->device().device_id()] = i;
    }
    std::vector<uint32_t> seen(twins.size(), 0);
    absl::flat_hash_set<std::pair<size_t, uint64_t>> pairs;
    uint64_t duplicates = 0;
    for (const auto& shard : fleet.cluster().shards) {
      auto stub = v1::ErrorReportingService::NewStub(rpc::NewChannel(
          shard.address, fleet.operator_tls(), shard.server_name));
      std::string token;
      do {
        v1::QueryErrorsRequest q;
        q.set_tenant_id(fleet.tenant_id);
        q.set_from_unix_ms(absl::ToUnixMillis(since - absl::Minutes(10)));
        q.set_page_size(1000);
        q.set_page_token(token);
        grpc::ClientContext ctx;
        ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
        v1::QueryErrorsResponse r;
        grpc::Status st = stub->QueryErrors(&ctx, q, &r);
        if (!st.ok()) {
          return absl::Status(
              rpc::FromGrpcStatus(st).code(),
              absl::StrCat("error_report verification: QueryErrors at ",
                           shard.address, ": ", st.error_message()));
        }
        for (const auto& rep : r.reports()) {
          auto it = index.find(rep.device_id());
          if (it == index.end()) continue;  // not this run's upload
          ++seen[it->second];
          if (!pairs.insert({it->second, rep.event().sequence()}).second) {
            ++duplicates;
          }
        }
        token = r.next_page_token();
      } while (!token.empty());
    }
    uint64_t missing = 0;
    uint64_t extra = 0;
    for (size_t i = 0; i < twins.size(); ++i) {
      if (seen[i] < expected[i]) missing += expected[i] - seen[i];
      if (seen[i] > expected[i]) extra += seen[i] - expected[i];
    }
    if (missing > 0 || extra > 0 || duplicates > 0) {
      return absl::DataLossError(absl::StrCat(
          "error_report verification: ", missing,
          " acknowledged events missing, ", extra, " extra, ", duplicates,
          " stored twice (QueryErrors, operator credential)"));
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::vector<std::unique_ptr<Phase>> DefaultPhases() {
  std::vector<std::unique_ptr<Phase>> p;
  p.push_back(std::make_unique<ManufacturePhase>());
  p.push_back(std::make_unique<RegisterPhase>());
  p.push_back(std::make_unique<ClaimPhase>());
  p.push_back(std::make_unique<AttestPhase>());
  p.push_back(NewUpdateCheckPhase());
  p.push_back(NewUpdateInstallPhase());
  p.push_back(NewTelemetryPhase());
  p.push_back(std::make_unique<ErrorReportPhase>());
  return p;
}

}  // namespace sphere::loadgen
