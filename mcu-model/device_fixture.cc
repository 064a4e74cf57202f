#include "mcu-model/device_fixture.h"

#include <utility>

namespace sphere::mcu::device_testing {

const crypto::EcPrivateKey& SigningKey() {
  static const auto* k = new crypto::EcPrivateKey(
      *crypto::EcPrivateKey::FromScalar(crypto::Sha256("platform-signing")));
  return *k;
}

const std::vector<v1::ImagePackage>& Factory() {
  static const auto* f =
      new std::vector<v1::ImagePackage>(*BuildFactoryImages(SigningKey(), 1));
  return *f;
}

v1::AppManifest Manifest(const std::string& id, uint32_t memory_kib) {
  v1::AppManifest m;
  m.set_component_id(id);
  m.set_memory_kib(memory_kib);
  return m;
}

v1::ImagePackage App(const v1::AppManifest& m, uint32_t version, size_t size) {
  return *BuildAppImage(SigningKey(), m, version, size);
}

std::unique_ptr<Device> DeviceFixture::Manufactured(const std::string& seed) {
  Device::Options o;
  o.seed = seed;
  o.clock = &clock_;
  auto d = Device::Manufacture(DeviceType::Mt3620(), SigningKey().PublicKey(),
                               std::move(o));
  EXPECT_TRUE(d.ok()) << d.status();
  return *std::move(d);
}

std::unique_ptr<Device> DeviceFixture::Make(const std::string& seed) {
  auto d = Manufactured(seed);
  EXPECT_TRUE(d->InstallFactoryImages(Factory()).ok());
  return d;
}

std::unique_ptr<Device> DeviceFixture::Booted(const std::string& seed) {
  auto d = Make(seed);
  absl::Status s = d->Boot();
  EXPECT_TRUE(s.ok()) << s;
  return d;
}

}  // namespace sphere::mcu::device_testing
