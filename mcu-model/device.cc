// Device construction (Manufacture), identity, and the helpers shared
// by the Device sections (declared in device_internal.h).
#include "mcu-model/device.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "mcu-model/device_internal.h"
#include "mcu-model/pluton.h"

namespace sphere::mcu {

using device_internal::InternKey;

namespace device_internal {

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

const std::string& CounterTenant(const v1::ImageHeader& h) {
  static const std::string* kPlatform = new std::string();
  return IsAppKind(h.kind()) ? h.tenant_id() : *kPlatform;
}

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

}  // namespace device_internal

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

}  // namespace sphere::mcu
