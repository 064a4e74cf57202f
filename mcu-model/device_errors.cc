// Device error ring: Note/Record, DrainErrorEvents, tamper events.
#include "mcu-model/device.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
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

}  // namespace sphere::mcu
