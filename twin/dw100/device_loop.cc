#include "twin/dw100/device_loop.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/update_client.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "mcu-model/image.h"
#include "twin/state_file.h"
#include "twin/update_runner.h"

namespace sphere::dw100 {

namespace {
absl::Time Now() { return Clock::Real()->Now(); }
}  // namespace

DeviceLoop::DeviceLoop(DeviceLoopOptions options,
                       std::unique_ptr<mcu::Device> device,
                       twin::TwinStateFile state)
    : options_(std::move(options)),
      twin_config_(options_.twin),
      state_(std::move(state)),
      device_clock_(Clock::Real(), options_.time_scale,
                    std::max(Now(), absl::FromUnixMillis(
                                        state_.device_time_floor_unix_ms()))),
      update_schedule_(options_.update_check_interval, device_clock_.Now()) {
  error_policy_.poll_interval = options_.error_poll_interval;
  error_policy_.batch_delay = options_.error_batch_delay;
  twin_config_.error_upload = &error_policy_;
  twin_ = std::make_unique<twin::Twin>(std::move(device), &twin_config_);
  rpc::TlsFiles tls;
  tls.cert_pem = state_.manufacturing_chain_pem();
  tls.key_pem = twin_->device().ExportCertificateKeyForTls();
  tls.ca_pem = options_.root_ca_pem;
  client::AsyncAttestationClient::Options ao;
  ao.deadline = options_.rpc_deadline;
  attestation_ = std::make_unique<client::AsyncAttestationClient>(
      options_.shards, tls, ao);
  agent_ = std::make_unique<Dw100Agent>(
      &twin_->device(), &options_.agent, options_.seed, Now(),
      device_clock_.Now(), state_.telemetry_sequence_floor());
  agent_->set_sequence_limit(state_.telemetry_sequence_floor());
  // Update checks run on the device-time schedule (update_schedule_) and
  // when asked (TwinControl CheckForUpdates).
  updates_ = std::make_unique<twin::UpdateAgent>(
      twin_.get(), &update_config_, state_.update_metadata_version());
  // Reserve device time before the first reading exists.
  ReserveDeviceTime();
}

void DeviceLoop::ReserveDeviceTime() {
  const absl::Time device_now = device_clock_.Now();
  const absl::Duration reserve = kDeviceTimeReserve * options_.time_scale;
  const uint64_t next_seq = agent_->next_sequence();
  // Move a floor when less than half its reserve is left.
  const bool time_low =
      absl::FromUnixMillis(state_.device_time_floor_unix_ms()) - device_now <=
      reserve / 2;
  const bool seq_low =
      state_.telemetry_sequence_floor() < next_seq + kSequenceReserve / 2;
  if (!time_low && !seq_low) return;
  if (time_low) {
    state_.set_device_time_floor_unix_ms(
        absl::ToUnixMillis(device_now + reserve));
  }
  if (seq_low) state_.set_telemetry_sequence_floor(next_seq + kSequenceReserve);
  Persist();  // on disk before the agent may use the new numbers
  agent_->set_sequence_limit(state_.telemetry_sequence_floor());
}

DeviceLoop::~DeviceLoop() {
  updates_.reset();  // unregisters from the twin first
}

bool DeviceLoop::Post(std::function<void()> fn) {
  absl::MutexLock l(&mu_);
  if (stop_ || posted_.size() >= kMaxPostedOperations) return false;
  posted_.push_back(std::move(fn));
  return true;
}

void DeviceLoop::Stop() {
  absl::MutexLock l(&mu_);
  stop_ = true;
}

absl::Time DeviceLoop::NextDue() const {
  absl::Time due = std::min(twin_->next_wakeup(),
                            renew_device_at_ == absl::InfiniteFuture()
                                ? absl::InfiniteFuture()
                                : device_clock_.ToReal(renew_device_at_));
  if (gateway_ != nullptr) due = std::min(due, agent_->next_wakeup());
  if (update_schedule_.enabled()) {
    due = std::min(due, device_clock_.ToReal(update_schedule_.next()));
  }
  return due;
}

void DeviceLoop::Run() {
  log::Info("dw100 twin running",
            {{"device", twin_->device().device_id()},
             {"pid", absl::StrCat(getpid())},
             {"device_time_ms",
              absl::StrCat(absl::ToUnixMillis(device_clock_.Now()))},
             {"time_scale", absl::StrCat(options_.time_scale)},
             {"appsvc", options_.appsvc_address}});
  for (;;) {
    std::deque<std::function<void()>> ops;
    bool stopping;
    {
      absl::MutexLock l(&mu_);
      // Wake for a posted operation, Stop, or the next due time (capped so
      // a clock step never strands the loop).
      const absl::Time until = std::min(NextDue(), Now() + absl::Seconds(5));
      mu_.AwaitWithDeadline(
          absl::Condition(
              +[](DeviceLoop* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return self->stop_ || !self->posted_.empty();
              },
              this),
          until);
      ops.swap(posted_);
      stopping = stop_;
    }
    // Posted operations always run (they finish RPCs waiting on them).
    for (auto& op : ops) op();
    if (stopping) break;
    if (device_clock_.Now() >= renew_device_at_) {
      // Daily attestation in device time (the certificate's real lifetime
      // is far longer than a scaled device day).
      renew_device_at_ = absl::InfiniteFuture();
      log::Info("attestation renewal due",
                {{"device_time_ms",
                  absl::StrCat(absl::ToUnixMillis(device_clock_.Now()))}});
      twin_->RequestAttestation(Now());
    }
    StepAttestation(Now());
    StepScheduledUpdateCheck();
    ReserveDeviceTime();
    StepAgent();
  }
  // Operations posted after the last swap are refused by Post (stop_), but
  // one may have slipped in before: run it.
  std::deque<std::function<void()>> rest;
  {
    absl::MutexLock l(&mu_);
    rest.swap(posted_);
  }
  for (auto& op : rest) op();
  Persist();
  log::Info("dw100 twin stopped",
            {{"uploaded", absl::StrCat(agent_->uploaded())},
             {"dropped", absl::StrCat(agent_->dropped())}});
}

void DeviceLoop::StepAttestation(absl::Time now) {
  if (twin_->next_wakeup() > now) return;
  v1::AttestResponse issued;
  bool got = false;
  twin::Twin::Request r = twin_->OnTimer(now);
  while (!std::holds_alternative<std::monostate>(r)) {
    if (auto* c = std::get_if<v1::GetChallengeRequest>(&r)) {
      absl::Notification done;
      absl::StatusOr<v1::GetChallengeResponse> out =
          absl::UnknownError("no answer");
      attestation_->GetChallenge(std::move(*c), [&](auto answer) {
        out = std::move(answer);
        done.Notify();
      });
      done.WaitForNotification();  // bounded by the client's deadline
      r = twin_->OnChallenge(Now(), std::move(out));
    } else if (auto* a = std::get_if<v1::AttestRequest>(&r)) {
      absl::Notification done;
      absl::StatusOr<v1::AttestResponse> out = absl::UnknownError("no answer");
      attestation_->Attest(std::move(*a), [&](auto answer) {
        out = std::move(answer);
        done.Notify();
      });
      done.WaitForNotification();
      r = twin_->OnAttest(Now(), out);
      if (out.ok() && twin_->phase() == twin::Twin::Phase::kCertified) {
        issued = *std::move(out);
        got = true;
      }
    } else if (auto* u = std::get_if<v1::UploadErrorsRequest>(&r)) {
      const size_t events = u->events_size();
      absl::Notification done;
      absl::StatusOr<v1::UploadErrorsResponse> out =
          absl::UnknownError("no answer");
      if (device_client_ == nullptr ||
          device_client_chain_ != state_.certificate_chain_pem()) {
        rpc::TlsFiles tls;
        tls.cert_pem = state_.certificate_chain_pem();
        tls.key_pem = twin_->device().ExportCertificateKeyForTls();
        tls.ca_pem = options_.root_ca_pem;
        client::AsyncAttestationClient::Options ao;
        ao.deadline = options_.rpc_deadline;
        device_client_ = std::make_unique<client::AsyncAttestationClient>(
            options_.shards, tls, ao);
        device_client_chain_ = state_.certificate_chain_pem();
      }
      device_client_->UploadErrors(std::move(*u), twin_->session_token(),
                                   [&](auto answer) {
                                     out = std::move(answer);
                                     done.Notify();
                                   });
      done.WaitForNotification();  // bounded by the client's deadline
      if (out.ok()) {
        log::Info("error events uploaded", {{"events", absl::StrCat(events)}});
      } else {
        log::Warning("error upload failed",
                     {{"events", absl::StrCat(events)},
                      {"error", std::string(out.status().message())}});
      }
      r = twin_->OnErrorsUploaded(Now(), out);
    }
  }
  if (got) {
    Accepted(issued);
  } else if (twin_->phase() == twin::Twin::Phase::kRefused ||
             twin_->phase() == twin::Twin::Phase::kBackoff) {
    last_outcome_ = absl::StrCat("error: ", twin_->last_error().message());
    log::Warning("attestation failed",
                 {{"error", std::string(twin_->last_error().message())},
                  {"phase", twin::Twin::PhaseName(twin_->phase())}});
  }
}

void DeviceLoop::StepScheduledUpdateCheck() {
  const absl::Time device_now = device_clock_.Now();
  if (!update_schedule_.Due(device_now)) return;
  update_schedule_.Checked(device_now);
  if (!twin_->certified()) {
    // The twin's own attestation state machine retries (or stays refused,
    // e.g. revoked): a scheduled check does not force attestations.
    log::Info("scheduled update check skipped",
              {{"reason", "no valid certificate"},
               {"phase", twin::Twin::PhaseName(twin_->phase())}});
    return;
  }
  log::Info(
      "scheduled update check due",
      {{"device_time_ms", absl::StrCat(absl::ToUnixMillis(device_now))},
       {"device_ms_since_start", absl::StrCat(absl::ToInt64Milliseconds(
                                     device_now - update_schedule_.started()))},
       {"device_hours_since_attestation",
        attested_device_at_ == absl::InfinitePast()
            ? std::string("never")
            : absl::StrCat(
                  absl::ToInt64Hours(device_now - attested_device_at_))},
       {"check", absl::StrCat(update_schedule_.checks())}});
  absl::Status s = CheckForUpdatesOnLoop(options_.update_check_budget);
  int installed = 0;
  for (const auto& r : updates_->last_results()) {
    installed += r.result() == v1::ReportUpdateResultRequest::INSTALLED;
  }
  if (s.ok()) {
    log::Info("scheduled update check done",
              {{"results", absl::StrCat(updates_->last_results().size())},
               {"installed", absl::StrCat(installed)}});
  } else {
    log::Warning("scheduled update check failed",
                 {{"error", log::Bound(std::string(s.message()))}});
  }
}

void DeviceLoop::Accepted(const v1::AttestResponse& issued) {
  attested_device_at_ = device_clock_.Now();
  renew_device_at_ =
      device_clock_.Now() + absl::Hours(24) * twin_config_.renew_at_fraction;
  state_.set_certificate_chain_pem(issued.certificate_chain_pem());
  state_.set_session_token(issued.session_token());
  state_.set_not_after_unix_ms(issued.not_after_unix_ms());
  last_outcome_ = v1::AttestationOutcome_Name(issued.outcome());
  log::Info("attested", {{"outcome", last_outcome_}});
  Persist();
  // The chain next to the state file, for `openssl verify` and the demo.
  const std::string dir =
      options_.state_path.substr(0, options_.state_path.rfind('/'));
  if (auto s = util::WriteFile(absl::StrCat(dir, "/device_chain.pem"),
                               issued.certificate_chain_pem());
      !s.ok()) {
    log::Warning("cannot write device_chain.pem", {{"error", s.ToString()}});
  }
  ConnectCloud();
  agent_->Retry(Now());
}

absl::Status DeviceLoop::CheckForUpdatesOnLoop(absl::Duration budget) {
  if (!twin_->certified() || twin_->certificate_not_after() <= Now()) {
    AttestOnLoop();
    if (!twin_->certified()) return twin_->last_error();
  }
  rpc::TlsFiles tls;
  tls.cert_pem = state_.certificate_chain_pem();
  tls.key_pem = twin_->device().ExportCertificateKeyForTls();
  tls.ca_pem = options_.root_ca_pem;
  absl::Status s;
  v1::AttestResponse reattested;
  bool got = false;
  {
    client::UpdateClient updates(options_.shards, tls, {});
    s = twin::RunUpdateCheck(
        *twin_, *updates_, updates, *attestation_, Clock::Real(),
        Now() + budget,
        [&](uint32_t, twin::Twin&, const v1::AttestResponse& r) {
          reattested = r;
          got = true;
        });
  }
  for (const auto& r : updates_->last_results()) {
    log::Info(
        "update result",
        {{"result", v1::ReportUpdateResultRequest::Result_Name(r.result())},
         {"version", absl::StrCat(r.version())},
         {"detail", log::Bound(r.detail())}});
  }
  if (got) Accepted(reattested);
  Persist();
  return s;
}

void DeviceLoop::ConnectCloud() {
  if (options_.appsvc_address.empty()) return;
  if (state_.certificate_chain_pem().empty() ||
      state_.certificate_chain_pem() == gateway_chain_) {
    return;
  }
  rpc::TlsFiles tls;
  tls.cert_pem = state_.certificate_chain_pem();
  tls.key_pem = twin_->device().ExportCertificateKeyForTls();
  tls.ca_pem = options_.appsvc_ca_pem.empty() ? options_.root_ca_pem
                                              : options_.appsvc_ca_pem;
  gateway_ = contoso::v1::DeviceGateway::NewStub(rpc::NewChannel(
      options_.appsvc_address, tls, options_.appsvc_server_name));
  gateway_chain_ = state_.certificate_chain_pem();
}

void DeviceLoop::StepAgent() {
  if (gateway_ == nullptr) return;
  absl::Time now = Now();
  if (agent_->next_wakeup() > now) return;
  const Dw100Agent::Phase before = agent_->phase();
  Dw100Agent::Request r = agent_->OnTimer(now, device_clock_.Now());
  // Bounded: each answer either empties the buffer a batch at a time or
  // ends in backoff/refusal.
  for (int steps = 0; steps < 64 && !std::holds_alternative<std::monostate>(r);
       ++steps) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(options_.rpc_deadline));
    if (auto* t = std::get_if<contoso::v1::ReportTelemetryRequest>(&r)) {
      contoso::v1::ReportTelemetryResponse resp;
      absl::Status s =
          rpc::FromGrpcStatus(gateway_->ReportTelemetry(&ctx, *t, &resp));
      for (const std::string& a : resp.actions()) {
        log::Info("contoso cloud action", {{"action", log::Bound(a)}});
      }
      if (s.ok() && t->samples_size() > 0) {
        // Sequences are device time in ms (agent.h), monotonic per device
        // and across restarts (the device-time floor).
        log::Info(
            "telemetry acknowledged",
            {{"pid", absl::StrCat(getpid())},
             {"accepted", absl::StrCat(resp.accepted())},
             {"duplicates", absl::StrCat(resp.duplicates())},
             {"first_seq", absl::StrCat(t->samples(0).sequence())},
             {"last_seq",
              absl::StrCat(t->samples(t->samples_size() - 1).sequence())}});
      }
      r = agent_->OnTelemetry(
          Now(), s.ok() ? absl::StatusOr<contoso::v1::ReportTelemetryResponse>(
                              std::move(resp))
                        : s);
    } else if (auto* p = std::get_if<contoso::v1::PollCommandsRequest>(&r)) {
      contoso::v1::PollCommandsResponse resp;
      absl::Status s =
          rpc::FromGrpcStatus(gateway_->PollCommands(&ctx, *p, &resp));
      r = agent_->OnPoll(
          Now(), s.ok() ? absl::StatusOr<contoso::v1::PollCommandsResponse>(
                              std::move(resp))
                        : s);
    } else if (auto* c = std::get_if<contoso::v1::CompleteCommandRequest>(&r)) {
      contoso::v1::CompleteCommandResponse resp;
      absl::Status s =
          rpc::FromGrpcStatus(gateway_->CompleteCommand(&ctx, *c, &resp));
      if (s.ok()) {
        log::Info("diagnostics result sent",
                  {{"command", log::Bound(c->command_id())},
                   {"healthy", c->diagnostics().healthy() ? "true" : "false"}});
      }
      r = agent_->OnComplete(
          Now(), s.ok() ? absl::StatusOr<contoso::v1::CompleteCommandResponse>(
                              std::move(resp))
                        : s);
    }
  }
  if (agent_->phase() != before &&
      (agent_->phase() == Dw100Agent::Phase::kRefused ||
       agent_->phase() == Dw100Agent::Phase::kBackoff)) {
    log::Warning("contoso cloud call failed",
                 {{"error", std::string(agent_->last_error().message())},
                  {"phase", Dw100Agent::PhaseName(agent_->phase())}});
  }
}

void DeviceLoop::Persist() {
  auto sealed = twin_->device().Serialize();
  if (!sealed.ok()) {
    log::Error("cannot serialize device",
               {{"error", sealed.status().ToString()}});
    return;
  }
  state_.set_device(*sealed);
  state_.set_update_metadata_version(updates_->metadata_version());
  if (auto s = twin::WriteTwinState(options_.state_path, state_); !s.ok()) {
    log::Error("cannot write twin state", {{"error", s.ToString()}});
  }
}

v1::TwinStatus DeviceLoop::StatusOnLoop() const {
  v1::TwinStatus st;
  const mcu::Device& d = twin_->device();
  st.set_device_id(d.device_id());
  st.set_boot_state(d.tampered() ? "tampered"
                                 : mcu::BootStateName(d.boot_state()));
  for (const std::string& c : mcu::BootChainComponents()) {
    auto* v = st.add_components();
    v->set_component(c);
    v->set_version(d.InstalledVersion(c));
  }
  for (const char* app : {kHighLevelApp, kRealtimeApp}) {
    const std::string comp = mcu::AppComponentName(app);
    if (uint32_t v = d.InstalledVersion(comp); v != 0) {
      auto* cv = st.add_components();
      cv->set_component(comp);
      cv->set_version(v);
    }
  }
  st.set_attestation_outcome(last_outcome_);
  if (twin_->certified() && !state_.certificate_chain_pem().empty()) {
    auto chain = crypto::SplitPemChain(state_.certificate_chain_pem());
    if (!chain.empty()) {
      if (auto leaf = crypto::ParseCertificate(chain[0]); leaf.ok()) {
        st.set_certificate_subject(leaf->subject_line);
        st.set_certificate_not_after_unix_ms(
            absl::ToUnixMillis(leaf->not_after));
        st.set_tenant_id(leaf->claims.tenant_id);
        st.set_device_group_id(leaf->claims.device_group_id);
      }
    }
  }
  return st;
}

absl::Status DeviceLoop::InjectFaultOnLoop(v1::InjectFaultRequest::Fault f) {
  absl::Status s;
  switch (f) {
    case v1::InjectFaultRequest::APP_CRASH:
      s = agent_->InjectFault(Fault::kAppCrash);
      break;
    case v1::InjectFaultRequest::DRYING_HEATER_DRIFT:
      s = agent_->InjectFault(Fault::kHeaterCold);
      break;
    case v1::InjectFaultRequest::DRYING_HEATER_HOT:
      s = agent_->InjectFault(Fault::kHeaterHot);
      break;
    case v1::InjectFaultRequest::RINSE_AGENT_LOW:
      s = agent_->InjectFault(Fault::kRinseAgentLow);
      break;
    case v1::InjectFaultRequest::TAMPER:
      // Pluton latches the tamper and reports it in every quote it signs:
      // the next attestation is refused and the Security Service revokes
      // the device by itself. The TLS stack still holds the certificate key
      // (TLS offload): the device keeps calling the cloud, which refuses it
      // once the revocation arrives over Watch.
      twin_->device().TriggerTamper("enclosure opened");
      twin_->RequestAttestation(Now());
      StepAttestation(Now());  // fails now: the status shows why
      break;
    case v1::InjectFaultRequest::POWER_LOSS_DURING_UPDATE:
      if (!twin_->device().update_pending_confirm()) {
        return absl::FailedPreconditionError(
            "no update is being installed: power loss during an update needs "
            "a staged, unconfirmed update (CheckForUpdates first)");
      }
      // Power cut: the device boots again from whatever the flash holds;
      // an unconfirmed slot counts a boot attempt and rolls back past the
      // limit (Security Monitor).
      s = twin_->device().Boot();
      twin_->RequestAttestation(Now());
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown fault ", static_cast<int>(f)));
  }
  log::Info("fault injected", {{"fault", v1::InjectFaultRequest::Fault_Name(f)},
                               {"result", s.ToString()}});
  Persist();
  return s;
}

v1::DiagnosticsReport DeviceLoop::RunDiagnosticsOnLoop(const std::string& by) {
  contoso::v1::DiagnosticsResult r = agent_->RunDiagnostics();
  v1::DiagnosticsReport out;
  out.set_device_id(twin_->device().device_id());
  out.set_healthy(r.healthy());
  for (const std::string& f : r.findings()) out.add_findings(f);
  out.set_suspected_part(r.suspected_part());
  log::Info("diagnostics run", {{"requested_by", log::Bound(by)},
                                {"healthy", r.healthy() ? "true" : "false"}});
  return out;
}

void DeviceLoop::AttestOnLoop(int64_t min_catalog_revision) {
  twin_config_.min_catalog_revision =
      std::max(twin_config_.min_catalog_revision, min_catalog_revision);
  twin_->Retry(Now());
  twin_->RequestAttestation(Now());
  StepAttestation(Now());
}

void DeviceLoop::RebootOnLoop() {
  absl::Status s = twin_->device().Reboot();
  if (!s.ok())
    log::Warning("reboot: secure boot failed", {{"error", s.ToString()}});
  twin_->RequestAttestation(Now());
  Persist();
}

}  // namespace sphere::dw100
