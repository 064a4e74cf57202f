// DeviceFixture (test-only): what the mcu-model tests share to build
// devices: the platform image-signing key of the tests (a fixed scalar),
// the factory OS images it signed, app manifests and images, and a gtest
// fixture that manufactures and boots MT3620 devices on a FakeClock.
//
// Example:
//   class MyTest : public device_testing::DeviceFixture {};
//   TEST_F(MyTest, Boots) { auto d = Booted("seed"); ... }
//
// The key and images are built once per process (thread-safe statics); the
// fixture is used from the test's thread.
#ifndef SPHERE_MCU_MODEL_DEVICE_FIXTURE_H_
#define SPHERE_MCU_MODEL_DEVICE_FIXTURE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/crypto/crypto.h"
#include "common/util/clock.h"
#include "gtest/gtest.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"

namespace sphere::mcu::device_testing {

// SigningKey: the platform image-signing key of the tests.
const crypto::EcPrivateKey& SigningKey();
// Factory: the factory OS images (version 1) signed by SigningKey().
const std::vector<v1::ImagePackage>& Factory();
// Manifest: an app manifest for `id` needing `memory_kib` of RAM.
v1::AppManifest Manifest(const std::string& id, uint32_t memory_kib = 128);
// App: `m`'s app image at `version`, `size` bytes, signed by SigningKey().
v1::ImagePackage App(const v1::AppManifest& m, uint32_t version = 1,
                     size_t size = 64 * 1024);

class DeviceFixture : public ::testing::Test {
 protected:
  // Manufactured: a new MT3620 from `seed` on clock_, nothing installed.
  std::unique_ptr<Device> Manufactured(const std::string& seed);
  // Make: Manufactured, with the factory images installed (not booted).
  std::unique_ptr<Device> Make(const std::string& seed);
  // Booted: Make, then booted.
  std::unique_ptr<Device> Booted(const std::string& seed = "dev-1");

  FakeClock clock_;
};

}  // namespace sphere::mcu::device_testing

#endif  // SPHERE_MCU_MODEL_DEVICE_FIXTURE_H_
