// Device error events that are not failures of a Device call (issue 12):
// planned restarts into an installed update and attestation refusals. The
// ring itself (Record/Note/DrainErrorEvents) lives in device.cc.
#include "absl/strings/str_cat.h"
#include "mcu-model/device.h"

namespace sphere::mcu {

void Device::NotePlannedRestart() {
  // Called by Boot() before the staged slots become active: one event per
  // staged update, planned (the update agent asked for the restart).
  auto planned = [this](absl::string_view component, absl::string_view what,
                        int slot) {
    Note(v1::ErrorEvent::PLANNED_RESTART, component, absl::OkStatus());
    errors_.back().set_detail(absl::StrCat("restart to install the ", what,
                                           " update (slot ",
                                           slot == 0 ? "A" : "B", ")"));
  };
  if (os_staged_) planned("os", "OS", active_os_ ^ 1);
  if (app_staged_) planned("apps", "app", active_app_ ^ 1);
}

absl::Status Device::ReportAttestationFailure(absl::Status refusal) {
  if (refusal.ok()) return refusal;
  return Record(v1::ErrorEvent::ATTESTATION_FAILED, "attestation",
                std::move(refusal));
}

void Device::AckErrorEvents(uint64_t through_sequence) {
  size_t n = 0;
  while (n < errors_.size() && errors_[n].sequence() <= through_sequence) ++n;
  errors_.erase(errors_.begin(), errors_.begin() + n);
}

void Device::SaveErrorRing(v1::PersistedDeviceState* st) const {
  for (const v1::ErrorEvent& e : errors_) *st->add_error_ring() = e;
  st->set_dropped_error_events(dropped_errors_);
}

void Device::RestoreErrorRing(const v1::PersistedDeviceState& st) {
  errors_.clear();
  // Never more than the ring holds (a state file from a larger ring keeps
  // its newest events; the rest count as dropped).
  const size_t cap = type_->error_ring_capacity;
  const size_t n = static_cast<size_t>(st.error_ring_size());
  const size_t skip = n > cap ? n - cap : 0;
  for (size_t i = skip; i < n; ++i) errors_.push_back(st.error_ring(i));
  dropped_errors_ = st.dropped_error_events() + skip;
}

}  // namespace sphere::mcu
