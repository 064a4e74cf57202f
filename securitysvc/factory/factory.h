// Factory: the manufacturing line, platform-side. It creates a device in the
// MCU model (Pluton generates the device key), installs the factory OS,
// issues the manufacturing TLS identity for the device's certificate key
// with the manufacturing CA, records the device's public key in the
// platform's factory registry (ManagementService.ImportDevices) and hands
// back the twin's state file (twin/state_file.h).
//
// The manufacturing CA's private key lives here and in no device-side
// binary: the twin process only ever reads the state file this writes.
//
// Thread-safety: Manufacture is not thread-safe (one production line).
//
// Example:
//   auto factory = Factory::Open(state_dir, /*os_version=*/1, &registry);
//   auto twin = (*factory)->ManufactureTwin(state_dir, "dw100-0001");
//   // twin->device_id, DIR/twins/dw100-0001/twin.state
#ifndef SPHERE_SECURITYSVC_FACTORY_FACTORY_H_
#define SPHERE_SECURITYSVC_FACTORY_FACTORY_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cluster/cluster_config.h"
#include "common/crypto/crypto.h"
#include "protos/device.pb.h"
#include "twin/twin_state.pb.h"

namespace sphere::factory {

// DeviceRegistry records manufactured devices with the platform.
class DeviceRegistry {
 public:
  virtual ~DeviceRegistry() = default;
  virtual absl::Status Register(const std::string& public_key,
                                const std::string& device_type) = 0;
};

// ManagementRegistry registers through ManagementService.ImportDevices with
// the cluster's platform-operator credential (10 s deadline).
absl::StatusOr<std::unique_ptr<DeviceRegistry>> ManagementRegistry(
    const cluster::ClusterConfig& config);

// What the line needs: the manufacturing CA, the platform image-signing
// public key the ROM trusts, and the factory OS images (flash form).
struct FactoryInputs {
  std::string manufacturing_ca_pem;
  crypto::EcPrivateKey manufacturing_key;
  std::string rom_image_signing_key;  // SEC1
  std::vector<v1::StoredImage> factory_images;
};

struct ManufacturedTwin {
  std::string device_id;
  twin::TwinStateFile state;
};

class Factory {
 public:
  // Open reads DIR/pki (manufacturing CA, image-signing public key) and the
  // OS images DIR/images/os-<os_version>/<component>.pkg. `registry` must
  // outlive the Factory.
  static absl::StatusOr<std::unique_ptr<Factory>> Open(
      const std::string& state_dir, uint32_t os_version,
      DeviceRegistry* registry);
  Factory(FactoryInputs inputs, DeviceRegistry* registry);

  // Manufacture builds one device (`seed` set = deterministic keys, for
  // tests) and registers it. Nothing is written. Errors name the step.
  absl::StatusOr<ManufacturedTwin> Manufacture(
      std::optional<std::string> seed = std::nullopt);

  // ManufactureTwin validates `name`, refuses (AlreadyExists) to overwrite
  // an existing twin, manufactures, then writes DIR/twins/NAME/twin.state.
  // A registry failure writes nothing.
  absl::StatusOr<ManufacturedTwin> ManufactureTwin(
      const std::string& state_dir, const std::string& name,
      std::optional<std::string> seed = std::nullopt);

 private:
  FactoryInputs inputs_;
  DeviceRegistry* registry_;
};

}  // namespace sphere::factory

#endif  // SPHERE_SECURITYSVC_FACTORY_FACTORY_H_
