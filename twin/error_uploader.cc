#include "twin/error_uploader.h"

#include <algorithm>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"

namespace sphere::twin {

size_t ErrorUploader::CountPending() const {
  if (device_ == nullptr) return 0;
  size_t n = 0;
  for (const v1::ErrorEvent& e : device_->error_events()) {
    if (e.sequence() > collected_through_) break;
    ++n;
  }
  return n;
}

void ErrorUploader::AckInFlight() {
  if (device_ != nullptr && in_flight_through_ != 0) {
    device_->AckErrorEvents(in_flight_through_);
  }
  in_flight_through_ = 0;
  pending_ = CountPending();
}

void ErrorUploader::Collect(absl::Time now, mcu::Device& device) {
  device_ = &device;
  if (in_flight()) return;  // the batch in flight stays the front
  if (jitter_seed_ == 0) {
    jitter_seed_ = std::hash<std::string>()(device.device_id()) | 1;
  }
  const std::vector<v1::ErrorEvent>& ring = device.error_events();
  if (!ring.empty() && ring.back().sequence() > collected_through_) {
    collected_through_ = ring.back().sequence();
    if (due_ms_ == 0) {
      due_ms_ = absl::ToUnixMillis(now + policy_->batch_delay);
    }
  }
  pending_ = CountPending();
  if (pending_ > policy_->max_pending) {
    const size_t excess = pending_ - policy_->max_pending;
    device.AckErrorEvents(ring[excess - 1].sequence());
    dropped_ += excess;
    pending_ = CountPending();
  }
  if (pending_ >= policy_->max_batch && retries_ == 0 && due_ms_ != 0) {
    due_ms_ = std::min(due_ms_, absl::ToUnixMillis(now));
  }
}

std::optional<v1::UploadErrorsRequest> ErrorUploader::OnTimer(
    absl::Time now, mcu::Device& device) {
  Collect(now, device);
  if (in_flight()) return std::nullopt;
  if (policy_->poll_interval > absl::ZeroDuration()) {
    poll_ms_ = absl::ToUnixMillis(now + policy_->poll_interval);
  }
  const uint64_t total_dropped = device.dropped_error_events() + dropped_;
  if (pending_ == 0 && total_dropped == dropped_acked_) return std::nullopt;
  if (due_ms_ == 0) due_ms_ = absl::ToUnixMillis(now + policy_->batch_delay);
  if (absl::ToUnixMillis(now) < due_ms_) return std::nullopt;
  if (pending_ == 0) {
    // Only a new drop count to report: it rides on the next batch, when
    // there is one; nothing else to send now.
    due_ms_ = 0;
    return std::nullopt;
  }
  v1::UploadErrorsRequest req;
  const size_t n = std::min(pending_, policy_->max_batch);
  const std::vector<v1::ErrorEvent>& ring = device.error_events();
  for (size_t i = 0; i < n; ++i) {
    v1::ErrorEvent* e = req.add_events();
    *e = ring[i];
    if (e->component_version().empty()) {
      uint32_t v = device.InstalledVersion(e->component());
      if (v != 0) e->set_component_version(absl::StrCat(v));
    }
  }
  req.set_dropped_events(total_dropped);
  dropped_sent_ = total_dropped;
  in_flight_ = static_cast<uint32_t>(n);
  in_flight_through_ = ring[n - 1].sequence();
  return req;
}

void ErrorUploader::OnUploaded(
    absl::Time now, const absl::StatusOr<v1::UploadErrorsResponse>& answer) {
  if (!in_flight()) return;  // no request outstanding: ignore
  const uint32_t n = in_flight_;
  in_flight_ = 0;
  if (answer.ok()) {
    AckInFlight();
    uploaded_ += n;
    dropped_acked_ = dropped_sent_;
    retries_ = 0;
    last_error_ = absl::OkStatus();
    // What is left (more than one batch) goes at once.
    due_ms_ = pending_ == 0 ? 0 : absl::ToUnixMillis(now);
    return;
  }
  last_error_ = answer.status();
  if (absl::IsInvalidArgument(answer.status())) {
    // Never acceptable: drop it (counted, reported with the next batch).
    AckInFlight();
    dropped_ += n;
    retries_ = 0;
    due_ms_ = pending_ == 0 ? 0 : absl::ToUnixMillis(now);
    return;
  }
  // Kept in the device's ring: resent after the backoff (or after a
  // restart of the twin, from its persisted state).
  in_flight_through_ = 0;
  absl::Duration wait = policy_->backoff.max;
  if (client::IsRetryable(answer.status().code())) {
    wait = client::BackoffDelay(
        policy_->backoff, retries_,
        client::JitterFraction(jitter_seed_ ^
                               (static_cast<uint64_t>(retries_) << 48) ^
                               static_cast<uint64_t>(absl::ToUnixMillis(now))));
  }
  if (retries_ < UINT16_MAX) ++retries_;
  due_ms_ = absl::ToUnixMillis(now + wait);
}

absl::Time ErrorUploader::next_wakeup() const {
  if (in_flight()) return absl::InfiniteFuture();
  if (due_ms_ != 0) return absl::FromUnixMillis(due_ms_);
  if (poll_ms_ != 0) return absl::FromUnixMillis(poll_ms_);
  return absl::InfiniteFuture();
}

}  // namespace sphere::twin
