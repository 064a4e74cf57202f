// Device update agent: staging images into the inactive slot, confirm
// and rollback of unconfirmed updates.
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mcu-model/device.h"
#include "mcu-model/device_internal.h"
#include "mcu-model/image.h"

namespace sphere::mcu {

using device_internal::IsAppKind;
using device_internal::RollbackFloor;
using device_internal::SlotKib;
using device_internal::WithContext;

// ---------------------------------------------------------- update agent

absl::Status Device::StageUpdate(const v1::ImagePackage& package) {
  if (state_ == BootState::kOff) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, "update-agent",
                  absl::FailedPreconditionError("device is not booted"));
  }
  absl::StatusOr<VerifiedImage> v = VerifyImage(package, *signing_key_);
  if (!v.ok()) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, "update-agent",
                  WithContext(v.status(), "update refused: "));
  }
  const std::string& comp = v->header.component();
  uint32_t floor = RollbackFloor(*pluton_, v->header);
  if (v->header.version() < floor) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, comp,
                  absl::FailedPreconditionError(absl::StrCat(
                      "update refused: anti-rollback: ", comp, " version ",
                      v->header.version(), " < counter ", floor)));
  }
  v1::ImageKind kind = v->header.kind();
  if (!IsAppKind(kind) && kind != KindForComponent(comp)) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, comp,
                  absl::InvalidArgumentError(
                      absl::StrCat("update refused: bad kind for ", comp)));
  }
  absl::StatusOr<ImageRef> rec = InternImage(ToStoredImage(package));
  if (!rec.ok()) return rec.status();
  auto too_big = [&](uint32_t need, absl::string_view part) {
    return Record(
        v1::ErrorEvent::RESOURCE_LIMIT, comp,
        absl::ResourceExhaustedError(absl::StrCat(
            "update refused: ", comp, " needs ", need, " KiB in partition ",
            part, " of ", type_->Partition(part)->size_kib, " KiB")));
  };
  auto replace = [&](std::vector<ImageRef> slot) {
    bool found = false;
    for (ImageRef& i : slot) {
      if (i->component() == comp) {
        i = *rec;
        found = true;
      }
    }
    if (!found) slot.push_back(*rec);
    return slot;
  };
  if (IsAppKind(kind)) {
    const bool rt = kind == v1::IMAGE_KIND_REALTIME_APP;
    std::vector<ImageRef> cand = replace(
        app_staged_ ? app_slots_[active_app_ ^ 1] : app_slots_[active_app_]);
    uint32_t need = SlotKib(cand, rt, "");
    absl::string_view part = rt ? kPartRealtimeApps : kPartAppA;
    if (need > type_->Partition(part)->size_kib) return too_big(need, part);
    app_slots_[active_app_ ^ 1] = std::move(cand);
    InstallStep("slot-written");
    app_staged_ = true;
    InstallStep("staged");
    return absl::OkStatus();
  }
  if (kind == v1::IMAGE_KIND_PLUTON_RUNTIME ||
      kind == v1::IMAGE_KIND_SECURITY_MONITOR) {
    int idx = kind == v1::IMAGE_KIND_PLUTON_RUNTIME ? 0 : 1;
    uint32_t need = (*rec)->size_kib() + secure_world_[idx ^ 1]->size_kib();
    if (need > type_->Partition(kPartSecurityMonitor)->size_kib) {
      return too_big(need, kPartSecurityMonitor);
    }
    secure_world_[idx] = *rec;  // power-safe in-place copy, next boot
    InstallStep("staged");
    return absl::OkStatus();
  }
  std::vector<ImageRef> cand;
  if (state_ == BootState::kRecovery) {
    cand = replace(os_slots_[active_os_]);
  } else {
    cand =
        replace(os_staged_ ? os_slots_[active_os_ ^ 1] : os_slots_[active_os_]);
  }
  uint32_t need = SlotKib(cand, false, "");
  if (need > type_->Partition(kPartOsA)->size_kib) {
    return too_big(need, kPartOsA);
  }
  if (state_ == BootState::kRecovery) {
    os_slots_[active_os_] = std::move(cand);  // recovery rewrites in place
    InstallStep("staged");
  } else {
    os_slots_[active_os_ ^ 1] = std::move(cand);
    InstallStep("slot-written");
    os_staged_ = true;
    InstallStep("staged");
  }
  return absl::OkStatus();
}

absl::Status Device::ConfirmUpdate() {
  if (state_ != BootState::kRunning) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, "update-agent",
                  absl::FailedPreconditionError("cannot confirm: not running"));
  }
  os_pending_ = false;
  os_attempts_ = 0;
  app_pending_ = false;
  app_update_crashes_ = 0;
  CommitCounters();
  InstallStep("confirmed");
  return absl::OkStatus();
}

absl::Status Device::RollBackUpdate() {
  if (!os_pending_ && !app_pending_) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, "update-agent",
                  absl::FailedPreconditionError("no unconfirmed update"));
  }
  if (os_pending_) RollBackOs("rollback requested");
  if (app_pending_) RollBackApps("rollback requested");
  return Boot();
}

}  // namespace sphere::mcu
