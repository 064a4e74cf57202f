// DeviceLoop: one DW100 twin as a running device, for the twin binary's
// `run` command. One thread (Run) owns the twin (attestation state machine,
// twin/twin.h), the DW100 agent (agent.h) and the device model; it
//  * attests at start, renews daily in device time (renew_at_fraction of a
//    device day after each accepted attestation, on the ScaledClock: with
//    --time-scale 8000 every ~8.6 s real) and before the certificate's
//    real expiry, and re-attests after a tamper or reboot (Security Service
//    over mTLS with the manufacturing identity; redirects and jittered backoff
//    are the attestation client's and the twin's);
//  * talks to the Contoso cloud (contoso.v1.DeviceGateway) over mTLS with
//    its Sphere-issued certificate: batched telemetry, command polls,
//    diagnostics results; transient failures back off with jitter, a
//    refusal (e.g. PERMISSION_DENIED for a revoked device) stops the agent
//    until the next successful attestation;
//  * checks for updates on a schedule in device time
//    (update_check_interval, default every 24 device hours; see
//    update_schedule.h) through the twin library's UpdateAgent, without
//    waiting for an attestation: a pending deployment installs by the
//    schedule alone (download, install, reboot, re-attest, report);
//  * runs control operations posted from other threads (TwinControl) in
//    order, between network steps.
//  * uploads the device's error ring (app crash, watchdog, tamper, ...)
//    through the twin library's ErrorUploader (TwinConfig::error_upload) to
//    the owning shard's ErrorReporting service, with its session token;
//  * keeps device time (ScaledClock) and telemetry sequence numbers
//    monotonic across restarts: both resume at floors kept in the state
//    file, moved ahead before use (kDeviceTimeReserve of real time,
//    kSequenceReserve numbers) and written before use, so no sequence is
//    ever reused, even after a kill -9.
// Waits are on a condition variable until the next due time or a posted
// operation, never a sleep. Every RPC has a deadline. The state file is
// rewritten after each attestation, fault and at exit; each issued chain is
// also written to DIR/twins/NAME/device_chain.pem.
//
// Thread-safety: Post and Stop from any thread; everything else runs on the
// Run thread (posted functions may call the *OnLoop methods).
#ifndef SPHERE_TWIN_DW100_DEVICE_LOOP_H_
#define SPHERE_TWIN_DW100_DEVICE_LOOP_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "client/attestation_client.h"
#include "protos/contoso.grpc.pb.h"
#include "protos/twin_control.pb.h"
#include "twin/dw100/agent.h"
#include "twin/dw100/scaled_clock.h"
#include "twin/dw100/update_schedule.h"
#include "twin/twin.h"
#include "twin/twin_state.pb.h"
#include "twin/update_agent.h"

namespace sphere::dw100 {

// Control operations queued at once; more are refused (RESOURCE_EXHAUSTED)
// so one noisy caller cannot pile work onto the device.
inline constexpr size_t kMaxPostedOperations = 32;
// Real time of device time reserved in the state file at once (see above).
inline constexpr absl::Duration kDeviceTimeReserve = absl::Seconds(30);
// Telemetry sequence numbers reserved in the state file at once.
inline constexpr uint64_t kSequenceReserve = 10000;

struct DeviceLoopOptions {
  std::string name;        // twin name (logs)
  std::string state_path;  // DIR/twins/NAME/twin.state
  std::vector<cluster::ShardEndpoint> shards;
  std::string root_ca_pem;     // platform root
  std::string appsvc_address;  // empty: no Contoso cloud
  // TLS name on appsvc's certificate (cluster.json: ServerName("appsvc")).
  std::string appsvc_server_name = cluster::kDefaultServerName;
  std::string appsvc_ca_pem;  // roots for appsvc's server certificate
  double time_scale = 1.0;    // device time per real time
  uint64_t seed = 1;          // wash-model noise
  AgentConfig agent;
  twin::TwinConfig twin;
  absl::Duration rpc_deadline = absl::Seconds(5);
  // Error ring uploads: how often an idle twin looks at its ring (real time)
  // and how long it gathers events before sending a batch.
  absl::Duration error_poll_interval = absl::Seconds(2);
  absl::Duration error_batch_delay = absl::Seconds(1);
  // Scheduled update checks, in device time; zero = only when asked
  // (TwinControl CheckForUpdates).
  absl::Duration update_check_interval = absl::Hours(24);
  // Real time one scheduled check may block the loop.
  absl::Duration update_check_budget = absl::Seconds(60);
};

class DeviceLoop {
 public:
  DeviceLoop(DeviceLoopOptions options, std::unique_ptr<mcu::Device> device,
             twin::TwinStateFile state);
  ~DeviceLoop();

  // Run serves until Stop(); persists the state file on the way out.
  void Run();
  void Stop();
  // Post queues `fn` for the Run thread. False when the queue is full or
  // the loop is stopping (fn is then not run).
  bool Post(std::function<void()> fn);

  // Device time now (ScaledClock; thread-safe).
  absl::Time DeviceNow() const { return device_clock_.Now(); }
  // Device time of the next scheduled update check (InfiniteFuture: off).
  // Run thread, or before Run.
  absl::Time NextScheduledUpdateCheck() const {
    return update_schedule_.next();
  }

  // ---- Run thread only (from posted functions) ----
  sphere::v1::TwinStatus StatusOnLoop() const;
  absl::Status InjectFaultOnLoop(sphere::v1::InjectFaultRequest::Fault fault);
  sphere::v1::DiagnosticsReport RunDiagnosticsOnLoop(const std::string& by);
  // Attests now (blocking the loop for at most the RPC deadlines), from a
  // shard catalog at least `min_catalog_revision` new (0 = any).
  void AttestOnLoop(int64_t min_catalog_revision = 0);
  void RebootOnLoop();
  // CheckForUpdatesOnLoop runs one update check (twin/update_runner.h:
  // signed metadata, download, install, reboot, re-attest, report), blocking
  // the loop for at most `budget`; the cloud link moves to the new chain.
  absl::Status CheckForUpdatesOnLoop(absl::Duration budget);

 private:
  void StepAttestation(absl::Time now);
  // StepScheduledUpdateCheck runs a due scheduled update check.
  void StepScheduledUpdateCheck();
  void StepAgent();
  void ConnectCloud();
  void Persist();
  // ReserveDeviceTime moves the persisted device-time and sequence floors
  // ahead when they are about to be reached (writes the state file) and
  // gives the agent its new sequence limit.
  void ReserveDeviceTime();
  void Accepted(const v1::AttestResponse& issued);
  absl::Time NextDue() const;

  const DeviceLoopOptions options_;
  twin::TwinConfig twin_config_;  // options_.twin + min revision of Attest
  twin::ErrorUploadPolicy error_policy_;
  twin::TwinStateFile state_;
  ScaledClock device_clock_;
  std::unique_ptr<twin::Twin> twin_;
  std::unique_ptr<client::AsyncAttestationClient> attestation_;
  // Error uploads go over mTLS with the device certificate (rebuilt when a
  // new chain is issued).
  std::unique_ptr<client::AsyncAttestationClient> device_client_;
  std::string device_client_chain_;
  std::unique_ptr<Dw100Agent> agent_;
  twin::UpdateAgentConfig update_config_;
  std::unique_ptr<twin::UpdateAgent> updates_;
  std::unique_ptr<contoso::v1::DeviceGateway::Stub> gateway_;
  std::string gateway_chain_;  // chain the gateway channel presents
  std::string last_outcome_;
  // Device time of the next daily (device-time) attestation.
  absl::Time renew_device_at_ = absl::InfiniteFuture();
  // Device time of the last accepted attestation (logs).
  absl::Time attested_device_at_ = absl::InfinitePast();
  UpdateCheckSchedule update_schedule_;

  absl::Mutex mu_;
  std::deque<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sphere::dw100

#endif  // SPHERE_TWIN_DW100_DEVICE_LOOP_H_
