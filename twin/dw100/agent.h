// Dw100Agent: the DW100 high-level app's conversation with the Contoso
// cloud (contoso.v1.DeviceGateway), as an event-driven state machine like
// twin::Twin: no thread, channel, timer or file. The driver (the twin
// binary, a load generator) calls OnTimer once now >= next_wakeup(), sends
// the request it returns, and feeds the answer to the matching On<Answer>.
//
//   kIdle --OnTimer: readings buffered and (batch full or upload due)-->
//       kAwaitingTelemetry --OnTelemetry ok--> kIdle (commands handled)
//   kIdle --OnTimer: a command result is pending--> kAwaitingComplete
//   kIdle --OnTimer: poll due--> kAwaitingPoll --OnPoll ok--> kIdle
//   any answer, retryable failure (client::IsRetryable) --> kBackoff
//       --OnTimer after jittered backoff--> kIdle (same batch again)
//   any answer, refusal (PERMISSION_DENIED: revoked, tampered or update-only
//       certificate; UNAUTHENTICATED; ...) --> kRefused until Retry()
//
// Each OnTimer first reads the sensors up to `device_now` (WashModel ->
// real-time app -> mailbox -> high-level app, see firmware.h). Readings are
// buffered (at most Config::max_buffered; the oldest are dropped and
// counted) and uploaded in batches of at most Config::batch_size; a batch
// stays buffered until the cloud acknowledged it (durable), so a failed
// upload is retried with the same sequences (the cloud deduplicates).
// Sequences are consecutive integers from a per-device counter, given to a
// reading when it first goes into a batch and never below `first_sequence`
// or at/above the limit set by set_sequence_limit (a driver persisting the
// counter, like the twin's DeviceLoop, reserves numbers before use, so a
// restarted device never reuses one).
//
// RUN_DIAGNOSTICS commands (in a telemetry answer or a poll) run the
// heater self-test at once; the result is sent with CompleteCommand.
// Command ids already answered are remembered (last 64) and not rerun.
//
// Times: `now` is the driver's (network) clock for uploads, polls and
// backoff; `device_now` is device time (ScaledClock) for the wash model.
// Thread-safety: not thread-safe; one driver thread.
#ifndef SPHERE_TWIN_DW100_AGENT_H_
#define SPHERE_TWIN_DW100_AGENT_H_

#include <cstdint>
#include <deque>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/backoff.h"
#include "mcu-model/device.h"
#include "protos/contoso.pb.h"
#include "twin/dw100/firmware.h"
#include "twin/dw100/wash_model.h"

namespace sphere::dw100 {

// Largest batch the cloud accepts (contoso.proto ReportTelemetryRequest).
inline constexpr size_t kMaxBatch = 1000;
// Commands the agent keeps at once (pending results, remembered ids).
inline constexpr size_t kMaxPendingResults = 16;
inline constexpr size_t kRememberedCommands = 64;
// Longest command id the agent accepts from the cloud.
inline constexpr size_t kMaxCommandIdBytes = 128;

struct AgentConfig {
  size_t batch_size = 200;                            // <= kMaxBatch
  absl::Duration upload_interval = absl::Seconds(2);  // partial batches
  absl::Duration poll_interval = absl::Seconds(3);    // command polls
  size_t max_buffered = 20000;                        // readings kept
  client::BackoffPolicy backoff;
  WashModel::Options model;
};

// Fault is what TwinControl.InjectFault can do to the DW100 itself.
enum class Fault { kHeaterCold, kHeaterHot, kRinseAgentLow, kAppCrash };

class Dw100Agent {
 public:
  enum class Phase : uint8_t {
    kIdle,
    kAwaitingTelemetry,
    kAwaitingPoll,
    kAwaitingComplete,
    kBackoff,
    kRefused,
  };
  static const char* PhaseName(Phase p);

  using Request =
      std::variant<std::monostate, contoso::v1::ReportTelemetryRequest,
                   contoso::v1::PollCommandsRequest,
                   contoso::v1::CompleteCommandRequest>;

  // `device` and `config` must outlive the agent. `seed` makes the wash
  // model reproducible; `device_start` is device time at power-on.
  Dw100Agent(mcu::Device* device, const AgentConfig* config, uint64_t seed,
             absl::Time now, absl::Time device_start,
             uint64_t first_sequence = 1);

  Request OnTimer(absl::Time now, absl::Time device_now);
  Request OnTelemetry(
      absl::Time now,
      const absl::StatusOr<contoso::v1::ReportTelemetryResponse>& r);
  Request OnPoll(absl::Time now,
                 const absl::StatusOr<contoso::v1::PollCommandsResponse>& r);
  Request OnComplete(
      absl::Time now,
      const absl::StatusOr<contoso::v1::CompleteCommandResponse>& r);
  // Retry leaves kRefused (e.g. after a new certificate): due at `now`.
  void Retry(absl::Time now);

  // InjectFault applies a DW100 fault (TwinControl, tests, the demo).
  absl::Status InjectFault(Fault fault);
  // RunDiagnostics runs the heater self-test now.
  contoso::v1::DiagnosticsResult RunDiagnostics();

  // Sequences at or above `limit` are not handed out until it is raised.
  void set_sequence_limit(uint64_t limit) { sequence_limit_ = limit; }
  uint64_t next_sequence() const { return next_sequence_; }

  Phase phase() const { return phase_; }
  absl::Time next_wakeup() const;
  const absl::Status& last_error() const { return last_error_; }
  size_t buffered() const { return buffer_.size(); }
  uint64_t uploaded() const { return uploaded_; }
  uint64_t dropped() const { return dropped_; }
  uint64_t diagnostics_run() const { return diagnostics_run_; }
  // Actions the cloud reported so far (e.g. "diagnostics-requested"), last 32.
  const std::deque<std::string>& actions() const { return actions_; }
  const WashModel& model() const { return model_; }
  Firmware& firmware() { return firmware_; }

 private:
  Request Next(absl::Time now);
  Request Fail(absl::Time now, const absl::Status& status);
  void HandleCommands(
      const google::protobuf::RepeatedPtrField<contoso::v1::Command>& cmds);

  const AgentConfig* config_;
  uint64_t next_sequence_;
  uint64_t sequence_limit_;
  WashModel model_;
  Firmware firmware_;
  std::deque<contoso::v1::Telemetry> buffer_;
  std::deque<contoso::v1::CompleteCommandRequest> results_;
  std::deque<std::string> answered_;  // command ids, newest last
  std::deque<std::string> actions_;
  std::vector<WashSample> scratch_;
  size_t in_flight_ = 0;  // readings at the front of buffer_ being sent
  absl::Status last_error_;
  absl::Time next_upload_;
  absl::Time next_poll_;
  absl::Time wakeup_;
  uint64_t uploaded_ = 0;
  uint64_t dropped_ = 0;
  uint64_t diagnostics_run_ = 0;
  uint64_t jitter_seed_;
  int retries_ = 0;
  Phase phase_ = Phase::kIdle;
};

}  // namespace sphere::dw100

#endif  // SPHERE_TWIN_DW100_AGENT_H_
