// Device factory install and secure boot: chain verification and
// measurement, anti-rollback counters, A/B slot switch and rollback, and the
// flash fault hooks tests use.
#include <algorithm>
#include <array>

#include "absl/strings/str_cat.h"
#include "mcu-model/device.h"
#include "mcu-model/device_internal.h"
#include "mcu-model/image.h"

namespace sphere::mcu {

using device_internal::CounterTenant;
using device_internal::IsAppKind;
using device_internal::kFirstOsStage;
using device_internal::kNumBootStages;
using device_internal::RollbackFloor;
using device_internal::WithContext;

// ------------------------------------------------------------ factory/boot

absl::Status Device::InstallFactoryImages(
    const std::vector<v1::ImagePackage>& images) {
  std::vector<v1::StoredImage> stored;
  stored.reserve(images.size());
  for (const v1::ImagePackage& p : images) stored.push_back(ToStoredImage(p));
  return InstallFactoryImages(stored);
}

absl::Status Device::InstallFactoryImages(
    const std::vector<v1::StoredImage>& images) {
  std::array<ImageRef, kNumBootStages> chain;
  for (const v1::StoredImage& pkg : images) {
    absl::StatusOr<VerifiedImage> v = VerifyStoredImage(pkg, *signing_key_);
    if (!v.ok()) {
      return Record(v1::ErrorEvent::UPDATE_FAILED, "factory",
                    WithContext(v.status(), "factory image: "));
    }
    const auto& comps = BootChainComponents();
    auto it = std::find(comps.begin(), comps.end(), v->header.component());
    if (it == comps.end() ||
        v->header.kind() != KindForComponent(v->header.component())) {
      return Record(v1::ErrorEvent::UPDATE_FAILED, "factory",
                    absl::InvalidArgumentError(absl::StrCat(
                        "not a boot-chain image: ", v->header.component())));
    }
    absl::StatusOr<ImageRef> rec = InternImage(pkg);
    if (!rec.ok()) return rec.status();
    chain[it - comps.begin()] = *std::move(rec);
  }
  for (int i = 0; i < kNumBootStages; ++i) {
    if (chain[i] == nullptr) {
      return Record(v1::ErrorEvent::UPDATE_FAILED, "factory",
                    absl::InvalidArgumentError(absl::StrCat(
                        "factory image set lacks ", BootChainComponents()[i])));
    }
  }
  uint32_t sw_kib = chain[0]->size_kib() + chain[1]->size_kib();
  uint32_t os_kib = 0;
  for (int i = kFirstOsStage; i < kNumBootStages; ++i) {
    os_kib += chain[i]->size_kib();
  }
  if (sw_kib > type_->Partition(kPartSecurityMonitor)->size_kib ||
      os_kib > type_->Partition(kPartOsA)->size_kib) {
    return Record(v1::ErrorEvent::RESOURCE_LIMIT, "factory",
                  absl::ResourceExhaustedError(
                      absl::StrCat("factory images do not fit: secure world ",
                                   sw_kib, " KiB, OS ", os_kib, " KiB")));
  }
  secure_world_ = {chain[0], chain[1]};
  std::vector<ImageRef> os(chain.begin() + kFirstOsStage, chain.end());
  os_slots_ = {os, os};
  active_os_ = 0;
  os_staged_ = os_pending_ = false;
  state_ = BootState::kOff;
  return absl::OkStatus();
}

uint32_t Device::InstalledVersion(absl::string_view component) const {
  for (const ImageRef& i : secure_world_) {
    if (i && i->component() == component) return i->version();
  }
  for (const ImageRef& i : os_slots_[active_os_]) {
    if (i->component() == component) return i->version();
  }
  for (const ImageRef& i : app_slots_[active_app_]) {
    if (i->component() == component) return i->version();
  }
  return 0;
}

absl::Status Device::CheckImage(const ImageRecord& img,
                                absl::string_view expected,
                                absl::string_view verifier) {
  const std::string prefix =
      absl::StrCat("secure boot: ", expected, " rejected by ", verifier, ": ");
  absl::StatusOr<VerifiedImage> v =
      VerifyStoredImage(img.stored, *signing_key_);
  if (!v.ok()) return WithContext(v.status(), prefix);
  if (v->header.component() != expected ||
      (!IsAppKind(v->header.kind()) &&
       v->header.kind() != KindForComponent(expected))) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "image is for '", v->header.component(), "'"));
  }
  uint32_t floor = RollbackFloor(*pluton_, v->header);
  if (v->header.version() < floor) {
    return absl::FailedPreconditionError(
        absl::StrCat(prefix, "anti-rollback: version ", v->header.version(),
                     " < counter ", floor));
  }
  return absl::OkStatus();
}

absl::Status Device::VerifyAndMeasureChain() {
  const auto& names = BootChainComponents();
  const auto& os = os_slots_[active_os_];
  for (int i = 0; i < kNumBootStages; ++i) {
    const ImageRef& img =
        i < kFirstOsStage ? secure_world_[i]
                          : (static_cast<size_t>(i - kFirstOsStage) < os.size()
                                 ? os[i - kFirstOsStage]
                                 : ImageRef());
    if (img == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("secure boot: no image for ", names[i]));
    }
    const std::string verifier = i == 0 ? "rom" : names[i - 1];
    // The stage below checks the next one, unless it was compromised.
    if (compromised_stage_ != i - 1) {
      if (absl::Status s = CheckImage(*img, names[i], verifier); !s.ok()) {
        return s;
      }
    }
    // Defence in depth: the Security Monitor re-verifies every Normal World
    // stage before mapping it executable (for the bootloader it is already
    // the verifier above).
    if (i > kFirstOsStage || (i == kFirstOsStage && compromised_stage_ == 1)) {
      if (absl::Status s = CheckImage(*img, names[i], kSecurityMonitor);
          !s.ok()) {
        return s;
      }
    }
    sm_->pluton().Measure(sm_->token(), img);
  }
  return absl::OkStatus();
}

void Device::CommitCounters() {
  const SecureWorldToken& t = sm_->token();
  if (!os_pending_) {
    for (const ImageRef& i : secure_world_) {
      if (i) pluton_->AdvanceCounter(t, "", i->component(), i->version());
    }
    for (const ImageRef& i : os_slots_[active_os_]) {
      pluton_->AdvanceCounter(t, "", i->component(), i->version());
    }
  }
  if (!app_pending_) {
    for (const ImageRef& i : app_slots_[active_app_]) {
      pluton_->AdvanceCounter(t, CounterTenant(i->header), i->component(),
                              i->version());
    }
  }
}

void Device::RollBackOs(absl::string_view why) {
  active_os_ ^= 1;
  os_pending_ = false;
  os_attempts_ = 0;
  Note(
      v1::ErrorEvent::UPDATE_ROLLED_BACK, "os",
      absl::AbortedError(absl::StrCat("OS update rolled back to slot ",
                                      active_os_ == 0 ? "A" : "B", ": ", why)));
}

void Device::RollBackApps(absl::string_view why) {
  active_app_ ^= 1;
  app_pending_ = false;
  app_update_crashes_ = 0;
  Note(v1::ErrorEvent::UPDATE_ROLLED_BACK, "apps",
       absl::AbortedError(absl::StrCat("app update rolled back to slot ",
                                       active_app_ == 0 ? "A" : "B", ": ",
                                       why)));
}

absl::Status Device::Boot() {
  const SecureWorldToken& t = sm_->token();
  state_ = BootState::kOff;
  apps_.clear();
  std::fill(peripheral_owner_.begin(), peripheral_owner_.end(), 0);
  pluton_->ResetMeasurements(t);
  pluton_->CountBoot(t);
  if (absl::Status s = pluton_->SelfTest(t); !s.ok()) {
    Note(v1::ErrorEvent::TAMPER, "pluton", s);  // boot continues, no quotes
  }
  NotePlannedRestart();  // an installed update takes effect (device_errors.cc)
  if (os_staged_) {
    active_os_ ^= 1;
    os_staged_ = false;
    os_pending_ = true;
    os_attempts_ = 0;
  }
  if (app_staged_) {
    active_app_ ^= 1;
    app_staged_ = false;
    app_pending_ = true;
    app_update_crashes_ = 0;
  }
  InstallStep("switched");
  if (os_pending_ && ++os_attempts_ > type_->max_boot_attempts) {
    RollBackOs(absl::StrCat("crash loop: ", type_->max_boot_attempts,
                            " boots without confirmation"));
  }
  InstallStep("boot-attempt");
  absl::Status s = VerifyAndMeasureChain();
  if (!s.ok() && os_pending_) {
    Note(v1::ErrorEvent::UPDATE_FAILED, "os", s);
    RollBackOs("updated slot failed secure boot");
    pluton_->ResetMeasurements(t);
    s = VerifyAndMeasureChain();
  }
  if (!s.ok()) {
    state_ = BootState::kRecovery;
    return Record(v1::ErrorEvent::BOOT_FAILED, "secure-boot", s);
  }
  CommitCounters();
  state_ = BootState::kRunning;
  StartInstalledApps();
  InstallStep("booted");
  return absl::OkStatus();
}

absl::Status Device::OsCrash(absl::string_view reason) {
  pluton_->CountReset(sm_->token());
  Note(v1::ErrorEvent::APP_CRASH, "os",
       absl::InternalError(absl::StrCat("kernel panic: ", reason)));
  return Boot();
}

// ---------------------------------------------------------- fault hooks

absl::Status Device::ReplaceFlashImageForTest(absl::string_view component,
                                              const v1::StoredImage& stored) {
  absl::StatusOr<ImageRef> rec = InternImage(stored);
  if (!rec.ok()) return rec.status();
  for (ImageRef& i : secure_world_) {
    if (i && i->component() == component) {
      i = *rec;
      return absl::OkStatus();
    }
  }
  for (ImageRef& i : os_slots_[active_os_]) {
    if (i->component() == component) {
      i = *rec;
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("no flash image ", component));
}

void Device::CompromiseStageForTest(absl::string_view component) {
  const auto& names = BootChainComponents();
  auto it = std::find(names.begin(), names.end(), component);
  compromised_stage_ =
      it == names.end() ? 0xff : static_cast<uint8_t>(it - names.begin());
}

}  // namespace sphere::mcu
