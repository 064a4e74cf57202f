// ErrorUploader: a twin's error-report uploader (issue 12, device side).
// Event-driven like Twin: no thread, channel, timer or file. The owner calls
// OnTimer(now, device) when now >= next_wakeup() (and may call it any time,
// e.g. after an event that could have recorded errors); when a batch is due
// it returns the UploadErrorsRequest to send, and OnUploaded(now, answer)
// must follow with the transport's answer before the next batch.
//
// Events come from the device's bounded error ring (mcu::Device,
// error_events(); the ring drops its oldest event when full and counts it)
// and STAY there until the service acknowledges them (AckErrorEvents): the
// ring is part of the device's persisted state, so events of a failed
// upload, or of a batch in flight when the twin process dies, are sent
// again after the restart (the service deduplicates by sequence). The
// uploader collects (takes note of the newest sequence) only while no batch
// is in flight; collected events are `pending`, at most `max_pending`
// (beyond: the oldest are removed and counted as dropped). Every upload
// carries dropped_events = the device's count + ours (cumulative, so a
// retry is idempotent). Each event gets its component's installed version
// when it has none (issues group by release).
//
// Timing: the first event waits `batch_delay` for company (a crash loop
// uploads as one batch); `max_batch` pending events go at once. Failures:
// transient (client::IsRetryable) -> the same batch again after a jittered
// exponential backoff (gRPC connection-backoff); INVALID_ARGUMENT -> the
// batch can never be accepted: dropped and counted; any other refusal ->
// kept, retried after the policy's maximum backoff. The service deduplicates
// by (device, sequence), so a batch whose answer was lost is simply resent.
//
// Memory: a few counters (the events live in the device's ring; the policy
// is shared). The device passed to OnTimer must outlive the uploader (the
// Twin owns both); OnUploaded acknowledges into it.
// Thread-safety: not thread-safe; one owner thread (like Twin).
//
// Example:
//   ErrorUploader up(&policy);
//   if (auto req = up.OnTimer(now, device)) send(*req);   // later:
//   up.OnUploaded(now, answer);
#ifndef SPHERE_TWIN_ERROR_UPLOADER_H_
#define SPHERE_TWIN_ERROR_UPLOADER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/backoff.h"
#include "mcu-model/device.h"
#include "protos/error_reporting.pb.h"

namespace sphere::twin {

struct ErrorUploadPolicy {
  size_t max_batch = 100;  // events per upload (the service takes <= 1000)
  absl::Duration batch_delay = absl::Seconds(10);
  size_t max_pending = 256;  // collected events waiting for upload
  client::BackoffPolicy backoff;
  // When > 0, an idle uploader wakes up this often to look at the device's
  // ring (next_wakeup); 0: the owner calls OnTimer when it likes.
  absl::Duration poll_interval = absl::ZeroDuration();
};

class ErrorUploader {
 public:
  // `policy` must outlive the uploader.
  explicit ErrorUploader(const ErrorUploadPolicy* policy) : policy_(policy) {}

  // OnTimer collects the device's new events and returns the next batch when
  // one is due and none is in flight.
  std::optional<v1::UploadErrorsRequest> OnTimer(absl::Time now,
                                                 mcu::Device& device);
  // OnUploaded: the answer to the last request OnTimer returned.
  void OnUploaded(absl::Time now,
                  const absl::StatusOr<v1::UploadErrorsResponse>& answer);

  // When OnTimer should run next: InfiniteFuture while a batch is in flight;
  // when nothing waits, the next poll (poll_interval) or InfiniteFuture.
  absl::Time next_wakeup() const;

  bool in_flight() const { return in_flight_ > 0; }
  size_t pending() const { return pending_; }
  uint64_t dropped() const { return dropped_; }  // ours, not the ring's
  uint64_t uploaded() const { return uploaded_; }
  int retries() const { return retries_; }
  const absl::Status& last_error() const { return last_error_; }

 private:
  void Collect(absl::Time now, mcu::Device& device);
  // Pending: ring events with sequence <= collected_through_.
  size_t CountPending() const;
  // Acknowledged (or refused for good): removes the batch in flight from the
  // device's ring.
  void AckInFlight();

  const ErrorUploadPolicy* policy_;
  mcu::Device* device_ = nullptr;   // from OnTimer
  uint64_t collected_through_ = 0;  // newest sequence collected
  uint64_t in_flight_through_ = 0;  // last sequence of the batch in flight
  size_t pending_ = 0;
  absl::Status last_error_;
  int64_t due_ms_ = 0;          // unix ms the pending batch is due (0: none)
  int64_t poll_ms_ = 0;         // idle: next look at the ring (0: none)
  uint64_t dropped_ = 0;        // dropped here (max_pending, refused batches)
  uint64_t dropped_sent_ = 0;   // dropped_events value of the last upload
  uint64_t dropped_acked_ = 0;  // ... that the service acknowledged
  uint64_t uploaded_ = 0;       // events acknowledged (stored or duplicate)
  uint64_t jitter_seed_ = 0;
  uint32_t in_flight_ = 0;  // events of the batch in flight
  uint16_t retries_ = 0;
};

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_ERROR_UPLOADER_H_
