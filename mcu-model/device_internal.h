// Internal to the mcu-model Device implementation (device*.cc): the Security
// Monitor, the Device::App record and helpers shared by the Device's sections
// (boot, attestation, update agent, app runtime, persistence). Not part of the
// Device API: include device.h instead.
#ifndef SPHERE_MCU_MODEL_DEVICE_INTERNAL_H_
#define SPHERE_MCU_MODEL_DEVICE_INTERNAL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mcu-model/device.h"

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

// Device::App: one loaded application (its image, core and runtime state).
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

namespace device_internal {

constexpr int kNumBootStages = 5;  // pluton-runtime .. os-services
constexpr int kFirstOsStage = 2;   // bootloader

// WithContext prefixes `s`'s message with `prefix`, keeping its code.
absl::Status WithContext(const absl::Status& s, absl::string_view prefix);

// HostAllowed: whether `m`'s allowed_connections admit `host` ("*.x" admits
// any subdomain of x).
bool HostAllowed(const v1::AppManifest& m, absl::string_view host);

// InternKey shares one copy of each image-signing public key between devices.
std::shared_ptr<const std::string> InternKey(const std::string& key);

bool IsAppKind(v1::ImageKind k);

// CounterTenant is the tenant half of an image's anti-rollback counter key:
// the owning tenant for applications, "" (platform) for boot-chain images.
const std::string& CounterTenant(const v1::ImageHeader& h);

// RollbackFloor is the lowest version of `h` the device accepts: its
// (tenant, component) counter. An app counter persisted before counters were
// per tenant (tenant "") still bounds every tenant's app of that name: the
// device cannot tell whose it was, and only platform-signed untenanted
// images (never a tenant upload) could have raised it.
uint32_t RollbackFloor(const Pluton& p, const v1::ImageHeader& h);

// SlotKib: KiB used by the (realtime or high-level) images of `slot`, leaving
// out component `except`.
uint32_t SlotKib(const std::vector<ImageRef>& slot, bool realtime,
                 absl::string_view except);

}  // namespace device_internal
}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_DEVICE_INTERNAL_H_
