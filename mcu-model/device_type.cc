#include "mcu-model/device_type.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::mcu {

std::shared_ptr<const DeviceType> DeviceType::Mt3620() {
  static const std::shared_ptr<const DeviceType>* kType = [] {
    auto t = std::make_shared<DeviceType>();
    t->name = "mt3620";
    uint32_t off = 0;
    auto add = [&](absl::string_view name, uint32_t kib) {
      t->partitions.push_back({std::string(name), off, kib});
      off += kib;
    };
    add(kPartBoot, 64);
    add(kPartSecurityMonitor, 512);
    add(kPartOsA, 4096);
    add(kPartOsB, 4096);
    add(kPartAppA, 2048);
    add(kPartAppB, 2048);
    add(kPartRealtimeApps, 1024);
    add(kPartConfig, 256);
    add(kPartStorage, 2048);
    t->os_reserved_ram_kib = 3584;  // 512 KiB left for high-level apps
    for (int i = 0; i < 8; ++i)
      t->peripherals.push_back(absl::StrCat("GPIO", i));
    for (int i = 0; i < 4; ++i)
      t->peripherals.push_back(absl::StrCat("UART", i));
    for (int i = 0; i < 2; ++i)
      t->peripherals.push_back(absl::StrCat("I2C", i));
    for (int i = 0; i < 2; ++i)
      t->peripherals.push_back(absl::StrCat("SPI", i));
    t->peripherals.push_back("ADC0");
    for (int i = 0; i < 2; ++i)
      t->peripherals.push_back(absl::StrCat("PWM", i));
    // Model of the per-type fuse secret (see device.h "Persistence").
    t->fuse_key = crypto::Sha256("sphere-mt3620-fuse-key-model-v1");
    return new std::shared_ptr<const DeviceType>(std::move(t));
  }();
  return *kType;
}

absl::Status DeviceType::Validate() const {
  std::vector<PartitionSpec> p = partitions;
  std::sort(p.begin(), p.end(), [](const auto& a, const auto& b) {
    return a.offset_kib < b.offset_kib;
  });
  uint32_t end = 0;
  for (const PartitionSpec& s : p) {
    if (s.offset_kib < end) {
      return absl::InvalidArgumentError(
          absl::StrCat("partition ", s.name, " overlaps its predecessor"));
    }
    end = s.offset_kib + s.size_kib;
  }
  if (end > flash_kib) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partitions need ", end, " KiB but flash has ", flash_kib, " KiB"));
  }
  if (os_reserved_ram_kib > ram_kib) {
    return absl::InvalidArgumentError("OS reserves more RAM than exists");
  }
  if (fuse_key.size() != 32) {
    return absl::InvalidArgumentError("fuse key must be 32 bytes");
  }
  return absl::OkStatus();
}

const PartitionSpec* DeviceType::Partition(absl::string_view name) const {
  for (const PartitionSpec& p : partitions) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

int DeviceType::PeripheralIndex(absl::string_view name) const {
  for (size_t i = 0; i < peripherals.size(); ++i) {
    if (peripherals[i] == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace sphere::mcu
