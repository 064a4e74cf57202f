// RevocationQueue: the RevocationSink a shard gives its Attestor. Decisions
// are queued (bounded, one entry per device) and delivered by one worker
// thread through `revoke` (in the shard: ManagementService.RevokeDevice as
// an internal caller), so attestation latency never waits on management.
// Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
// ABORTED, INTERNAL, UNKNOWN) are retried with capped exponential backoff up
// to `max_attempts`; any other failure is final and logged. When the queue is
// full a new decision is dropped (and counted): the device's next
// compromised attestation decides again, so nothing is lost for good.
//
// Example:
//   RevocationQueue q([&](const RevocationRequest& r) { return Revoke(r); },
//                     {});
//   Attestor::Options o;
//   o.revocation_sink = &q;
//
// Thread-safety: RequestRevocation from any thread; Stop from one.
#ifndef SPHERE_SECURITYSVC_ATTESTATION_REVOCATION_QUEUE_H_
#define SPHERE_SECURITYSVC_ATTESTATION_REVOCATION_QUEUE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "securitysvc/attestation/attestation.h"

namespace sphere::attestation {

class RevocationQueue final : public RevocationSink {
 public:
  struct Options {
    size_t capacity = 1024;
    int max_attempts = 8;
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(10);
  };
  using RevokeFn = std::function<absl::Status(const RevocationRequest &)>;

  RevocationQueue(RevokeFn revoke, Options options);
  ~RevocationQueue() override;

  // RequestRevocation queues `request` and returns at once. A device already
  // queued (or being delivered) is not queued twice.
  void RequestRevocation(RevocationRequest request) override;
  // Stop ends the worker after the delivery in progress; the rest is dropped.
  void Stop();
  // WaitIdle blocks until nothing is queued or in flight (or timeout).
  bool WaitIdle(absl::Duration timeout);

  uint64_t delivered() const;  // revoke returned OK
  uint64_t failed() const;     // final failure or attempts exhausted
  uint64_t dropped() const;    // queue full

 private:
  void Run();

  const RevokeFn revoke_;
  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<RevocationRequest> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> pending_ ABSL_GUARDED_BY(mu_);
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread worker_;
};

// IsRetryable: whether a failed revoke is worth another attempt.
bool IsRetryable(const absl::Status &status);

}  // namespace sphere::attestation

#endif  // SPHERE_SECURITYSVC_ATTESTATION_REVOCATION_QUEUE_H_
