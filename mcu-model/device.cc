#include "mcu-model/device.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
#include "mcu-model/image.h"

namespace sphere::mcu {

// SecurityMonitor: the Secure World of the Cortex-A7. The only holder of a
// SecureWorldToken, hence the only path to Pluton. It also owns flash writes,
// memory protection and firewall programming (Device calls it for those).
class SecurityMonitor {
 public:
  explicit SecurityMonitor(Pluton* pluton) : pluton_(pluton) {}
  Pluton& pluton() { return *pluton_; }
  const SecureWorldToken& token() const { return token_; }

 private:
  Pluton* pluton_;
  SecureWorldToken token_;
};

namespace {

constexpr int kNumBootStages = 5;  // pluton-runtime .. os-services
constexpr int kFirstOsStage = 2;   // bootloader

absl::Status WithContext(const absl::Status& s, absl::string_view prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

bool HostAllowed(const v1::AppManifest& m, absl::string_view host) {
  for (const std::string& a : m.allowed_connections()) {
    if (a == host) return true;
    if (absl::StartsWith(a, "*.") &&
        absl::EndsWith(host, absl::string_view(a).substr(1))) {
      return true;
    }
  }
  return false;
}

// InternKey shares one copy of each image-signing public key between devices.
std::shared_ptr<const std::string> InternKey(const std::string& key) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* keys = new std::vector<std::shared_ptr<const std::string>>();
  absl::MutexLock l(&mu);
  for (const auto& k : *keys) {
    if (*k == key) return k;
  }
  keys->push_back(std::make_shared<const std::string>(key));
  return keys->back();
}

bool IsAppKind(v1::ImageKind k) {
  return k == v1::IMAGE_KIND_APPLICATION || k == v1::IMAGE_KIND_REALTIME_APP;
}

// CounterTenant is the tenant half of an image's anti-rollback counter key:
// the owning tenant for applications, "" (platform) for boot-chain images.
const std::string& CounterTenant(const v1::ImageHeader& h) {
  static const std::string* kPlatform = new std::string();
  return IsAppKind(h.kind()) ? h.tenant_id() : *kPlatform;
}

// RollbackFloor is the lowest version of `h` the device accepts: its
// (tenant, component) counter. An app counter persisted before counters were
// per tenant (tenant "") still bounds every tenant's app of that name: the
// device cannot tell whose it was, and only platform-signed untenanted
// images (never a tenant upload) could have raised it.
uint32_t RollbackFloor(const Pluton& p, const v1::ImageHeader& h) {
  const std::string& tenant = CounterTenant(h);
  uint32_t floor = p.Counter(tenant, h.component());
  if (!tenant.empty()) floor = std::max(floor, p.Counter("", h.component()));
  return floor;
}

uint32_t SlotKib(const std::vector<ImageRef>& slot, bool realtime,
                 absl::string_view except) {
  uint32_t kib = 0;
  for (const ImageRef& i : slot) {
    bool rt = i->header.kind() == v1::IMAGE_KIND_REALTIME_APP;
    if (rt == realtime && i->component() != except) kib += i->size_kib();
  }
  return kib;
}

}  // namespace

const char* BootStateName(BootState s) {
  switch (s) {
    case BootState::kOff:
      return "off";
    case BootState::kRunning:
      return "running";
    case BootState::kRecovery:
      return "recovery";
  }
  return "?";
}

struct Device::App {
  ImageRef image;
  Core core = Core::kA7;
  bool running = true;
  uint32_t crashes = 0;
  uint32_t restarts = 0;
  absl::Time last_pet;
  std::string storage;             // sealed by Pluton
  std::vector<std::string> inbox;  // mailbox messages to this app
  const v1::AppManifest& manifest() const { return image->header.manifest(); }
  const std::string& id() const { return manifest().component_id(); }
  bool realtime() const {
    return image->header.kind() == v1::IMAGE_KIND_REALTIME_APP;
  }
};

Device::Device(std::shared_ptr<const DeviceType> type, std::string signing_key,
               Clock* clock)
    : type_(std::move(type)),
      signing_key_(InternKey(signing_key)),
      clock_(clock != nullptr ? clock : Clock::Real()) {
  peripheral_owner_.assign(type_->peripherals.size(), 0);
}

Device::~Device() = default;

absl::StatusOr<std::unique_ptr<Device>> Device::Manufacture(
    std::shared_ptr<const DeviceType> type,
    absl::string_view image_signing_public_key, Options options) {
  if (type == nullptr) return absl::InvalidArgumentError("no device type");
  if (absl::Status s = type->Validate(); !s.ok()) return s;
  if (image_signing_public_key.size() != 65) {
    return absl::InvalidArgumentError(
        "image-signing public key must be a 65-byte SEC1 point");
  }
  Pluton::Options po;
  po.seed = options.seed;
  po.entropy_for_test = std::move(options.entropy_for_test);
  absl::StatusOr<std::unique_ptr<Pluton>> pluton =
      Pluton::Create(std::move(po));
  if (!pluton.ok()) return pluton.status();
  std::unique_ptr<Device> d(new Device(
      std::move(type), std::string(image_signing_public_key), options.clock));
  d->pluton_ = *std::move(pluton);
  d->sm_ = std::make_unique<SecurityMonitor>(d->pluton_.get());
  return d;
}

// ---------------------------------------------------------------- identity

std::string Device::device_id() const { return pluton_->device_id(); }
std::string Device::public_key() const { return pluton_->public_key(); }
std::string Device::CertificatePublicKey() const {
  return pluton_->certificate_public_key();
}
uint64_t Device::boot_count() const { return pluton_->boot_count(); }
uint64_t Device::reset_count() const { return pluton_->reset_count(); }
bool Device::tampered() const { return pluton_->tampered(); }
uint32_t Device::AntiRollbackCounter(absl::string_view c) const {
  return pluton_->Counter(c);
}
uint32_t Device::AntiRollbackCounter(absl::string_view tenant,
                                     absl::string_view c) const {
  return pluton_->Counter(tenant, c);
}
std::string Device::Register(int i) const { return pluton_->Register(i); }

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

// ------------------------------------------------------------- attestation

absl::StatusOr<v1::Quote> Device::Quote(absl::string_view nonce) {
  if (state_ != BootState::kRunning) {
    return Record(v1::ErrorEvent::ATTESTATION_FAILED, "attestation",
                  absl::FailedPreconditionError(absl::StrCat(
                      "cannot quote: device is ", BootStateName(state_))));
  }
  absl::StatusOr<v1::Quote> q = pluton_->Quote(sm_->token(), nonce);
  if (!q.ok()) return Record(v1::ErrorEvent::TAMPER, "pluton", q.status());
  return q;
}

absl::StatusOr<std::string> Device::SignWithCertificateKey(
    absl::string_view msg) {
  absl::StatusOr<std::string> sig =
      pluton_->SignWithCertificateKey(sm_->token(), msg);
  if (!sig.ok()) return Record(v1::ErrorEvent::TAMPER, "pluton", sig.status());
  return sig;
}

std::string Device::ExportCertificateKeyForTls() const {
  return pluton_->ExportCertificateKeyForTls(sm_->token());
}

absl::StatusOr<std::string> Device::SecureMonitorCall(NormalWorldCaller caller,
                                                      absl::string_view op,
                                                      absl::string_view arg) {
  if (caller != NormalWorldCaller::kSupervisor) {
    return Record(v1::ErrorEvent::MANIFEST_VIOLATION, "security-monitor",
                  absl::PermissionDeniedError(absl::StrCat(
                      "Security Monitor call '", op,
                      "' refused: Normal World user mode cannot reach "
                      "Pluton")));
  }
  if (op == "quote") {
    absl::StatusOr<v1::Quote> q = Quote(arg);
    if (!q.ok()) return q.status();
    return q->SerializeAsString();
  }
  if (op == "cert-sign") return SignWithCertificateKey(arg);
  return Record(v1::ErrorEvent::MANIFEST_VIOLATION, "security-monitor",
                absl::InvalidArgumentError(
                    absl::StrCat("unknown Security Monitor call '", op, "'")));
}

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

// ---------------------------------------------------------- persistence

namespace {

std::string SealKey(const DeviceType& type) {
  return crypto::HmacSha256(type.fuse_key, "sphere-seal-v1");
}

void PutSlot(const std::vector<ImageRef>& slot,
             google::protobuf::RepeatedPtrField<v1::StoredImage>* out) {
  for (const ImageRef& i : slot) *out->Add() = i->stored;
}

absl::StatusOr<std::vector<ImageRef>> GetSlot(
    const google::protobuf::RepeatedPtrField<v1::StoredImage>& in) {
  std::vector<ImageRef> out;
  for (const v1::StoredImage& s : in) {
    absl::StatusOr<ImageRef> r = InternImage(s);
    if (!r.ok()) return r.status();
    out.push_back(*std::move(r));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> Device::Serialize() {
  const SecureWorldToken& t = sm_->token();
  absl::StatusOr<std::string> nonce = pluton_->RandomBytes(t, 12);
  if (!nonce.ok())
    return Record(v1::ErrorEvent::TAMPER, "pluton", nonce.status());
  v1::PersistedDeviceState st;
  st.set_format_version(1);
  st.set_device_type(type_->name);
  for (const auto& c : pluton_->counters()) *st.add_counters() = c;
  st.set_boot_count(pluton_->boot_count());
  st.set_reset_count(pluton_->reset_count());
  st.set_tamper_events(pluton_->tamper_events());
  st.set_tampered(pluton_->tampered());
  st.set_next_error_sequence(next_error_seq_);
  SaveErrorRing(&st);  // device_errors.cc
  st.set_active_os_slot(active_os_);
  st.set_os_boot_attempts(os_attempts_);
  st.set_os_pending_confirm(os_pending_);
  st.set_active_app_slot(active_app_);
  st.set_os_staged(os_staged_);
  st.set_app_staged(app_staged_);
  st.set_app_pending_confirm(app_pending_);
  st.set_app_update_crashes(app_update_crashes_);
  st.set_deferral_started_unix_ms(deferral_started_ms_);
  st.set_deferred_until_unix_ms(deferred_until_ms_);
  for (const ImageRef& i : secure_world_) {
    if (i) *st.add_secure_world_images() = i->stored;
  }
  PutSlot(os_slots_[0], st.mutable_os_slot_a());
  PutSlot(os_slots_[1], st.mutable_os_slot_b());
  PutSlot(app_slots_[0], st.mutable_app_slot_a());
  PutSlot(app_slots_[1], st.mutable_app_slot_b());
  st.set_rng_counter(pluton_->rng_counter());
  st.set_device_public_key(pluton_->public_key());
  std::string aad = st.SerializeAsString();
  absl::StatusOr<std::string> sealed = crypto::AesGcmSeal(
      SealKey(*type_), *nonce, pluton_->SealableSecrets(t), aad);
  if (!sealed.ok()) return sealed.status();
  st.set_seal_nonce(*nonce);
  st.set_sealed_secrets(*std::move(sealed));
  return st.SerializeAsString();
}

absl::StatusOr<std::unique_ptr<Device>> Device::Restore(
    std::shared_ptr<const DeviceType> type,
    absl::string_view image_signing_public_key, absl::string_view serialized,
    Options options) {
  if (type == nullptr) return absl::InvalidArgumentError("no device type");
  v1::PersistedDeviceState st;
  if (!st.ParseFromArray(serialized.data(),
                         static_cast<int>(serialized.size()))) {
    return absl::InvalidArgumentError("persisted device state does not parse");
  }
  if (st.device_type() != type->name) {
    return absl::InvalidArgumentError(
        absl::StrCat("persisted state is for device type ", st.device_type()));
  }
  v1::PersistedDeviceState aad_msg = st;
  aad_msg.clear_seal_nonce();
  aad_msg.clear_sealed_secrets();
  absl::StatusOr<std::string> secrets =
      crypto::AesGcmOpen(SealKey(*type), st.seal_nonce(), st.sealed_secrets(),
                         aad_msg.SerializeAsString());
  if (!secrets.ok()) {
    return absl::UnauthenticatedError(
        "persisted device state does not unseal under this device type's "
        "fuse key (edited or foreign state)");
  }
  absl::StatusOr<std::unique_ptr<Pluton>> pluton = Pluton::FromSecrets(
      *secrets, st.rng_counter(), std::move(options.entropy_for_test));
  if (!pluton.ok()) return pluton.status();
  if ((*pluton)->public_key() != st.device_public_key()) {
    return absl::UnauthenticatedError(
        "sealed key does not match the persisted device identity");
  }
  std::unique_ptr<Device> d(new Device(
      std::move(type), std::string(image_signing_public_key), options.clock));
  d->pluton_ = *std::move(pluton);
  d->sm_ = std::make_unique<SecurityMonitor>(d->pluton_.get());
  // Counters persisted before per-tenant keys have no tenant_id: they restore
  // as tenant "" (see RollbackFloor).
  std::vector<v1::AntiRollbackCounter> counters(st.counters().begin(),
                                                st.counters().end());
  d->pluton_->RestoreCounters(d->sm_->token(), counters,
                              st.boot_count(), st.reset_count(),
                              st.tamper_events(), st.tampered());
  d->next_error_seq_ = st.next_error_sequence();
  d->RestoreErrorRing(st);  // device_errors.cc
  d->active_os_ = st.active_os_slot() & 1;
  d->os_attempts_ = static_cast<uint8_t>(st.os_boot_attempts());
  d->os_pending_ = st.os_pending_confirm();
  d->active_app_ = st.active_app_slot() & 1;
  d->os_staged_ = st.os_staged();
  d->app_staged_ = st.app_staged();
  d->app_pending_ = st.app_pending_confirm();
  d->app_update_crashes_ = st.app_update_crashes();
  d->deferral_started_ms_ = st.deferral_started_unix_ms();
  d->deferred_until_ms_ = st.deferred_until_unix_ms();
  absl::StatusOr<std::vector<ImageRef>> sw = GetSlot(st.secure_world_images());
  if (!sw.ok()) return sw.status();
  for (size_t i = 0; i < sw->size() && i < 2; ++i)
    d->secure_world_[i] = (*sw)[i];
  const google::protobuf::RepeatedPtrField<v1::StoredImage>* slots[4] = {
      &st.os_slot_a(), &st.os_slot_b(), &st.app_slot_a(), &st.app_slot_b()};
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::vector<ImageRef>> s = GetSlot(*slots[i]);
    if (!s.ok()) return s.status();
    (i < 2 ? d->os_slots_[i] : d->app_slots_[i - 2]) = *std::move(s);
  }
  return d;
}

size_t Device::FootprintBytes() const {
  auto heap = [](const std::string& s) {
    return s.capacity() > 15 ? s.capacity() + 1 : 0;
  };
  size_t n =
      sizeof(Device) + sizeof(SecurityMonitor) + pluton_->FootprintBytes();
  for (const auto& s : os_slots_) n += s.capacity() * sizeof(ImageRef);
  for (const auto& s : app_slots_) n += s.capacity() * sizeof(ImageRef);
  n += apps_.capacity() * sizeof(App);
  for (const App& a : apps_) {
    n += heap(a.storage) + a.inbox.capacity() * sizeof(std::string);
    for (const std::string& m : a.inbox) n += heap(m);
  }
  n += peripheral_owner_.capacity();
  for (const v1::ErrorEvent& e : errors_) n += e.SpaceUsedLong();
  n += (errors_.capacity() - errors_.size()) * sizeof(v1::ErrorEvent);
  return n;
}

}  // namespace sphere::mcu
