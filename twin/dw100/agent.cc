#include "twin/dw100/agent.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace sphere::dw100 {

using contoso::v1::Command;
using contoso::v1::CompleteCommandRequest;
using contoso::v1::CompleteCommandResponse;
using contoso::v1::PollCommandsRequest;
using contoso::v1::PollCommandsResponse;
using contoso::v1::ReportTelemetryRequest;
using contoso::v1::ReportTelemetryResponse;
using contoso::v1::Telemetry;

const char* Dw100Agent::PhaseName(Phase p) {
  switch (p) {
    case Phase::kIdle:
      return "idle";
    case Phase::kAwaitingTelemetry:
      return "awaiting-telemetry";
    case Phase::kAwaitingPoll:
      return "awaiting-poll";
    case Phase::kAwaitingComplete:
      return "awaiting-complete";
    case Phase::kBackoff:
      return "backoff";
    case Phase::kRefused:
      return "refused";
  }
  return "?";
}

Dw100Agent::Dw100Agent(mcu::Device* device, const AgentConfig* config,
                       uint64_t seed, absl::Time now, absl::Time device_start,
                       uint64_t first_sequence)
    : config_(config),
      next_sequence_(std::max<uint64_t>(first_sequence, 1)),
      sequence_limit_(UINT64_MAX),
      model_(seed, config->model, device_start),
      firmware_(device),
      next_upload_(now + config->upload_interval),
      next_poll_(now + config->poll_interval),
      wakeup_(now),
      jitter_seed_(seed) {}

absl::Time Dw100Agent::next_wakeup() const {
  switch (phase_) {
    case Phase::kAwaitingTelemetry:
    case Phase::kAwaitingPoll:
    case Phase::kAwaitingComplete:
    case Phase::kRefused:
      return absl::InfiniteFuture();
    case Phase::kIdle:
    case Phase::kBackoff:
      return wakeup_;
  }
  return wakeup_;
}

Dw100Agent::Request Dw100Agent::OnTimer(absl::Time now, absl::Time device_now) {
  if (phase_ != Phase::kIdle && phase_ != Phase::kBackoff) return {};
  if (phase_ == Phase::kBackoff && now < wakeup_) return {};
  phase_ = Phase::kIdle;
  // Sensors: model -> RT app -> mailbox -> high-level app -> buffer.
  for (;;) {
    scratch_.clear();
    if (model_.AdvanceTo(device_now, &scratch_) == 0) break;
    std::vector<WashSample> read;
    if (absl::Status s = firmware_.ReadSensors(scratch_, &read); !s.ok()) {
      dropped_ += scratch_.size();  // app down: the readings are lost
      last_error_ = s;
      continue;
    }
    for (const WashSample& w : read) {
      Telemetry t;
      t.set_time_unix_ms(w.time_unix_ms);
      t.set_water_temperature_c(w.water_c);
      t.set_drying_temperature_c(w.drying_c);
      t.set_rinse_agent_level_pct(w.rinse_agent_pct);
      t.set_cycle_state(static_cast<Telemetry::CycleState>(w.state));
      t.set_cycle_id(w.cycle_id);
      // The sequence is assigned when the reading first goes into a batch
      // (Next), from the agent's counter, bounded by sequence_limit_.
      buffer_.push_back(std::move(t));
    }
    while (buffer_.size() > std::max(config_->max_buffered, in_flight_ + 1)) {
      // Never drop what is in flight (index < in_flight_).
      buffer_.erase(buffer_.begin() + static_cast<long>(in_flight_));
      ++dropped_;
    }
  }
  return Next(now);
}

Dw100Agent::Request Dw100Agent::Next(absl::Time now) {
  phase_ = Phase::kIdle;
  if (!results_.empty()) {
    if (absl::Status s = firmware_.ConnectCloud(); !s.ok()) {
      return Fail(now, s);
    }
    phase_ = Phase::kAwaitingComplete;
    return results_.front();
  }
  const size_t batch = std::clamp<size_t>(config_->batch_size, 1, kMaxBatch);
  if (!buffer_.empty() && (buffer_.size() >= batch || now >= next_upload_)) {
    if (absl::Status s = firmware_.ConnectCloud(); !s.ok()) {
      return Fail(now, s);
    }
    ReportTelemetryRequest req;
    in_flight_ = std::min(batch, buffer_.size());
    // Readings keep the sequence they first got (a retried batch is the
    // same batch); new ones take the next numbers below the limit.
    size_t numbered = 0;
    while (numbered < in_flight_ && buffer_[numbered].sequence() != 0) {
      ++numbered;
    }
    while (numbered < in_flight_ && next_sequence_ < sequence_limit_) {
      buffer_[numbered++].set_sequence(next_sequence_++);
    }
    in_flight_ = numbered;
    if (in_flight_ == 0) {  // out of numbers until the driver raises the limit
      wakeup_ = std::min(next_upload_, next_poll_);
      return {};
    }
    for (size_t i = 0; i < in_flight_; ++i) *req.add_samples() = buffer_[i];
    phase_ = Phase::kAwaitingTelemetry;
    return req;
  }
  if (now >= next_poll_) {
    if (absl::Status s = firmware_.ConnectCloud(); !s.ok()) {
      return Fail(now, s);
    }
    phase_ = Phase::kAwaitingPoll;
    return PollCommandsRequest();
  }
  wakeup_ = buffer_.empty() ? next_poll_ : std::min(next_upload_, next_poll_);
  return {};
}

Dw100Agent::Request Dw100Agent::Fail(absl::Time now,
                                     const absl::Status& status) {
  last_error_ = status;
  in_flight_ = 0;
  if (!client::IsRetryable(status.code())) {
    phase_ = Phase::kRefused;
    return {};
  }
  const double jitter = client::JitterFraction(
      jitter_seed_ ^ (static_cast<uint64_t>(retries_) << 32) ^
      static_cast<uint64_t>(absl::ToUnixNanos(now)));
  const absl::Duration delay =
      client::BackoffDelay(config_->backoff, retries_, jitter);
  retries_ = std::min(retries_ + 1, 64);
  phase_ = Phase::kBackoff;
  wakeup_ = now + delay;
  return {};
}

void Dw100Agent::HandleCommands(
    const google::protobuf::RepeatedPtrField<Command>& cmds) {
  for (const Command& c : cmds) {
    if (c.command_id().empty() || c.command_id().size() > kMaxCommandIdBytes) {
      continue;  // malformed: nothing to answer to
    }
    if (std::find(answered_.begin(), answered_.end(), c.command_id()) !=
        answered_.end()) {
      continue;  // already run; its result is pending or delivered
    }
    if (results_.size() >= kMaxPendingResults) break;  // the rest come again
    answered_.push_back(c.command_id());
    if (answered_.size() > kRememberedCommands) answered_.pop_front();
    CompleteCommandRequest done;
    done.set_command_id(c.command_id());
    if (c.kind() == Command::RUN_DIAGNOSTICS) {
      *done.mutable_diagnostics() = RunDiagnostics();
    } else {
      done.mutable_diagnostics()->set_healthy(false);
      done.mutable_diagnostics()->add_findings(
          absl::StrCat("unsupported command kind ", c.kind()));
    }
    results_.push_back(std::move(done));
  }
}

Dw100Agent::Request Dw100Agent::OnTelemetry(
    absl::Time now, const absl::StatusOr<ReportTelemetryResponse>& r) {
  if (phase_ != Phase::kAwaitingTelemetry) return {};
  if (!r.ok()) return Fail(now, r.status());
  retries_ = 0;
  last_error_ = absl::OkStatus();
  uploaded_ += in_flight_;
  buffer_.erase(buffer_.begin(),
                buffer_.begin() + static_cast<long>(in_flight_));
  in_flight_ = 0;
  for (const std::string& a : r->actions()) {
    actions_.push_back(a.substr(0, 128));
    if (actions_.size() > 32) actions_.pop_front();
  }
  HandleCommands(r->commands());
  next_upload_ = now + config_->upload_interval;
  return Next(now);
}

Dw100Agent::Request Dw100Agent::OnPoll(
    absl::Time now, const absl::StatusOr<PollCommandsResponse>& r) {
  if (phase_ != Phase::kAwaitingPoll) return {};
  if (!r.ok()) return Fail(now, r.status());
  retries_ = 0;
  last_error_ = absl::OkStatus();
  HandleCommands(r->commands());
  next_poll_ = now + config_->poll_interval;
  return Next(now);
}

Dw100Agent::Request Dw100Agent::OnComplete(
    absl::Time now, const absl::StatusOr<CompleteCommandResponse>& r) {
  if (phase_ != Phase::kAwaitingComplete) return {};
  if (!r.ok()) return Fail(now, r.status());
  retries_ = 0;
  last_error_ = absl::OkStatus();
  results_.pop_front();
  return Next(now);
}

void Dw100Agent::Retry(absl::Time now) {
  if (phase_ != Phase::kRefused) return;
  phase_ = Phase::kIdle;
  retries_ = 0;
  wakeup_ = now;
}

absl::Status Dw100Agent::InjectFault(Fault fault) {
  switch (fault) {
    case Fault::kHeaterCold:
      model_.SetHeaterFault(HeaterFault::kCold);
      return absl::OkStatus();
    case Fault::kHeaterHot:
      model_.SetHeaterFault(HeaterFault::kHot);
      return absl::OkStatus();
    case Fault::kRinseAgentLow:
      model_.SetRinseAgentLevel(std::min(model_.rinse_agent_pct(), 8.0));
      return absl::OkStatus();
    case Fault::kAppCrash:
      return firmware_.Crash();
  }
  return absl::InvalidArgumentError("unknown DW100 fault");
}

contoso::v1::DiagnosticsResult Dw100Agent::RunDiagnostics() {
  ++diagnostics_run_;
  SelfTestResult t = model_.HeaterSelfTest();
  contoso::v1::DiagnosticsResult r;
  r.set_healthy(t.healthy);
  r.add_findings(absl::StrCat("drying heater element ",
                              absl::SixDigits(t.heater_ohm), " ohm (healthy ",
                              kHeaterMinOhm, "-", kHeaterMaxOhm, ")"));
  for (const std::string& f : t.findings) r.add_findings(f);
  r.set_suspected_part(t.suspected_part);
  return r;
}

}  // namespace sphere::dw100
