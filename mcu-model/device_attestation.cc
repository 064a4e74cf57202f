// Device attestation: quotes and certificate-key signatures through the
// Security Monitor, and the Normal World SMC gate to Pluton.
#include "absl/strings/str_cat.h"
#include "mcu-model/device.h"
#include "mcu-model/device_internal.h"

namespace sphere::mcu {

// ------------------------------------------------------------- attestation

absl::StatusOr<v1::Quote> Device::Quote(absl::string_view nonce) {
  if (state_ != BootState::kRunning) {
    return Record(v1::ErrorEvent::ATTESTATION_FAILED, "attestation",
                  absl::FailedPreconditionError(absl::StrCat(
                      "cannot quote: device is ", BootStateName(state_))));
  }
  absl::StatusOr<v1::Quote> q = pluton_->Quote(sm_->token(), nonce);
  if (!q.ok()) return Record(v1::ErrorEvent::TAMPER, "pluton", q.status());
  return q;
}

absl::StatusOr<std::string> Device::SignWithCertificateKey(
    absl::string_view msg) {
  absl::StatusOr<std::string> sig =
      pluton_->SignWithCertificateKey(sm_->token(), msg);
  if (!sig.ok()) return Record(v1::ErrorEvent::TAMPER, "pluton", sig.status());
  return sig;
}

std::string Device::ExportCertificateKeyForTls() const {
  return pluton_->ExportCertificateKeyForTls(sm_->token());
}

absl::StatusOr<std::string> Device::SecureMonitorCall(NormalWorldCaller caller,
                                                      absl::string_view op,
                                                      absl::string_view arg) {
  if (caller != NormalWorldCaller::kSupervisor) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, "security-monitor",
                  absl::PermissionDeniedError(absl::StrCat(
                      "Security Monitor call '", op,
                      "' refused: Normal World user mode cannot reach "
                      "Pluton")));
  }
  if (op == "quote") {
    absl::StatusOr<v1::Quote> q = Quote(arg);
    if (!q.ok()) return q.status();
    return q->SerializeAsString();
  }
  if (op == "cert-sign") return SignWithCertificateKey(arg);
  return Record(v1::ErrorEvent::MANIFEST_VIOLATION, "security-monitor",
                absl::InvalidArgumentError(
                    absl::StrCat("unknown Security Monitor call '", op, "'")));
}

}  // namespace sphere::mcu
