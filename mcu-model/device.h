// Device: the behavioural model of one Azure Sphere MCU — Pluton, the
// Security Monitor (Secure World), flash with A/B slots, the RAM budget,
// hardware firewalls and multiplexed I/O, two Cortex-M4 real-time cores with
// mailboxes, the application runtime and OS services (update agent, error
// ring, app lifecycle + crash capture, watchdog).
//
// Secure boot chain (each stage verified by the one below with the ROM's
// image-signing public key, then measured by Pluton):
//   ROM -> pluton-runtime -> security-monitor -> bootloader -> kernel ->
//   os-services -> applications.
// Defence in depth: besides the stage below, the Security Monitor itself
// re-verifies every Normal World image (bootloader, kernel, OS services,
// apps) before granting it memory, so a compromised bootloader cannot start
// a tampered kernel. A failed check leaves the device in kRecovery, where
// only the update service is reachable (OsConnect) and updates can be staged.
// Registers: 0 = pluton-runtime + security-monitor, 1 = bootloader + kernel,
// 2 = os-services, 3 = applications (quote.h).
//
// Small TCB: Pluton is reachable only through the Security Monitor
// (SecureWorldToken); Normal World callers go through SecureMonitorCall,
// which admits the supervisor (kernel / OS services) only.
//
// Errors: every failure returns a specific absl::Status AND appends an
// ErrorEvent to the bounded error ring (DrainErrorEvents); when the ring is
// full the oldest event is dropped and dropped_error_events() counts it.
//
// Persistence: Serialize() returns PersistedDeviceState. The Pluton secrets
// (device scalar, DRBG seed) are sealed with AES-256-GCM under a key derived
// from the device type's fuse key; the rest of the state is the AAD, so any
// edit (e.g. lowering an anti-rollback counter, or splicing another device's
// sealed key in) fails Restore with Unauthenticated. Measurements are
// volatile: after Restore the device is off; call Boot().
//
// Memory: device-type constants (DeviceType) and image records (shared,
// content-addressed) are shared; FootprintBytes() counts only what this
// device owns.
//
// Thread-safety: not thread-safe; drive one Device from one thread at a time.
//
// Example:
//   auto dev = Device::Manufacture(DeviceType::Mt3620(), signing_pub,
//                                  {.seed = "device-1"});
//   (*dev)->InstallFactoryImages(*BuildFactoryImages(signing_key, 1));
//   (*dev)->Boot();
//   absl::StatusOr<v1::Quote> q = (*dev)->Quote(nonce);
#ifndef SPHERE_MCU_MODEL_DEVICE_H_
#define SPHERE_MCU_MODEL_DEVICE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/util/clock.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image_record.h"
#include "mcu-model/pluton.h"
#include "protos/device.pb.h"

namespace sphere::mcu {

enum class BootState { kOff, kRunning, kRecovery };
const char* BootStateName(BootState s);

// Core identifies an execution core. Peripherals are mapped to exactly one.
enum class Core : uint8_t { kA7 = 0, kM4_0 = 1, kM4_1 = 2 };

// Who issues a Security Monitor call from the Normal World.
enum class NormalWorldCaller { kUser, kSupervisor };

// Application API calls checked against the manifest (no generic file I/O
// or shell exists: kFileOpen and kShellExec always fail).
enum class AppApi {
  kSystemEventNotifications,
  kSoftwareUpdateDeferral,
  kFileOpen,
  kShellExec,
  kQuote,  // apps cannot reach Pluton
};

class Device {
 public:
  struct Options {
    // Deterministic mode: all Pluton randomness (device key, nonces) derives
    // from this seed. Unset = real RNG (default).
    std::optional<std::string> seed;
    Clock* clock = nullptr;          // nullptr = Clock::Real()
    EntropySource entropy_for_test;  // replaces Pluton's noise source
  };

  static absl::StatusOr<std::unique_ptr<Device>> Manufacture(
      std::shared_ptr<const DeviceType> type,
      absl::string_view image_signing_public_key, Options options);
  // Restore rebuilds a device from Serialize() output. Errors:
  // Unauthenticated (sealed state does not open under this type's fuse key or
  // was edited), InvalidArgument (malformed).
  static absl::StatusOr<std::unique_ptr<Device>> Restore(
      std::shared_ptr<const DeviceType> type,
      absl::string_view image_signing_public_key, absl::string_view serialized,
      Options options);

  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // ---- Identity ----
  std::string device_id() const;   // hex SHA-256 of public_key()
  std::string public_key() const;  // 65-byte SEC1 device key
  const DeviceType& type() const { return *type_; }

  // ---- Factory + boot ----
  // InstallFactoryImages writes the boot chain (pluton-runtime,
  // security-monitor to their partition; bootloader, kernel, os-services to
  // both OS slots). Images are verified. Errors: Unauthenticated,
  // InvalidArgument (missing component), ResourceExhausted (does not fit).
  absl::Status InstallFactoryImages(
      const std::vector<v1::ImagePackage>& images);
  // Same, from the flash form (ToStoredImage): convert a factory set once and
  // install it on many devices without re-hashing megabytes of payload.
  absl::Status InstallFactoryImages(const std::vector<v1::StoredImage>& images);
  // Boot runs the secure boot chain. On a failed check the device enters
  // kRecovery and the error (FailedPrecondition naming the stage and the
  // verifier) is returned and recorded (BOOT_FAILED).
  absl::Status Boot();
  absl::Status Reboot() { return Boot(); }
  BootState boot_state() const { return state_; }
  uint32_t active_os_slot() const { return active_os_; }
  // Version of `component` in the active OS slot / Secure World partition.
  uint32_t InstalledVersion(absl::string_view component) const;

  // ---- Attestation (via the Security Monitor) ----
  absl::StatusOr<v1::Quote> Quote(absl::string_view nonce);
  std::string CertificatePublicKey() const;
  absl::StatusOr<std::string> SignWithCertificateKey(absl::string_view msg);
  // Models TLS offload: the derived certificate key only (never the device
  // key), as PKCS#8 PEM for gRPC's TLS stack.
  std::string ExportCertificateKeyForTls() const;
  // SecureMonitorCall: the Normal World's only path to Pluton. kUser callers
  // (applications) get PermissionDenied; `op` is "quote", "cert-sign".
  absl::StatusOr<std::string> SecureMonitorCall(NormalWorldCaller caller,
                                                absl::string_view op,
                                                absl::string_view arg);

  // ---- Update agent ----
  // StageUpdate verifies a package and writes it to the inactive slot (OS
  // components, apps) or in place (Secure World images, applied at next
  // boot). Errors: Unauthenticated (bad signature / tampered),
  // FailedPrecondition (older than the anti-rollback counter),
  // ResourceExhausted (does not fit the partition), InvalidArgument.
  absl::Status StageUpdate(const v1::ImagePackage& package);
  bool update_pending_confirm() const { return os_pending_ || app_pending_; }
  // ConfirmUpdate commits the running slots and raises anti-rollback
  // counters to the running versions.
  absl::Status ConfirmUpdate();
  // RollBackUpdate returns to the previous slot and reboots.
  absl::Status RollBackUpdate();
  // OsCrash models a kernel panic: reset counted, event recorded, reboot.
  // Unconfirmed updates that crash max_boot_attempts times roll back.
  absl::Status OsCrash(absl::string_view reason);

  // ---- Verified install support (mcu-model/device_update.cc) ----
  // The platform image-signing public key in ROM (65-byte SEC1).
  const std::string& image_signing_public_key() const { return *signing_key_; }
  // CheckUpdateFits checks, before anything is written, that the image of
  // `header` (already verified) fits its flash partition next to what stays
  // installed, and for applications that its manifest's memory_kib fits the
  // RAM budget (4 MiB minus the OS share, next to the other installed apps;
  // a real-time app: one M4 core's TCM). Errors: ResourceExhausted naming
  // "flash" or "RAM" (see update_install.h InstallError).
  absl::Status CheckUpdateFits(const v1::ImageHeader& header) const;
  // Software-update deferral (Azure Sphere SysEvent_DeferEvent): a running
  // app whose manifest grants software_update_deferral may postpone pending
  // updates by `duration`, but never past 24 h of device time after the
  // first deferral of the current update; then updates install anyway.
  // Errors: PermissionDenied (manifest), NotFound (app not running),
  // FailedPrecondition (the 24 h window is used up).
  static constexpr absl::Duration kMaxUpdateDeferral = absl::Hours(24);
  absl::Status DeferUpdate(absl::string_view component_id,
                           absl::Duration duration);
  // UpdateDeferredUntil: InfinitePast when no deferral is in force at `now`.
  absl::Time UpdateDeferredUntil() const;
  bool UpdateDeferred() const;  // UpdateDeferredUntil() > clock now
  // EndUpdateDeferral closes the window (the update installed or failed).
  void EndUpdateDeferral();
  // Install-step hook (power-loss tests): called after each durable step of
  // an install (flash write, staged flag, slot switch, boot attempt, booted,
  // confirmed, rolled back) with the step's name; a test serializes the
  // device there to model power loss at that instant. nullptr removes it.
  using InstallStepHook = std::function<void(absl::string_view step)>;
  void SetInstallStepHookForTest(InstallStepHook hook);

  // ---- Application runtime ----
  // LoadApp verifies an app image (stage below + Security Monitor), checks
  // its manifest (peripherals exist and are unclaimed, RAM, flash, storage
  // quota, a free M4 core for real-time apps), installs it to the active app
  // slot and starts it (measured into register 3).
  // Errors: Unauthenticated, InvalidArgument (manifest error),
  // ResourceExhausted (RAM / flash / core), FailedPrecondition (not running).
  absl::Status LoadApp(const v1::ImagePackage& package);
  absl::Status StopApp(absl::string_view component_id);
  bool AppRunning(absl::string_view component_id) const;
  // AccessPeripheral: the hardware firewall. PermissionDenied (recorded as
  // FIREWALL_VIOLATION) unless the app runs on the owning core and declared
  // the peripheral. `from_core` defaults to the app's core.
  absl::Status AccessPeripheral(absl::string_view component_id,
                                absl::string_view peripheral,
                                std::optional<Core> from_core = std::nullopt);
  // Connect: the OS outbound network firewall (AllowedConnections; "*.x"
  // wildcards). Real-time apps have no network.
  absl::Status Connect(absl::string_view component_id, absl::string_view host);
  // OsConnect: OS services' own connections. In kRecovery only the update
  // service host is reachable.
  absl::Status OsConnect(absl::string_view host);
  absl::Status CallApi(absl::string_view component_id, AppApi api);
  // Per-app mutable storage (encrypted by Pluton, quota from the manifest).
  absl::Status WriteMutableStorage(absl::string_view component_id,
                                   absl::string_view data);
  absl::StatusOr<std::string> ReadMutableStorage(
      absl::string_view component_id);
  // Mailbox between a high-level app and a real-time app (bounded queue).
  absl::Status MailboxSend(absl::string_view from_app, absl::string_view to_app,
                           absl::string_view message);
  absl::StatusOr<std::string> MailboxReceive(absl::string_view app);
  // App exit: non-zero exit code or a signal is a crash (APP_CRASH with the
  // code/signal); the app is restarted. Unconfirmed app updates that crash
  // app_crash_loop_threshold times roll the app slot back.
  absl::Status ReportAppExit(absl::string_view component_id, int exit_code,
                             int signal);
  uint32_t AppCrashCount(absl::string_view component_id) const;
  // Watchdog: apps with watchdog_timeout_ms must pet it; CheckWatchdogs
  // restarts apps that did not (WATCHDOG_RESET) and returns how many.
  absl::Status PetWatchdog(absl::string_view component_id);
  int CheckWatchdogs();
  uint32_t FreeAppRamKib() const;

  // ---- Error reporting ----
  std::vector<v1::ErrorEvent> DrainErrorEvents();
  // ReportAttestationFailure records ATTESTATION_FAILED ("attestation") with
  // the service's refusal (the twin calls it when attestation is refused,
  // not for a transport error it retries). Returns `refusal`.
  absl::Status ReportAttestationFailure(absl::Status refusal);
  // The ring, oldest first, read-only: an uploader reads events here and
  // removes them with AckErrorEvents only once the service acknowledged them
  // (the ring is part of Serialize(), so they survive a restart).
  const std::vector<v1::ErrorEvent>& error_events() const { return errors_; }
  // AckErrorEvents removes the events with sequence <= through_sequence.
  void AckErrorEvents(uint64_t through_sequence);
  size_t pending_error_events() const { return errors_.size(); }
  uint64_t dropped_error_events() const { return dropped_errors_; }

  // ---- Pluton status ----
  uint64_t boot_count() const;
  uint64_t reset_count() const;
  bool tampered() const;
  // AntiRollbackCounter(component) is the platform ("") counter: boot-chain
  // components (and app counters persisted before per-tenant keys).
  // AntiRollbackCounter(tenant, component) is an application's counter.
  uint32_t AntiRollbackCounter(absl::string_view component) const;
  uint32_t AntiRollbackCounter(absl::string_view tenant,
                               absl::string_view component) const;
  std::string Register(int i) const;
  // TriggerTamper models a tamper sensor (voltage/clock glitch, probe).
  void TriggerTamper(absl::string_view sensor);

  // ---- Persistence + memory ----
  absl::StatusOr<std::string> Serialize();
  size_t FootprintBytes() const;

  // ---- Fault injection (tests / attack scenarios) ----
  // ReplaceFlashImageForTest writes `stored` over `component` in the active
  // OS slot or the Secure World partition without any check (an attacker
  // with flash access).
  absl::Status ReplaceFlashImageForTest(absl::string_view component,
                                        const v1::StoredImage& stored);
  // CompromiseStageForTest: `component` no longer verifies the next stage
  // (a runtime exploit); the Security Monitor's own checks remain.
  void CompromiseStageForTest(absl::string_view component);

 private:
  struct App;
  Device(std::shared_ptr<const DeviceType> type, std::string signing_key,
         Clock* clock);

  absl::Status Record(v1::ErrorEvent::Kind kind, absl::string_view component,
                      absl::Status status, int exit_code = 0, int signal = 0);
  void Note(v1::ErrorEvent::Kind kind, absl::string_view component,
            absl::Status status, int exit_code = 0, int signal = 0);
  absl::Status VerifyAndMeasureChain();
  absl::Status CheckImage(const ImageRecord& img, absl::string_view expected,
                          absl::string_view verifier);
  absl::Status StartApp(const ImageRef& img);
  void StartInstalledApps();
  void RollBackOs(absl::string_view why);
  void RollBackApps(absl::string_view why);
  // At boot, before staged slots switch: PLANNED_RESTART per staged update.
  void NotePlannedRestart();
  void SaveErrorRing(v1::PersistedDeviceState* st) const;
  void RestoreErrorRing(const v1::PersistedDeviceState& st);
  void CommitCounters();
  App* FindApp(absl::string_view component_id);
  const App* FindApp(absl::string_view component_id) const;
  std::vector<ImageRef>& os_slot(int s) { return os_slots_[s]; }
  absl::Status InstallImage(const v1::ImagePackage& package, bool staged);

  std::shared_ptr<const DeviceType> type_;
  // ROM: platform image-signing public key (interned, shared).
  std::shared_ptr<const std::string> signing_key_;
  Clock* clock_;
  std::unique_ptr<Pluton> pluton_;
  std::unique_ptr<SecurityMonitor> sm_;
  BootState state_ = BootState::kOff;
  uint8_t active_os_ = 0;
  uint8_t active_app_ = 0;
  uint8_t os_attempts_ = 0;
  bool os_staged_ = false;
  bool os_pending_ = false;
  bool app_staged_ = false;
  bool app_pending_ = false;
  uint8_t compromised_stage_ = 0xff;  // boot-chain index, test hook
  uint32_t app_update_crashes_ = 0;
  uint64_t next_error_seq_ = 1;
  uint64_t dropped_errors_ = 0;
  std::array<ImageRef, 2> secure_world_;           // pluton-runtime, secmon
  std::array<std::vector<ImageRef>, 2> os_slots_;  // bootloader..os-services
  std::array<std::vector<ImageRef>, 2> app_slots_;
  std::vector<App> apps_;                  // running/loaded apps
  std::vector<uint8_t> peripheral_owner_;  // app index + 1; 0 = unclaimed
  std::vector<v1::ErrorEvent> errors_;     // ring, oldest first
  // Deferral window (unix ms, device clock); 0 = none.
  int64_t deferral_started_ms_ = 0;
  int64_t deferred_until_ms_ = 0;
  std::unique_ptr<InstallStepHook> install_step_hook_;  // tests only
  void InstallStep(absl::string_view step);
};

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_DEVICE_H_
