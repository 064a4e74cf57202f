// Device members for verified installs: fit checks, update deferral and the
// install-step hook (see device.h "Verified install support").
#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "mcu-model/device.h"
#include "mcu-model/install_error.h"

namespace sphere::mcu {

namespace {

constexpr absl::string_view kInstallErrorUrl =
    "type.sphere/sphere.mcu.InstallError";

uint32_t Kib(uint64_t bytes) {
  return static_cast<uint32_t>((bytes + 1023) / 1024);
}

}  // namespace

const char* InstallErrorName(InstallError e) {
  switch (e) {
    case InstallError::kNone:
      return "none";
    case InstallError::kNotInSignedSet:
      return "not-in-signed-set";
    case InstallError::kPackageTooLong:
      return "package-too-long";
    case InstallError::kPackageIncomplete:
      return "package-incomplete";
    case InstallError::kPackageHash:
      return "package-hash";
    case InstallError::kMalformed:
      return "malformed";
    case InstallError::kBadSignature:
      return "bad-signature";
    case InstallError::kTargetMismatch:
      return "target-mismatch";
    case InstallError::kWrongHardware:
      return "wrong-hardware";
    case InstallError::kTooLargeForFlash:
      return "too-large-for-flash";
    case InstallError::kTooLargeForRam:
      return "too-large-for-ram";
    case InstallError::kWrongTenant:
      return "wrong-tenant";
    case InstallError::kRollback:
      return "rollback";
    case InstallError::kCrashLoop:
      return "crash-loop";
  }
  return "unknown";
}

absl::Status MakeInstallError(absl::StatusCode code, InstallError reason,
                              absl::string_view message) {
  absl::Status s(code, message);
  s.SetPayload(kInstallErrorUrl,
               absl::Cord(std::string(1, static_cast<char>(reason))));
  return s;
}

InstallError InstallErrorOf(const absl::Status& status) {
  if (status.ok()) return InstallError::kNone;
  absl::optional<absl::Cord> p = status.GetPayload(kInstallErrorUrl);
  if (!p.has_value() || p->size() != 1) return InstallError::kNone;
  int v = static_cast<unsigned char>(std::string(*p)[0]);
  if (v > static_cast<int>(InstallError::kCrashLoop))
    return InstallError::kNone;
  return static_cast<InstallError>(v);
}

absl::Status Device::CheckUpdateFits(const v1::ImageHeader& h) const {
  const std::string& comp = h.component();
  const uint32_t kib = Kib(h.payload_size());
  auto flash = [&](uint32_t need, absl::string_view part) -> absl::Status {
    const PartitionSpec* p = type_->Partition(part);
    if (p != nullptr && need <= p->size_kib) return absl::OkStatus();
    return MakeInstallError(
        absl::StatusCode::kResourceExhausted, InstallError::kTooLargeForFlash,
        absl::StrCat("update refused: ", comp, " does not fit flash: needs ",
                     need, " KiB in partition ", part, " of ",
                     p == nullptr ? 0 : p->size_kib, " KiB"));
  };
  const v1::ImageKind kind = h.kind();
  if (kind == v1::IMAGE_KIND_APPLICATION ||
      kind == v1::IMAGE_KIND_REALTIME_APP) {
    const bool rt = kind == v1::IMAGE_KIND_REALTIME_APP;
    const std::vector<ImageRef>& slot =
        app_staged_ ? app_slots_[active_app_ ^ 1] : app_slots_[active_app_];
    uint32_t need = kib;
    uint32_t ram = h.manifest().memory_kib();
    for (const ImageRef& i : slot) {
      if (i->component() == comp) continue;
      bool irt = i->header.kind() == v1::IMAGE_KIND_REALTIME_APP;
      if (irt != rt) continue;
      need += i->size_kib();
      if (!rt) ram += i->header.manifest().memory_kib();
    }
    if (absl::Status s = flash(need, rt ? kPartRealtimeApps : kPartAppA);
        !s.ok()) {
      return s;
    }
    const uint32_t budget = rt ? type_->rt_core_ram_kib : type_->AppRamKib();
    const uint32_t want = rt ? h.manifest().memory_kib() : ram;
    if (want > budget) {
      return MakeInstallError(
          absl::StatusCode::kResourceExhausted, InstallError::kTooLargeForRam,
          absl::StrCat("update refused: ", comp, " does not fit RAM: ",
                       rt ? "real-time app needs " : "apps would need ", want,
                       " KiB of ", budget,
                       rt ? " KiB core TCM" : " KiB after the OS share"));
    }
    return absl::OkStatus();
  }
  if (kind == v1::IMAGE_KIND_PLUTON_RUNTIME ||
      kind == v1::IMAGE_KIND_SECURITY_MONITOR) {
    int idx = kind == v1::IMAGE_KIND_PLUTON_RUNTIME ? 0 : 1;
    uint32_t other =
        secure_world_[idx ^ 1] ? secure_world_[idx ^ 1]->size_kib() : 0;
    return flash(kib + other, kPartSecurityMonitor);
  }
  const std::vector<ImageRef>& slot =
      os_staged_ ? os_slots_[active_os_ ^ 1] : os_slots_[active_os_];
  uint32_t need = kib;
  for (const ImageRef& i : slot) {
    if (i->component() != comp) need += i->size_kib();
  }
  return flash(need, kPartOsA);
}

absl::Status Device::DeferUpdate(absl::string_view component_id,
                                 absl::Duration duration) {
  if (absl::Status s = CallApi(component_id, AppApi::kSoftwareUpdateDeferral);
      !s.ok()) {
    return s;
  }
  if (duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("deferral must be positive");
  }
  const int64_t now = absl::ToUnixMillis(clock_->Now());
  if (deferral_started_ms_ == 0) deferral_started_ms_ = now;
  const int64_t deadline =
      deferral_started_ms_ + absl::ToInt64Milliseconds(kMaxUpdateDeferral);
  if (now >= deadline) {
    return absl::FailedPreconditionError(
        absl::StrCat("app ", component_id,
                     ": update already deferred for 24 h of device "
                     "time; it installs now"));
  }
  const int64_t until =
      std::min(deadline, now + absl::ToInt64Milliseconds(duration));
  deferred_until_ms_ = std::max(deferred_until_ms_, until);
  return absl::OkStatus();
}

absl::Time Device::UpdateDeferredUntil() const {
  return deferred_until_ms_ == 0 ? absl::InfinitePast()
                                 : absl::FromUnixMillis(deferred_until_ms_);
}

bool Device::UpdateDeferred() const {
  return deferred_until_ms_ > absl::ToUnixMillis(clock_->Now());
}

void Device::EndUpdateDeferral() {
  deferral_started_ms_ = 0;
  deferred_until_ms_ = 0;
}

void Device::SetInstallStepHookForTest(InstallStepHook hook) {
  install_step_hook_ =
      hook ? std::make_unique<InstallStepHook>(std::move(hook)) : nullptr;
}

void Device::InstallStep(absl::string_view step) {
  if (install_step_hook_ != nullptr) (*install_step_hook_)(step);
}

}  // namespace sphere::mcu
