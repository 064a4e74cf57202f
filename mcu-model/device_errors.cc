// Device error ring: Note/Record, DrainErrorEvents, AckErrorEvents, tamper
// events, planned restarts into an installed update, attestation refusals,
// and the ring's persistence (issue 12).
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mcu-model/device.h"
#include "mcu-model/device_internal.h"

namespace sphere::mcu {

// ------------------------------------------------------------------ errors

void Device::Note(v1::ErrorEvent::Kind kind, absl::string_view component,
                  absl::Status status, int exit_code, int signal) {
  Record(kind, component, std::move(status), exit_code, signal).IgnoreError();
}

absl::Status Device::Record(v1::ErrorEvent::Kind kind,
                            absl::string_view component, absl::Status status,
                            int exit_code, int signal) {
  v1::ErrorEvent e;
  e.set_sequence(next_error_seq_++);
  e.set_kind(kind);
  e.set_component(std::string(component));
  e.set_exit_code(exit_code);
  e.set_signal(signal);
  e.set_detail(status.ok() ? std::string() : std::string(status.message()));
  e.set_time_unix_ms(absl::ToUnixMillis(clock_->Now()));
  if (errors_.size() >= type_->error_ring_capacity) {
    errors_.erase(errors_.begin());
    ++dropped_errors_;
  }
  errors_.push_back(std::move(e));
  return status;
}

std::vector<v1::ErrorEvent> Device::DrainErrorEvents() {
  std::vector<v1::ErrorEvent> out;
  out.swap(errors_);
  return out;
}

void Device::TriggerTamper(absl::string_view sensor) {
  sm_->pluton().Tamper(sm_->token());
  Note(v1::ErrorEvent::TAMPER, "pluton",
       absl::FailedPreconditionError(
           absl::StrCat("tamper sensor fired: ", sensor)));
}

// ------------------------------------------------- issue 12 event kinds

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
  // An emptied ring gives its storage back: a fleet that uploaded its
  // errors must not keep a ring's capacity per device (issue 14 memory).
  if (errors_.empty()) std::vector<v1::ErrorEvent>().swap(errors_);
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
