#include "twin/twin.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/crypto/verified_issuers.h"

namespace sphere::twin {

const char* Twin::PhaseName(Phase p) {
  switch (p) {
    case Phase::kManufactured:
      return "manufactured";
    case Phase::kAwaitingChallenge:
      return "awaiting-challenge";
    case Phase::kAwaitingAttest:
      return "awaiting-attest";
    case Phase::kCertified:
      return "certified";
    case Phase::kBackoff:
      return "backoff";
    case Phase::kRefused:
      return "refused";
  }
  return "unknown";
}

Twin::Twin(std::unique_ptr<mcu::Device> device, const TwinConfig* config)
    : device_(std::move(device)), config_(config) {}

absl::Time Twin::next_wakeup() const {
  switch (phase_) {
    case Phase::kManufactured:
      return absl::InfinitePast();
    case Phase::kCertified:
      if (config_->error_upload != nullptr) {
        return std::min(
            absl::FromUnixMillis(wakeup_ms_),
            errors_ ? errors_->next_wakeup() : absl::InfinitePast());
      }
      return absl::FromUnixMillis(wakeup_ms_);
    case Phase::kBackoff:
      return absl::FromUnixMillis(wakeup_ms_);
    default:
      return absl::InfiniteFuture();
  }
}

absl::Time Twin::certificate_not_after() const {
  return cert_not_after_ms_ == 0 ? absl::InfinitePast()
                                 : absl::FromUnixMillis(cert_not_after_ms_);
}

Twin::Request Twin::OnTimer(absl::Time now) {
  if (now < next_wakeup()) return {};
  switch (phase_) {
    case Phase::kManufactured:
    case Phase::kBackoff:
      return StartAttestation();
    case Phase::kCertified:
      // Extension point: update checks and telemetry become further due
      // times here, each returning its own Request alternative.
      if (now >= absl::FromUnixMillis(wakeup_ms_)) return StartAttestation();
      if (config_->error_upload != nullptr) {
        if (!errors_)
          errors_ = std::make_unique<ErrorUploader>(config_->error_upload);
        if (auto r = errors_->OnTimer(now, *device_)) return *std::move(r);
      }
      return {};
    default:
      return {};
  }
}

Twin::Request Twin::StartAttestation() {
  if (device_->boot_state() == mcu::BootState::kOff) {
    boot_status_ = device_->Boot();
  }
  phase_ = Phase::kAwaitingChallenge;
  v1::GetChallengeRequest req;
  req.set_device_id(device_->device_id());
  req.set_min_catalog_revision(config_->min_catalog_revision);
  return req;
}

Twin::Request Twin::OnChallenge(
    absl::Time now, absl::StatusOr<v1::GetChallengeResponse> response) {
  if (phase_ != Phase::kAwaitingChallenge) return {};
  if (!response.ok()) return Fail(now, NoteRefusal(response.status()));
  auto quote = device_->Quote(response->nonce());
  if (!quote.ok()) return Fail(now, quote.status());
  phase_ = Phase::kAwaitingAttest;
  v1::AttestRequest req;
  req.set_device_id(device_->device_id());
  *req.mutable_quote() = std::move(*quote);
  return req;
}

Twin::Request Twin::OnAttest(
    absl::Time now, const absl::StatusOr<v1::AttestResponse>& response) {
  if (phase_ != Phase::kAwaitingAttest) return {};
  if (!response.ok()) return Fail(now, NoteRefusal(response.status()));
  if (absl::Status s = CheckChain(now, *response); !s.ok()) {
    return Fail(now, s);
  }
  const int64_t now_ms = absl::ToUnixMillis(now);
  const int64_t not_after = response->not_after_unix_ms();
  const double lifetime = static_cast<double>(not_after - now_ms);
  phase_ = Phase::kCertified;
  retries_ = 0;
  last_error_ = absl::OkStatus();
  cert_not_after_ms_ = not_after;
  wakeup_ms_ =
      now_ms + static_cast<int64_t>(lifetime * config_->renew_at_fraction);
  outcome_ = static_cast<uint8_t>(response->outcome());
  session_token_ = response->session_token();
  session_token_.shrink_to_fit();
  if (config_->keep_certificate != nullptr) {
    KeepCertificate(response->certificate_chain_pem());
  }
  if (listener_ != nullptr) listener_->OnAttested(now);
  return {};
}

absl::Status Twin::CheckChain(absl::Time now,
                              const v1::AttestResponse& r) const {
  if (r.session_token().size() > kMaxSessionTokenBytes) {
    return absl::DataLossError(
        absl::StrCat("service issued device ", device_->device_id(),
                     " a session token of ", r.session_token().size(),
                     " bytes (limit ", kMaxSessionTokenBytes, ")"));
  }
  if (r.not_after_unix_ms() <= absl::ToUnixMillis(now)) {
    return absl::DataLossError(
        absl::StrCat("service issued device ", device_->device_id(),
                     " a certificate that is already expired"));
  }
  if (!config_->verify_chain) return absl::OkStatus();
  auto chain = crypto::SplitPemChain(r.certificate_chain_pem());
  if (chain.size() < 2) {
    return absl::DataLossError(
        absl::StrCat("service returned an incomplete chain (", chain.size(),
                     " certificates) for device ", device_->device_id()));
  }
  if (absl::Status s =
          crypto::VerifyChain(chain[0], chain[1], config_->root_ca_pem, now,
                              /*require_client_auth=*/true);
      !s.ok()) {
    return absl::DataLossError(
        absl::StrCat("issued chain for device ", device_->device_id(),
                     " does not verify to the platform root: ", s.message()));
  }
  auto leaf = crypto::ParseCertificate(chain[0]);
  if (!leaf.ok()) return leaf.status();
  if (leaf->public_key != device_->CertificatePublicKey()) {
    return absl::DataLossError(
        absl::StrCat("issued certificate is not for device ",
                     device_->device_id(), "'s certificate key"));
  }
  return absl::OkStatus();
}

absl::Status Twin::NoteRefusal(absl::Status status) {
  // Issue 12: a refusal (not a transient error) is an ATTESTATION_FAILED
  // event in the device's error ring.
  if (client::IsRetryable(status.code())) return status;
  return device_->ReportAttestationFailure(std::move(status));
}

Twin::Request Twin::Fail(absl::Time now, absl::Status status) {
  last_error_ = std::move(status);
  if (!client::IsRetryable(last_error_.code())) {
    phase_ = Phase::kRefused;
    return {};
  }
  // Jitter seed: device key bits, attempt and time, so twins that failed
  // together spread out.
  const std::string key = device_->public_key();
  uint64_t seed = 0;
  if (key.size() > sizeof(seed)) {
    std::memcpy(&seed, key.data() + 1, sizeof(seed));  // skip SEC1 0x04
  }
  seed ^= (static_cast<uint64_t>(retries_) << 48) ^
          static_cast<uint64_t>(absl::ToUnixNanos(now));
  const absl::Duration delay = client::BackoffDelay(
      config_->backoff, retries_, client::JitterFraction(seed));
  if (retries_ < UINT16_MAX) ++retries_;
  phase_ = Phase::kBackoff;
  wakeup_ms_ = absl::ToUnixMillis(now + delay);
  return {};
}

void Twin::Retry(absl::Time now) {
  if (phase_ != Phase::kRefused) return;
  phase_ = Phase::kBackoff;
  retries_ = 0;
  wakeup_ms_ = absl::ToUnixMillis(now);
}

Twin::Request Twin::OnErrorsUploaded(
    absl::Time now, const absl::StatusOr<v1::UploadErrorsResponse>& answer) {
  if (errors_) errors_->OnUploaded(now, answer);
  return {};
}

void Twin::RequestAttestation(absl::Time now) {
  if (phase_ != Phase::kCertified && phase_ != Phase::kBackoff &&
      phase_ != Phase::kRefused) {
    return;  // never attested (due already) or mid-attestation
  }
  phase_ = Phase::kBackoff;
  retries_ = 0;
  wakeup_ms_ = absl::ToUnixMillis(now);
}

void Twin::KeepCertificate(const std::string& chain_pem) {
  kept_.reset();  // the old certificate is replaced, or nothing is kept
  static constexpr char kEnd[] = "-----END CERTIFICATE-----";
  const size_t end = chain_pem.find(kEnd);
  if (end == std::string::npos) return;
  size_t rest = end + sizeof(kEnd) - 1;
  while (rest < chain_pem.size() &&
         (chain_pem[rest] == '\n' || chain_pem[rest] == '\r')) {
    ++rest;
  }
  auto der = crypto::CertificatePemToDer(
      absl::string_view(chain_pem).substr(0, rest));
  if (!der.ok() || der->size() > kMaxKeptCertificateBytes) return;
  const IssuerPool::Issuers* issuers = config_->keep_certificate->Intern(
      absl::string_view(chain_pem).substr(rest));
  if (issuers == nullptr) return;
  kept_ = std::make_unique<KeptCertificate>();
  kept_->issuers = issuers;
  kept_->der = *std::move(der);
  kept_->der.shrink_to_fit();
}

absl::Status Twin::CheckKept(absl::Time now) const {
  if (kept_ == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "device ", device_->device_id(), " keeps no certificate: attest first"));
  }
  if (absl::ToUnixMillis(now) >= cert_not_after_ms_) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device_->device_id(),
                     "'s kept certificate has expired: attest again"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Twin::CertificateChainPem(absl::Time now) const {
  if (absl::Status s = CheckKept(now); !s.ok()) return s;
  return absl::StrCat(crypto::CertificateDerToPem(kept_->der),
                      kept_->issuers->pem);
}

absl::StatusOr<Twin::KeptChainDer> Twin::CertificateChainDer(
    absl::Time now) const {
  if (absl::Status s = CheckKept(now); !s.ok()) return s;
  if (kept_->issuers->der.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("device ", device_->device_id(),
                     "'s kept issuers are not all PEM certificates"));
  }
  return KeptChainDer{kept_->der, &kept_->issuers->der};
}

size_t Twin::FootprintBytes() const {
  size_t bytes = sizeof(Twin) + device_->FootprintBytes();
  if (errors_) {
    bytes += sizeof(ErrorUploader);
    // pending events: counted by their protobuf size (an estimate)
    bytes += errors_->pending() * sizeof(v1::ErrorEvent);
  }
  if (session_token_.capacity() > 15) bytes += session_token_.capacity() + 1;
  if (kept_) bytes += sizeof(KeptCertificate) + kept_->der.capacity() + 1;
  return bytes;
}

}  // namespace sphere::twin
