// Twin: one simulated device as a library object. A Twin owns its MCU model
// (mcu::Device: Pluton keys as 32-byte scalars, flash, boot state) and the
// device's protocol state machine towards the Security Service:
//
//   kManufactured --OnTimer--> kAwaitingChallenge --OnChallenge--> (quote)
//   kAwaitingAttest --OnAttest ok--> kCertified --OnTimer at renew time-->
//   kAwaitingChallenge ... (renewal before expiry)
//   any step, retryable failure (client::IsRetryable) --> kBackoff
//       --OnTimer after a jittered gRPC-style backoff--> kAwaitingChallenge
//   any step, refusal (FAILED_PRECONDITION, NOT_FOUND, PERMISSION_DENIED,
//       a chain that does not verify, ...) --> kRefused (stays until Retry())
//
// Event-driven: a Twin has no thread, channel, timer or file. Whoever drives
// it (TwinDriver, the twin binary, the load generator) calls OnTimer(now)
// once now >= next_wakeup(), and OnChallenge / OnAttest with the transport's
// answer to the request the Twin returned. Each event returns the next
// request to send (or none). Persistence is the caller's (twin/state_file.h);
// the issued chain is handed to the caller; only its expiry and the session
// token are kept, and the device certificate when the config asks for it
// (TwinConfig::keep_certificate).
//
// Extension points: later protocols (update check, error upload, telemetry)
// add an alternative to Twin::Request, a due time checked in OnTimer while
// kCertified (see Twin::OnTimer), and an On<Response> handler; the device
// model already offers what they need (StageUpdate, DrainErrorEvents).
//
// Memory: per-twin state is the device model plus a few words (phase,
// retries, wake-up, certificate expiry, session token); everything shared
// (device type, trusted root, policy) lives in one TwinConfig per process.
//
// Thread-safety: not thread-safe; drive one Twin from one thread at a time.
//
// Example:
//   TwinConfig config{.root_ca_pem = root};
//   Twin twin(std::move(device), &config);
//   Twin::Request r = twin.OnTimer(clock->Now());   // a GetChallengeRequest
//   ... transport answers ... r = twin.OnChallenge(now, answer);  // Attest
//   ... r = twin.OnAttest(now, answer);  // none; twin.phase() == kCertified
#ifndef SPHERE_TWIN_TWIN_H_
#define SPHERE_TWIN_TWIN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/backoff.h"
#include "mcu-model/device.h"
#include "protos/attestation.pb.h"
#include "protos/error_reporting.pb.h"
#include "twin/error_uploader.h"
#include "twin/issuer_pool.h"

namespace sphere::twin {

// Largest session token a twin keeps (tokens are a MAC plus a few fields,
// well under 200 bytes); larger answers are refused, not stored.
inline constexpr size_t kMaxSessionTokenBytes = 512;
// Largest device certificate (DER) a twin keeps; larger ones are not kept.
inline constexpr size_t kMaxKeptCertificateBytes = 4096;

// TwinConfig is shared by every Twin of a process and must outlive them.
struct TwinConfig {
  // PEM roots an issued chain must verify to (the platform root CA).
  std::string root_ca_pem;
  // Verify issued chains (leaf -> tenant CA -> root, key = the device's
  // certificate key). Only a load generator measuring the service alone
  // turns this off.
  bool verify_chain = true;
  // Retry policy for transient failures (gRPC connection-backoff defaults).
  client::BackoffPolicy backoff;
  // Renew once this fraction of the certificate's lifetime has passed.
  double renew_at_fraction = 0.8;
  // Catalog revision the shard must have applied (0 = any); see
  // GetChallengeRequest.min_catalog_revision.
  int64_t min_catalog_revision = 0;
  // Error upload (issue 12): when set, a certified twin uploads its
  // device's error ring (ErrorUploader) and its driver must send
  // UploadErrorsRequest and answer OnErrorsUploaded. Null: no uploads.
  const ErrorUploadPolicy* error_upload = nullptr;
  // Certificate keeping (issue 14): when set, a certified twin keeps its
  // device certificate (DER, ~0.5 KB) and a pointer to the chain's issuers
  // interned here (one copy per process), so it can prove itself to a
  // relying party (the vendor cloud) without attesting again
  // (Twin::CertificateChainPem). Null: nothing kept. Must outlive the twins.
  IssuerPool* keep_certificate = nullptr;
};

// AttestationListener hears of every attestation a Twin accepts (the
// update agent, twin/update_agent.h, checks for updates and confirms an
// install then). Called on the thread driving the Twin, inside OnAttest.
class AttestationListener {
 public:
  virtual ~AttestationListener() = default;
  virtual void OnAttested(absl::Time now) = 0;
};

class Twin {
 public:
  enum class Phase : uint8_t {
    kManufactured,       // never attested; due now
    kAwaitingChallenge,  // GetChallenge sent
    kAwaitingAttest,     // Attest sent
    kCertified,          // holds a certificate; renews at next_wakeup()
    kBackoff,            // transient failure; retries at next_wakeup()
    kRefused,            // refused; waits for Retry()
  };
  static const char* PhaseName(Phase p);

  // Request is what the Twin asks its driver to send next.
  using Request = std::variant<std::monostate, v1::GetChallengeRequest,
                               v1::AttestRequest, v1::UploadErrorsRequest>;

  // `config` must outlive the Twin. The device is powered on lazily (first
  // OnTimer) if it is off.
  Twin(std::unique_ptr<mcu::Device> device, const TwinConfig* config);

  // OnTimer: call when now >= next_wakeup(). Starts an attestation when one
  // is due (first attestation, renewal, retry after backoff).
  Request OnTimer(absl::Time now);
  // OnChallenge: the answer to the GetChallengeRequest this Twin returned.
  // On success the device quotes the nonce and the Twin returns the
  // AttestRequest. Ignored (returns none) in any other phase.
  Request OnChallenge(absl::Time now,
                      absl::StatusOr<v1::GetChallengeResponse> response);
  // OnAttest: the answer to the AttestRequest. On success the chain is
  // verified and the Twin is kCertified until the renewal time.
  Request OnAttest(absl::Time now,
                   const absl::StatusOr<v1::AttestResponse>& response);
  // OnErrorsUploaded: the answer to an UploadErrorsRequest (any phase).
  Request OnErrorsUploaded(
      absl::Time now, const absl::StatusOr<v1::UploadErrorsResponse>& answer);
  // The error uploader; null until the first upload check.
  const ErrorUploader* error_uploader() const { return errors_.get(); }
  // Retry leaves kRefused (e.g. after an operator claimed the device): the
  // next OnTimer(now) starts a new attestation.
  void Retry(absl::Time now);
  // RequestAttestation makes an attestation due at `now` from any settled
  // phase (kCertified, kBackoff, kRefused), e.g. after an update reboot.
  void RequestAttestation(absl::Time now);
  // `listener` (may be nullptr) must outlive the Twin or be reset first.
  void set_attestation_listener(AttestationListener* listener) {
    listener_ = listener;
  }

  Phase phase() const { return phase_; }
  // InfiniteFuture while a response is awaited or the twin is refused.
  absl::Time next_wakeup() const;
  // Why the last attempt failed (OK after a success).
  const absl::Status& last_error() const { return last_error_; }
  // Consecutive transient failures since the last success.
  int retries() const { return retries_; }
  bool certified() const { return cert_not_after_ms_ != 0; }
  absl::Time certificate_not_after() const;
  v1::AttestationOutcome outcome() const {
    return static_cast<v1::AttestationOutcome>(outcome_);
  }
  const std::string& session_token() const { return session_token_; }
  // CertificateChainPem: the kept chain (device certificate, then its
  // issuers) while the certificate is valid at `now`. NotFound when none is
  // kept (never issued, keeping off, or dropped), FailedPrecondition when it
  // has expired: attest again first (RequestAttestation).
  absl::StatusOr<std::string> CertificateChainPem(absl::Time now) const;
  // KeptChainDer: the kept chain as DER certificates, the device
  // certificate (a copy) and its issuers (interned in the IssuerPool, as
  // long as it lives), so nothing is PEM-encoded per proof.
  struct KeptChainDer {
    std::string certificate;
    const std::vector<std::string>* issuers = nullptr;
  };
  // CertificateChainDer: CertificateChainPem's chain as DER, with its
  // errors; also FailedPrecondition when the issuers have no DER form (the
  // PEM chain is still there).
  absl::StatusOr<KeptChainDer> CertificateChainDer(absl::Time now) const;
  bool keeps_certificate() const { return kept_ != nullptr; }
  // DropKeptCertificate forgets the kept certificate (the twin stays
  // certified; proving needs a new attestation).
  void DropKeptCertificate() { kept_.reset(); }

  mcu::Device& device() { return *device_; }
  const mcu::Device& device() const { return *device_; }
  // Boot status of the last power-on (a failed secure boot leaves the device
  // in recovery; it still attests and the service sees the failure).
  const absl::Status& boot_status() const { return boot_status_; }

  // FootprintBytes: heap and inline bytes this twin owns (device included).
  size_t FootprintBytes() const;

 private:
  Request StartAttestation();
  absl::Status NoteRefusal(absl::Status status);
  Request Fail(absl::Time now, absl::Status status);
  absl::Status CheckChain(absl::Time now, const v1::AttestResponse& r) const;
  void KeepCertificate(const std::string& chain_pem);

  absl::Status CheckKept(absl::Time now) const;

  struct KeptCertificate {
    // interned in config_->keep_certificate
    const IssuerPool::Issuers* issuers;
    std::string der;             // the device certificate
  };

  std::unique_ptr<mcu::Device> device_;
  const TwinConfig* config_;
  std::unique_ptr<ErrorUploader> errors_;  // with config_->error_upload
  std::unique_ptr<KeptCertificate> kept_;  // with config_->keep_certificate

  AttestationListener* listener_ = nullptr;
  std::string session_token_;
  absl::Status last_error_;
  absl::Status boot_status_;
  int64_t wakeup_ms_ = 0;          // unix ms; see next_wakeup()
  int64_t cert_not_after_ms_ = 0;  // 0 = never certified
  uint16_t retries_ = 0;
  Phase phase_ = Phase::kManufactured;
  uint8_t outcome_ = 0;
};

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_TWIN_H_
