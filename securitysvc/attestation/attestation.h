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
// Automatic revocation: a rejection that proves the *genuine* device is
// compromised (a quote that verifies under the registered device key, over a
// fresh nonce issued to it, yet reports tamper events, carries an event log
// that does not replay to its registers or mislabels an image, measures an
// image the platform never signed, or runs below an anti-rollback counter) is
// handed to the injected RevocationSink. A quote that fails signature or
// nonce checks never triggers it: anyone can send those, so revoking on them
// would let an attacker revoke other tenants' devices.
//
// Thread-safety: safe for concurrent use.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_H_
#define SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_H_

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "protos/attestation.pb.h"
#include "securitysvc/attestation/nonce_store.h"
#include "securitysvc/attestation/record_writer.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/records.pb.h"

namespace sphere::attestation {

// Column families the Attestor needs in its store.
inline constexpr char kDevicesCf[] = "devices";  // id -> AttestationRecord
// Bounded per-device history (issue 13): two rings of kMaxHistoryEntries
// slots each, "<id>|a|NN" (successful attempts; the slot counter is the
// history_count of the device's record, kept in memory by the Attestor and
// reloaded from the records when it starts) and
// "<id>|r|NN" (refused attempts, at most one per failure_record_interval;
// the slot counter lives in the in-memory rate-limit table). A ring slot is
// overwritten in the same write batch that records the attempt, so a
// device never has more than 2 * kMaxHistoryEntries history keys. Stored
// strings are cut to the limits below (UTF-8 safe).
inline constexpr char kHistoryCf[] = "history";  // id|a|NN, id|r|NN -> record
inline constexpr uint32_t kMaxHistoryEntries = 32;
inline constexpr size_t kMaxHistoryReasonBytes = 256;
inline constexpr size_t kMaxHistoryOutcomeBytes = 32;
inline constexpr size_t kMaxHistoryComponentBytes = 64;
inline constexpr int kMaxHistoryVersions = 32;
std::vector<std::string> ColumnFamilies();

// RevocationRequest is the Attestor's decision that a genuine device is
// compromised and must be revoked.
struct RevocationRequest {
  std::string device_id;
  std::string tenant_id;
  std::string reason;  // "automatic: <what the quote proved>"
  // For "unsigned image" decisions: the measured hash the catalog did not
  // know. A shard whose catalog lags management may not have seen a freshly
  // released image yet, so the sink re-checks it against an up-to-date
  // catalog before revoking.
  std::string unknown_image_hash;
};

// RevocationSink receives automatic revocation decisions. The Attestor calls
// it on the attestation path, so implementations must not block: queue and
// return (see RevocationQueue). Thread-safe.
class RevocationSink {
 public:
  virtual ~RevocationSink() = default;
  virtual void RequestRevocation(RevocationRequest request) = 0;
};

class Attestor {
 public:
  struct Options {
    absl::Duration certificate_lifetime = absl::Hours(24);
    // Allowed clock skew for not_before.
    absl::Duration backdate = absl::Minutes(5);
    // Where automatic revocation decisions go; null disables them. Must
    // outlive the Attestor.
    RevocationSink* revocation_sink = nullptr;
    // Rejected attempts are recorded in the device's history at most once
    // per device per this interval (anyone can send junk for a known device
    // id; this bounds the writes). The rest are only counted in a metric.
    absl::Duration failure_record_interval = absl::Seconds(10);
    // Where records are written (the shard passes its GroupCommitWriter so
    // concurrent attestations share one WAL sync). Null: written on the
    // calling thread straight into the store. Must outlive the Attestor.
    RecordWriter* record_writer = nullptr;
  };
  Attestor(const catalog::CatalogView* catalog, store::Store* store,
           NonceStore* nonces, const auth::SessionTokens* tokens, Clock* clock,
           Options options);

  // MayChallenge: the checks GetChallenge makes before issuing a nonce
  // (valid id, known device, not revoked), so a caller can refuse early.
  absl::Status MayChallenge(absl::string_view device_id) const;
  absl::StatusOr<v1::GetChallengeResponse> GetChallenge(
      absl::string_view device_id);
  // IssueChallenge: GetChallenge without its MayChallenge checks, for a
  // caller that has just run MayChallenge(device_id) and been answered OK
  // (the batch path: each catalog lookup once per item, issue 14).
  absl::StatusOr<v1::GetChallengeResponse> IssueChallenge(
      absl::string_view device_id);
  // AttestAsync verifies the quote now (on the calling thread) and calls
  // `done` once the attestation record is durable, or with the rejection.
  // `done` runs exactly once, on the calling thread or on the record
  // writer's; it must not block. The response is only ever handed out
  // after its record is durable.
  using AttestDone = std::function<void(absl::StatusOr<v1::AttestResponse>)>;
  void AttestAsync(const v1::AttestRequest& request, AttestDone done);
  // Attest: AttestAsync, waiting for `done` (blocks until the record is
  // durable: never call it on a gRPC callback thread with a group writer).
  absl::StatusOr<v1::AttestResponse> Attest(const v1::AttestRequest& request);

  // LastRecord returns the device's latest successful attestation.
  absl::StatusOr<v1::AttestationRecord> LastRecord(absl::string_view device_id);
  // History returns the device's recorded attempts (at most the last
  // kMaxHistoryEntries successes and the last kMaxHistoryEntries refusals
  // kept), oldest first.
  absl::StatusOr<std::vector<v1::AttestationRecord>> History(
      absl::string_view device_id);

  // attested_device_count: how many devices have a successful attestation
  // record in this shard's store (counted once at construction, then kept
  // up to date). Reported to management in the shard heartbeat.
  uint64_t attested_device_count() const { return attested_devices_.load(); }

 private:
  // Compromise: set by Verify when the rejection proves the genuine device
  // is compromised.
  struct Compromise {
    std::string tenant_id;
    std::string reason;
    std::string unknown_image_hash;
  };
  // Prepared: a verified attestation waiting for its record to be durable;
  // the nonce is consumed and goes back to the device if the write fails.
  struct Prepared {
    v1::AttestResponse response;
    v1::AttestationRecord record;  // the device's new latest-success record
    std::string outcome;           // record outcome, for the metric
    std::string nonce;
    absl::Time nonce_expires;
  };
  absl::StatusOr<Prepared> Verify(const v1::AttestRequest& request,
                                  Compromise* compromise);
  // Reject: metric, history record, log and automatic revocation for a
  // rejected attempt.
  void Reject(const v1::AttestRequest& request, const absl::Status& status,
              const Compromise& compromise);
  void RecordFailure(absl::string_view device_id, const absl::Status& status);
  // AddRecordWithHistory puts the latest-success record and its history
  // ring entry (slot `history_count` % kMaxHistoryEntries) into `batch`.
  static void AddRecordWithHistory(store::WriteBatch* batch,
                                   v1::AttestationRecord* record,
                                   uint32_t history_count);

  const catalog::CatalogView* const catalog_;
  store::Store* const store_;
  NonceStore* const nonces_;
  const auth::SessionTokens* const tokens_;
  Clock* const clock_;
  const Options options_;
  absl::Mutex failure_mu_;
  // device id -> time of its last recorded failure and its refusal ring's
  // next slot (bounded: cleared when it grows past 1M entries).
  struct FailureRecord {
    absl::Time time;
    uint32_t next_slot = 0;
  };
  absl::flat_hash_map<std::string, FailureRecord> last_failure_record_
      ABSL_GUARDED_BY(failure_mu_);
  std::atomic<uint64_t> attested_devices_{0};
  std::unique_ptr<RecordWriter> own_writer_;  // when none was given
  RecordWriter* const writer_;
  // The success ring's next slot of every device with a latest-success
  // record (or one being written), striped by device id (issue 14: the
  // attestation path no longer reads the device's previous record to find
  // it). Filled at construction from the records in the store (their
  // history_count; a record that does not parse counts 0, as before), so a
  // restarted shard continues each ring where it stopped. Keyed by the
  // 32-byte binary id: 36 bytes per attested device plus the table's slack.
  // A device not in its stripe is attesting for the first time, which
  // counts it in attested_devices_ once its record is durable.
  static constexpr size_t kStripes = 32;
  using IdKey = std::array<uint8_t, 32>;
  struct IdKeyHash {
    size_t operator()(const IdKey& k) const;
  };
  struct HistoryStripe {
    absl::Mutex mu;
    absl::flat_hash_map<IdKey, uint32_t, IdKeyHash> history_count
        ABSL_GUARDED_BY(mu);
  };
  // IdKeyOf: the binary form of a device id; false unless `device_id` is 64
  // hex characters (every id Verify accepted is).
  static bool IdKeyOf(absl::string_view device_id, IdKey* key);
  HistoryStripe& StripeOf(const IdKey& key) {
    return history_stripes_[key[31] % kStripes];
  }
  std::array<HistoryStripe, kStripes> history_stripes_;
};

// ValidateDeviceId: 64 lowercase hex characters, else InvalidArgument.
absl::Status ValidateDeviceId(absl::string_view id);

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_ATTESTATION_H_
