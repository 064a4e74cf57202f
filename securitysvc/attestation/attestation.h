// Attestor: the core of the AttestationService (no gRPC). It hands out
// one-time challenges and verifies quotes over measured boot:
//
//   1. the device is registered, claimed and not revoked;
//   2. the quote is signed by the device's registered key;
//   3. the nonce was issued to this device, is fresh, and is used once;
//   4. the event log replays to the measurement registers; no tamper events;
//   5. every measured image is one the platform signed (known hash, matching
//      component and version) and no anti-rollback counter is ahead of it;
//   6. versions are compared with what the device's group should run.
//
// Up to date → a 24 h clientAuth certificate for the device-held key named in
// the quote, chained device → tenant CA → platform root, plus a session
// token. Genuine but outdated → the same with scope "update-only". Anything
// else is rejected with a specific error and recorded in the device's
// history; a rejected attempt never consumes the legitimate nonce, never
// issues anything and never changes the device's state.
//
// Thread-safety: safe for concurrent use.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_H_
#define SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "protos/attestation.pb.h"
#include "securitysvc/attestation/nonce_store.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/records.pb.h"

namespace sphere::attestation {

// Column families the Attestor needs in its store.
inline constexpr char kDevicesCf[] = "devices";  // id -> AttestationRecord
inline constexpr char kHistoryCf[] = "history";  // id|ms|seq -> record
std::vector<std::string> ColumnFamilies();

class Attestor {
 public:
  struct Options {
    absl::Duration certificate_lifetime = absl::Hours(24);
    // Allowed clock skew for not_before.
    absl::Duration backdate = absl::Minutes(5);
  };
  Attestor(const catalog::CatalogView* catalog, store::Store* store,
           NonceStore* nonces, const auth::SessionTokens* tokens, Clock* clock,
           Options options);

  absl::StatusOr<v1::GetChallengeResponse> GetChallenge(
      absl::string_view device_id);
  absl::StatusOr<v1::AttestResponse> Attest(const v1::AttestRequest& request);

  // LastRecord returns the device's latest successful attestation.
  absl::StatusOr<v1::AttestationRecord> LastRecord(absl::string_view device_id);
  // History returns every recorded attempt for the device, oldest first.
  absl::StatusOr<std::vector<v1::AttestationRecord>> History(
      absl::string_view device_id);

 private:
  absl::StatusOr<v1::AttestResponse> Verify(const v1::AttestRequest& request,
                                            v1::AttestationRecord* record);
  void RecordFailure(absl::string_view device_id, const absl::Status& status);

  const catalog::CatalogView* const catalog_;
  store::Store* const store_;
  NonceStore* const nonces_;
  const auth::SessionTokens* const tokens_;
  Clock* const clock_;
  const Options options_;
  std::atomic<uint64_t> seq_{0};
};

// ValidateDeviceId: 64 lowercase hex characters, else InvalidArgument.
absl::Status ValidateDeviceId(absl::string_view id);

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_H_
