// Pluton: the model of the on-die security subsystem (hardware root of trust).
//
// Contract:
//  * The P-256 device key is generated inside from Pluton's RNG and never
//    leaves: there is no accessor for its scalar. The API offers Sign-only
//    uses (quotes, certificate-key signatures) and key derivation.
//  * RNG: a seeded deterministic DRBG (HMAC-SHA256(seed, counter)) or the OS
//    CSPRNG. Every draw passes an entropy-detection unit (repetition and
//    low-diversity tests); a stuck or low-entropy source raises a tamper event.
//  * Measured boot: kNumRegisters SHA-256 registers + event log (quote.h).
//  * Anti-rollback counters (fuses) only move up.
//  * Tamper: after a tamper event Pluton refuses certificate-key signatures
//    but still signs quotes: every quote carries the latched
//    tamper count, so the tamper evidence reaches the Security Service signed
//    by the genuine device key (which then revokes the device automatically).
//
// Small TCB: every operation requires a SecureWorldToken, which only the
// Security Monitor (Secure World) can construct. Normal World code cannot
// reach Pluton except through the Security Monitor.
//
// Not thread-safe: one device is driven by one thread at a time.
#ifndef SPHERE_MCU_MODEL_PLUTON_H_
#define SPHERE_MCU_MODEL_PLUTON_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/crypto/crypto.h"
#include "mcu-model/image_record.h"
#include "mcu-model/quote.h"
#include "protos/device.pb.h"

namespace sphere::mcu {

class SecurityMonitor;

// SecureWorldToken proves the caller runs in the Secure World.
class SecureWorldToken {
 private:
  SecureWorldToken() = default;
  friend class SecurityMonitor;
};

// EntropySource returns `n` raw bytes from the (modelled) noise source.
using EntropySource = std::function<std::string(size_t n)>;

class Pluton {
 public:
  struct Options {
    std::optional<std::string> seed;  // deterministic mode when set
    EntropySource entropy_for_test;   // overrides the noise source
  };

  // Create generates the device key from the RNG. Errors: Internal if the
  // entropy unit rejects the source before a key could be generated.
  static absl::StatusOr<std::unique_ptr<Pluton>> Create(Options options);
  // FromSecrets rebuilds Pluton from unsealed secrets (device scalar, DRBG
  // seed and counter) — used by Device::Restore only.
  static absl::StatusOr<std::unique_ptr<Pluton>> FromSecrets(
      absl::string_view secrets, uint64_t rng_counter,
      EntropySource entropy_for_test);

  // Public data (no token needed).
  std::string public_key() const {
    return std::string(reinterpret_cast<const char*>(public_key_.data()),
                       public_key_.size());
  }
  std::string device_id() const;
  std::string certificate_public_key() const {
    return std::string(reinterpret_cast<const char*>(cert_public_.data()),
                       cert_public_.size());
  }

  // RNG through the entropy-detection unit. A failing source records a
  // tamper event and returns FailedPrecondition.
  absl::StatusOr<std::string> RandomBytes(const SecureWorldToken&, size_t n);
  // SelfTest draws one block through the entropy unit (run at every boot).
  absl::Status SelfTest(const SecureWorldToken& t) {
    return RandomBytes(t, 32).status();
  }

  // Measured boot.
  void ResetMeasurements(const SecureWorldToken&);
  void Measure(const SecureWorldToken&, ImageRef image);
  const std::vector<ImageRef>& event_log() const { return event_log_; }
  std::string Register(int i) const;

  // Anti-rollback counters (boot-chain components and apps), keyed by
  // (tenant, component): tenant is the application image's owning tenant
  // (ImageHeader.tenant_id), "" for boot-chain components. Another tenant's
  // "app:dw100" v999 thus never raises the floor of ours.
  uint32_t Counter(absl::string_view tenant, absl::string_view component) const;
  uint32_t Counter(absl::string_view component) const {
    return Counter("", component);
  }
  // AdvanceCounter raises the counter to `version` (never lowers it).
  void AdvanceCounter(const SecureWorldToken&, absl::string_view tenant,
                      absl::string_view component, uint32_t version);
  // counters() lists the boot-chain counters (in boot order) then apps'.
  std::vector<v1::AntiRollbackCounter> counters() const;

  // Boot and reset counts.
  void CountBoot(const SecureWorldToken&) { ++boot_count_; }
  void CountReset(const SecureWorldToken&) { ++reset_count_; }
  uint64_t boot_count() const { return boot_count_; }
  uint64_t reset_count() const { return reset_count_; }

  // Tamper counter-measures.
  void Tamper(const SecureWorldToken&) {
    tampered_ = true;
    ++tamper_events_;
  }
  bool tampered() const { return tampered_; }
  uint32_t tamper_events() const { return tamper_events_; }

  // Quote signs nonce + registers + event log (+digest) + counters + counts
  // with the device key. After a tamper event the quote is still signed and
  // reports tamper_events > 0 (the service refuses and revokes on it).
  absl::StatusOr<v1::Quote> Quote(const SecureWorldToken&,
                                  absl::string_view nonce) const;

  // Certificate key: derived from the device key (HMAC-SHA256(scalar,
  // "sphere-cert-key-v1"|ctr) reduced to a valid scalar). Sign only.
  absl::StatusOr<std::string> SignWithCertificateKey(
      const SecureWorldToken&, absl::string_view message) const;
  // Models the TLS offload: the twin process needs the certificate key as
  // PEM for gRPC's TLS stack. The DEVICE key has no such export.
  std::string ExportCertificateKeyForTls(const SecureWorldToken&) const;

  // Device storage encryption (AES-256-GCM under a key derived from the
  // device key; the nonce comes from the RNG). Unauthenticated on tamper.
  absl::StatusOr<std::string> SealStorage(const SecureWorldToken&,
                                          absl::string_view plaintext,
                                          absl::string_view context);
  absl::StatusOr<std::string> UnsealStorage(const SecureWorldToken&,
                                            absl::string_view sealed,
                                            absl::string_view context) const;

  // Persistence support (Device::Serialize seals these under the fuse key).
  std::string SealableSecrets(const SecureWorldToken&) const;
  bool seeded() const { return seeded_; }
  uint64_t rng_counter() const { return rng_counter_; }
  void RestoreCounters(const SecureWorldToken&,
                       const std::vector<v1::AntiRollbackCounter>& counters,
                       uint64_t boots, uint64_t resets, uint32_t tamper_events,
                       bool tampered);

  size_t FootprintBytes() const;

 private:
  Pluton() = default;
  absl::Status InitKey();
  crypto::EcPrivateKey DeviceKey() const;
  crypto::EcPrivateKey DeriveKey(absl::string_view label) const;
  std::string RawEntropy(size_t n);

  std::array<uint8_t, 32> scalar_{};
  bool seeded_ = false;
  bool tampered_ = false;
  uint32_t tamper_events_ = 0;
  uint32_t boot_count_ = 0;
  uint32_t reset_count_ = 0;
  uint64_t rng_counter_ = 0;
  uint64_t last_block_tag_ = 0;  // repetition test
  std::array<std::array<uint8_t, 32>, kNumRegisters> registers_{};
  std::array<uint8_t, 65> public_key_{};     // SEC1 (cached)
  std::array<uint8_t, 65> cert_public_{};    // SEC1 (cached)
  std::array<uint32_t, 5> boot_counters_{};  // BootChainComponents() order
  std::vector<ImageRef> event_log_;
  std::vector<v1::AntiRollbackCounter> app_counters_;
  std::unique_ptr<EntropySource> entropy_for_test_;
  // Seeded mode, during key generation only.
  std::unique_ptr<std::string> keygen_seed_;
};

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_PLUTON_H_
