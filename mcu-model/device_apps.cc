// Device app runtime: loading/starting apps, RAM and peripheral
// ownership, connections, API calls, sealed storage, mailboxes, exits and
// watchdogs.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mcu-model/device.h"
#include "mcu-model/device_internal.h"
#include "mcu-model/image.h"

namespace sphere::mcu {

using device_internal::CounterTenant;
using device_internal::HostAllowed;
using device_internal::IsAppKind;
using device_internal::kNumBootStages;
using device_internal::SlotKib;
using device_internal::WithContext;

// ---------------------------------------------------------- app runtime

Device::App* Device::FindApp(absl::string_view id) {
  for (App& a : apps_) {
    if (a.id() == id) return &a;
  }
  return nullptr;
}

const Device::App* Device::FindApp(absl::string_view id) const {
  for (const App& a : apps_) {
    if (a.id() == id) return &a;
  }
  return nullptr;
}

bool Device::AppRunning(absl::string_view id) const {
  const App* a = FindApp(id);
  return a != nullptr && a->running;
}

uint32_t Device::AppCrashCount(absl::string_view id) const {
  const App* a = FindApp(id);
  return a == nullptr ? 0 : a->crashes;
}

uint32_t Device::FreeAppRamKib() const {
  uint32_t used = 0;
  for (const App& a : apps_) {
    if (!a.realtime()) used += a.manifest().memory_kib();
  }
  return type_->AppRamKib() - std::min(used, type_->AppRamKib());
}

absl::Status Device::StartApp(const ImageRef& img) {
  const v1::AppManifest& m = img->header.manifest();
  const std::string& comp = img->component();
  // Defence in depth: OS services check the image, and the Security Monitor
  // checks it again before mapping it.
  if (compromised_stage_ != kNumBootStages - 1) {
    if (absl::Status s = CheckImage(*img, comp, kOsServices); !s.ok()) {
      return Record(v1::ErrorEvent::UPDATE_FAILED, comp, s);
    }
  }
  if (absl::Status s = CheckImage(*img, comp, kSecurityMonitor); !s.ok()) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, comp, s);
  }
  if (m.component_id().empty()) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, comp,
                  absl::InvalidArgumentError("manifest error: no component"));
  }
  const bool rt = img->header.kind() == v1::IMAGE_KIND_REALTIME_APP;
  Core core = Core::kA7;
  if (rt) {
    bool used[3] = {false, false, false};
    for (const App& a : apps_) used[static_cast<int>(a.core)] = true;
    int free = -1;
    for (int c = 1; c <= type_->num_rt_cores; ++c) {
      if (!used[c]) {
        free = c;
        break;
      }
    }
    if (free < 0) {
      return Record(
          v1::ErrorEvent::RESOURCE_LIMIT, comp,
          absl::ResourceExhaustedError("no free real-time core for this app"));
    }
    core = static_cast<Core>(free);
    if (m.memory_kib() > type_->rt_core_ram_kib) {
      return Record(
          v1::ErrorEvent::RESOURCE_LIMIT, comp,
          absl::ResourceExhaustedError(absl::StrCat(
              "RAM budget exceeded: real-time app needs ", m.memory_kib(),
              " KiB, core has ", type_->rt_core_ram_kib, " KiB")));
    }
  } else if (m.memory_kib() > FreeAppRamKib()) {
    return Record(v1::ErrorEvent::RESOURCE_LIMIT, comp,
                  absl::ResourceExhaustedError(absl::StrCat(
                      "RAM budget exceeded: app needs ", m.memory_kib(),
                      " KiB, ", FreeAppRamKib(), " KiB of ", type_->AppRamKib(),
                      " KiB free after the OS share")));
  }
  uint32_t storage = m.mutable_storage_kib();
  for (const App& a : apps_) storage += a.manifest().mutable_storage_kib();
  if (storage > type_->Partition(kPartStorage)->size_kib) {
    return Record(
        v1::ErrorEvent::RESOURCE_LIMIT, comp,
        absl::ResourceExhaustedError(absl::StrCat(
            "mutable storage quota exceeded: ", storage, " KiB requested of ",
            type_->Partition(kPartStorage)->size_kib, " KiB")));
  }
  std::vector<int> claim;
  for (const std::string& p : m.peripherals()) {
    int idx = type_->PeripheralIndex(p);
    if (idx < 0) {
      return Record(v1::ErrorEvent::MANIFEST_VIOLATION, comp,
                    absl::InvalidArgumentError(absl::StrCat(
                        "manifest error: unknown peripheral ", p)));
    }
    if (peripheral_owner_[idx] != 0 ||
        std::find(claim.begin(), claim.end(), idx) != claim.end()) {
      return Record(
          v1::ErrorEvent::MANIFEST_VIOLATION, comp,
          absl::InvalidArgumentError(absl::StrCat("manifest error: peripheral ",
                                                  p, " is already claimed")));
    }
    claim.push_back(idx);
  }
  // Security Monitor programs the hardware firewall and measures the app.
  for (int idx : claim) {
    peripheral_owner_[idx] = static_cast<uint8_t>(core) + 1;
  }
  pluton_->Measure(sm_->token(), img);
  App app;
  app.image = img;
  app.core = core;
  app.last_pet = clock_->Now();
  apps_.push_back(std::move(app));
  return absl::OkStatus();
}

void Device::StartInstalledApps() {
  for (const ImageRef& img : app_slots_[active_app_]) {
    StartApp(img).IgnoreError();  // recorded in the error ring
  }
}

absl::Status Device::LoadApp(const v1::ImagePackage& package) {
  if (state_ != BootState::kRunning) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, "app-runtime",
                  absl::FailedPreconditionError(absl::StrCat(
                      "cannot load apps: device is ", BootStateName(state_))));
  }
  absl::StatusOr<VerifiedImage> v = VerifyImage(package, *signing_key_);
  if (!v.ok()) {
    return Record(v1::ErrorEvent::UPDATE_FAILED, "app-runtime",
                  WithContext(v.status(), "app refused: "));
  }
  if (!IsAppKind(v->header.kind())) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, v->header.component(),
                  absl::InvalidArgumentError("not an application image"));
  }
  const std::string& comp = v->header.component();
  const bool rt = v->header.kind() == v1::IMAGE_KIND_REALTIME_APP;
  uint32_t kib =
      SlotKib(app_slots_[active_app_], rt, comp) +
      static_cast<uint32_t>((v->header.payload_size() + 1023) / 1024);
  absl::string_view part = rt ? kPartRealtimeApps : kPartAppA;
  if (kib > type_->Partition(part)->size_kib) {
    return Record(v1::ErrorEvent::RESOURCE_LIMIT, comp,
                  absl::ResourceExhaustedError(absl::StrCat(
                      "image does not fit: ", kib, " KiB needed in ", part,
                      " of ", type_->Partition(part)->size_kib, " KiB")));
  }
  absl::StatusOr<ImageRef> rec = InternImage(ToStoredImage(package));
  if (!rec.ok()) return rec.status();
  // Replacing a running app: stop the old one first, restore on failure.
  std::optional<App> old;
  if (App* a = FindApp(v->header.manifest().component_id())) {
    old = *a;
    StopApp(a->id()).IgnoreError();
  }
  if (absl::Status s = StartApp(*rec); !s.ok()) {
    if (old.has_value()) StartApp(old->image).IgnoreError();
    return s;
  }
  auto& slot = app_slots_[active_app_];
  auto it = std::find_if(slot.begin(), slot.end(), [&](const ImageRef& i) {
    return i->component() == comp;
  });
  if (it != slot.end()) {
    *it = *rec;
  } else {
    slot.push_back(*rec);
  }
  if (!app_pending_) {
    pluton_->AdvanceCounter(sm_->token(), CounterTenant((*rec)->header), comp,
                            (*rec)->version());
  }
  return absl::OkStatus();
}

absl::Status Device::StopApp(absl::string_view id) {
  auto it = std::find_if(apps_.begin(), apps_.end(),
                         [&](const App& a) { return a.id() == id; });
  if (it == apps_.end()) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(id),
                  absl::NotFoundError(absl::StrCat("no app ", id)));
  }
  for (const std::string& p : it->manifest().peripherals()) {
    int idx = type_->PeripheralIndex(p);
    if (idx >= 0) peripheral_owner_[idx] = 0;
  }
  apps_.erase(it);
  return absl::OkStatus();
}

absl::Status Device::AccessPeripheral(absl::string_view id,
                                      absl::string_view peripheral,
                                      std::optional<Core> from_core) {
  const App* a = FindApp(id);
  if (a == nullptr || !a->running) {
    return Record(v1::ErrorEvent::FIREWALL_VIOLATION, AppComponentName(id),
                  absl::NotFoundError(absl::StrCat("no running app ", id)));
  }
  int idx = type_->PeripheralIndex(peripheral);
  if (idx < 0) {
    return Record(
        v1::ErrorEvent::FIREWALL_VIOLATION, AppComponentName(id),
        absl::InvalidArgumentError(absl::StrCat("no peripheral ", peripheral)));
  }
  Core core = from_core.value_or(a->core);
  bool declared = false;
  for (const std::string& p : a->manifest().peripherals()) {
    declared |= (p == peripheral);
  }
  if (peripheral_owner_[idx] != static_cast<uint8_t>(core) + 1 || !declared) {
    return Record(v1::ErrorEvent::FIREWALL_VIOLATION, AppComponentName(id),
                  absl::PermissionDeniedError(absl::StrCat(
                      "hardware firewall blocked ", peripheral,
                      " access from core ", static_cast<int>(core), " by app ",
                      id, declared ? "" : " (not in manifest)")));
  }
  return absl::OkStatus();
}

absl::Status Device::Connect(absl::string_view id, absl::string_view host) {
  const App* a = FindApp(id);
  if (state_ != BootState::kRunning || a == nullptr || !a->running) {
    return Record(v1::ErrorEvent::FIREWALL_VIOLATION, AppComponentName(id),
                  absl::FailedPreconditionError(
                      absl::StrCat("app ", id, " is not running")));
  }
  if (a->realtime()) {
    return Record(
        v1::ErrorEvent::FIREWALL_VIOLATION, AppComponentName(id),
        absl::PermissionDeniedError("real-time cores have no network access"));
  }
  if (!HostAllowed(a->manifest(), host)) {
    return Record(
        v1::ErrorEvent::FIREWALL_VIOLATION, AppComponentName(id),
        absl::PermissionDeniedError(absl::StrCat(
            "network firewall: ", host, " is not in AllowedConnections")));
  }
  return absl::OkStatus();
}

absl::Status Device::OsConnect(absl::string_view host) {
  if (state_ == BootState::kOff) {
    return Record(v1::ErrorEvent::FIREWALL_VIOLATION, "os",
                  absl::FailedPreconditionError("device is off"));
  }
  if (state_ == BootState::kRecovery && host != type_->update_service_host) {
    return Record(v1::ErrorEvent::FIREWALL_VIOLATION, "os",
                  absl::PermissionDeniedError(absl::StrCat(
                      "recovery mode: only ", type_->update_service_host,
                      " is reachable, not ", host)));
  }
  return absl::OkStatus();
}

absl::Status Device::CallApi(absl::string_view id, AppApi api) {
  const App* a = FindApp(id);
  if (a == nullptr || !a->running) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(id),
                  absl::NotFoundError(absl::StrCat("no running app ", id)));
  }
  auto deny = [&](absl::string_view what) {
    return Record(
        v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(id),
        absl::PermissionDeniedError(absl::StrCat("app ", id, ": ", what)));
  };
  switch (api) {
    case AppApi::kSystemEventNotifications:
      if (a->manifest().system_event_notifications()) return absl::OkStatus();
      return deny("SystemEventNotifications not in manifest");
    case AppApi::kSoftwareUpdateDeferral:
      if (a->manifest().software_update_deferral()) return absl::OkStatus();
      return deny("SoftwareUpdateDeferral not in manifest");
    case AppApi::kFileOpen:
      return deny("there is no generic file I/O");
    case AppApi::kShellExec:
      return deny("there is no shell");
    case AppApi::kQuote:
      return SecureMonitorCall(NormalWorldCaller::kUser, "quote", "").status();
  }
  return deny("unknown API");
}

absl::Status Device::WriteMutableStorage(absl::string_view id,
                                         absl::string_view data) {
  App* a = FindApp(id);
  if (a == nullptr) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(id),
                  absl::NotFoundError(absl::StrCat("no app ", id)));
  }
  uint64_t quota = uint64_t{a->manifest().mutable_storage_kib()} * 1024;
  if (quota == 0) {
    return Record(
        v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(id),
        absl::PermissionDeniedError("MutableStorage not in manifest"));
  }
  if (data.size() > quota) {
    return Record(v1::ErrorEvent::RESOURCE_LIMIT, AppComponentName(id),
                  absl::ResourceExhaustedError(absl::StrCat(
                      "mutable storage quota exceeded: ", data.size(),
                      " bytes > ", quota)));
  }
  absl::StatusOr<std::string> sealed =
      pluton_->SealStorage(sm_->token(), data, absl::StrCat("storage:", id));
  if (!sealed.ok())
    return Record(v1::ErrorEvent::TAMPER, "pluton", sealed.status());
  a->storage = *std::move(sealed);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Device::ReadMutableStorage(absl::string_view id) {
  App* a = FindApp(id);
  if (a == nullptr) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(id),
                  absl::NotFoundError(absl::StrCat("no app ", id)));
  }
  if (a->storage.empty()) return std::string();
  return pluton_->UnsealStorage(sm_->token(), a->storage,
                                absl::StrCat("storage:", id));
}

absl::Status Device::MailboxSend(absl::string_view from, absl::string_view to,
                                 absl::string_view message) {
  App* src = FindApp(from);
  App* dst = FindApp(to);
  if (src == nullptr || dst == nullptr || !src->running || !dst->running) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(from),
                  absl::NotFoundError("mailbox endpoint not running"));
  }
  if (src->realtime() == dst->realtime()) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(from),
                  absl::PermissionDeniedError(
                      "mailboxes connect a high-level app and a real-time "
                      "app"));
  }
  if (message.size() > type_->mailbox_max_message) {
    return Record(v1::ErrorEvent::RESOURCE_LIMIT, AppComponentName(from),
                  absl::InvalidArgumentError(
                      absl::StrCat("mailbox message of ", message.size(),
                                   " bytes > ", type_->mailbox_max_message)));
  }
  if (dst->inbox.size() >= type_->mailbox_capacity) {
    return Record(v1::ErrorEvent::RESOURCE_LIMIT, AppComponentName(from),
                  absl::ResourceExhaustedError("mailbox full"));
  }
  dst->inbox.emplace_back(message);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Device::MailboxReceive(absl::string_view app) {
  App* a = FindApp(app);
  if (a == nullptr) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, AppComponentName(app),
                  absl::NotFoundError(absl::StrCat("no app ", app)));
  }
  // An empty mailbox is normal polling, not a failure: no event.
  if (a->inbox.empty()) return absl::UnavailableError("mailbox empty");
  std::string m = std::move(a->inbox.front());
  a->inbox.erase(a->inbox.begin());
  if (a->inbox.empty()) a->inbox.shrink_to_fit();
  return m;
}

absl::Status Device::ReportAppExit(absl::string_view id, int exit_code,
                                   int signal) {
  App* a = FindApp(id);
  if (a == nullptr) {
    return Record(v1::ErrorEvent::APP_CRASH, AppComponentName(id),
                  absl::NotFoundError(absl::StrCat("no app ", id)));
  }
  if (exit_code == 0 && signal == 0) {
    a->running = false;
    return absl::OkStatus();
  }
  ++a->crashes;
  ++a->restarts;
  a->running = true;  // the OS restarts crashed apps
  a->last_pet = clock_->Now();
  Note(v1::ErrorEvent::APP_CRASH, a->image->component(),
       absl::AbortedError(absl::StrCat("app ", id, " crashed (exit ", exit_code,
                                       ", signal ", signal, "), crash #",
                                       a->crashes)),
       exit_code, signal);
  if (app_pending_ &&
      ++app_update_crashes_ >=
          static_cast<uint32_t>(type_->app_crash_loop_threshold)) {
    RollBackApps(absl::StrCat("crash loop: ", app_update_crashes_,
                              " crashes before confirmation"));
    InstallStep("rolled-back");
    apps_.clear();
    std::fill(peripheral_owner_.begin(), peripheral_owner_.end(), 0);
    StartInstalledApps();
  }
  return absl::OkStatus();
}

absl::Status Device::PetWatchdog(absl::string_view id) {
  App* a = FindApp(id);
  if (a == nullptr) {
    return Record(v1::ErrorEvent::WATCHDOG_RESET, AppComponentName(id),
                  absl::NotFoundError(absl::StrCat("no app ", id)));
  }
  a->last_pet = clock_->Now();
  return absl::OkStatus();
}

int Device::CheckWatchdogs() {
  const absl::Time now = clock_->Now();
  int restarted = 0;
  for (App& a : apps_) {
    uint32_t ms = a.manifest().watchdog_timeout_ms();
    if (!a.running || ms == 0) continue;
    if (now - a.last_pet > absl::Milliseconds(ms)) {
      ++a.restarts;
      ++a.crashes;
      a.last_pet = now;
      ++restarted;
      Note(v1::ErrorEvent::WATCHDOG_RESET, a.image->component(),
           absl::DeadlineExceededError(absl::StrCat(
               "app ", a.id(), " stopped petting the watchdog; restarted (",
               a.crashes, " crashes)")));
    }
  }
  return restarted;
}

}  // namespace sphere::mcu
