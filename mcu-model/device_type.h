// DeviceType: the constants shared by every device of one hardware type
// (flash partition table, RAM budget, peripherals, limits, the fuse key that
// seals persisted state). One instance is shared (std::shared_ptr<const>) by
// all devices of the type, so per-device memory holds only mutable state.
// Immutable after construction; safe to share across threads.
#ifndef SPHERE_MCU_MODEL_DEVICE_TYPE_H_
#define SPHERE_MCU_MODEL_DEVICE_TYPE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace sphere::mcu {

// Partition names of the flash partition table.
inline constexpr absl::string_view kPartBoot = "boot";
inline constexpr absl::string_view kPartSecurityMonitor = "security-monitor";
inline constexpr absl::string_view kPartOsA = "os-a";
inline constexpr absl::string_view kPartOsB = "os-b";
inline constexpr absl::string_view kPartAppA = "app-a";
inline constexpr absl::string_view kPartAppB = "app-b";
inline constexpr absl::string_view kPartRealtimeApps = "rt-apps";
inline constexpr absl::string_view kPartConfig = "config";
inline constexpr absl::string_view kPartStorage = "storage";

struct PartitionSpec {
  std::string name;
  uint32_t offset_kib = 0;
  uint32_t size_kib = 0;
};

struct DeviceType {
  std::string name;
  uint32_t flash_kib = 16 * 1024;
  // partitions: boot (A/B selector + boot-attempt counter), security-monitor
  // (Pluton runtime + Security Monitor), os-a/os-b (bootloader, kernel, OS
  // services), app-a/app-b (high-level apps), rt-apps, config, storage
  // (per-app mutable storage, each app limited by its manifest quota).
  std::vector<PartitionSpec> partitions;
  uint32_t ram_kib = 4 * 1024;       // Cortex-A7 SRAM budget
  uint32_t os_reserved_ram_kib = 0;  // kernel + OS services share
  uint32_t rt_core_ram_kib = 192;    // TCM per Cortex-M4 core
  int num_rt_cores = 2;
  std::vector<std::string> peripherals;  // GPIO0.., UART0.., I2C0.., ...
  size_t error_ring_capacity = 16;
  int max_boot_attempts = 3;          // unconfirmed boots before rollback
  int app_crash_loop_threshold = 3;   // crashes of an unconfirmed app update
  size_t mailbox_capacity = 8;        // messages queued per direction
  size_t mailbox_max_message = 1024;  // bytes per mailbox message
  std::string update_service_host = "update.sphere";
  std::string fuse_key;  // 32 bytes: seals persisted state

  // Mt3620 returns the MT3620-like type (16 MiB flash, 4 MiB RAM, 2 M4
  // cores). Shared singleton.
  static std::shared_ptr<const DeviceType> Mt3620();

  // Validate checks that partitions fit the flash and do not overlap.
  absl::Status Validate() const;

  // Partition returns the named partition or nullptr.
  const PartitionSpec* Partition(absl::string_view name) const;

  // PeripheralIndex returns the index of `name` or -1.
  int PeripheralIndex(absl::string_view name) const;

  uint32_t AppRamKib() const { return ram_kib - os_reserved_ram_kib; }
};

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_DEVICE_TYPE_H_
