#include "twin/error_uploader.h"

#include <algorithm>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"

namespace sphere::twin {

void ErrorUploader::Collect(absl::Time now, mcu::Device& device) {
  if (in_flight()) return;  // the batch in flight stays the front
  if (jitter_seed_ == 0) {
    jitter_seed_ = std::hash<std::string>()(device.device_id()) | 1;
  }
  std::vector<v1::ErrorEvent> fresh = device.DrainErrorEvents();
  if (fresh.empty()) return;
  for (v1::ErrorEvent& e : fresh) {
    if (e.component_version().empty()) {
      uint32_t v = device.InstalledVersion(e.component());
      if (v != 0) e.set_component_version(absl::StrCat(v));
    }
    pending_.push_back(std::move(e));
  }
  if (pending_.size() > policy_->max_pending) {
    const size_t excess = pending_.size() - policy_->max_pending;
    pending_.erase(pending_.begin(), pending_.begin() + excess);
    dropped_ += excess;
  }
  if (due_ms_ == 0) {
    due_ms_ = absl::ToUnixMillis(now + policy_->batch_delay);
  }
  if (pending_.size() >= policy_->max_batch && retries_ == 0) {
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
  if (pending_.empty() && total_dropped == dropped_acked_) return std::nullopt;
  if (due_ms_ == 0) due_ms_ = absl::ToUnixMillis(now + policy_->batch_delay);
  if (absl::ToUnixMillis(now) < due_ms_) return std::nullopt;
  if (pending_.empty()) {
    // Only a new drop count to report: it rides on the next batch, when
    // there is one; nothing else to send now.
    due_ms_ = 0;
    return std::nullopt;
  }
  v1::UploadErrorsRequest req;
  const size_t n = std::min(pending_.size(), policy_->max_batch);
  for (size_t i = 0; i < n; ++i) *req.add_events() = pending_[i];
  req.set_dropped_events(total_dropped);
  dropped_sent_ = total_dropped;
  in_flight_ = static_cast<uint32_t>(n);
  return req;
}

void ErrorUploader::OnUploaded(
    absl::Time now, const absl::StatusOr<v1::UploadErrorsResponse>& answer) {
  if (!in_flight()) return;  // no request outstanding: ignore
  const size_t n = std::min<size_t>(in_flight_, pending_.size());
  in_flight_ = 0;
  if (answer.ok()) {
    pending_.erase(pending_.begin(), pending_.begin() + n);
    uploaded_ += n;
    dropped_acked_ = dropped_sent_;
    retries_ = 0;
    last_error_ = absl::OkStatus();
    // What is left (more than one batch) goes at once.
    due_ms_ = pending_.empty() ? 0 : absl::ToUnixMillis(now);
    return;
  }
  last_error_ = answer.status();
  if (absl::IsInvalidArgument(answer.status())) {
    // Never acceptable: drop it (counted, reported with the next batch).
    pending_.erase(pending_.begin(), pending_.begin() + n);
    dropped_ += n;
    retries_ = 0;
    due_ms_ = pending_.empty() ? 0 : absl::ToUnixMillis(now);
    return;
  }
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
