// TestPki: the platform PKI and device registry appsvc's unit tests share
// (testonly): a platform root, Contoso's tenant CA under it, a
// DeviceRegistry synced with tenant Contoso ("t-contoso") and product DW100
// ("p-dw100"), and claimed devices with Sphere-style device certificates.
// Validity times come from the injected clock, so a FakeClock test can move
// past expiry.
//
// Example:
//   sphere::FakeClock clock;
//   TestPki pki(&clock);
//   TestDevice d = pki.Device("full");        // claimed, in the registry
//   GatewayAuth auth(key, pki.root_pem(), &pki.registry(), &clock);
//
// Thread-safety: not thread-safe (a test fixture member).
#ifndef SPHERE_APPSVC_TEST_PKI_H_
#define SPHERE_APPSVC_TEST_PKI_H_

#include <cstdint>
#include <string>

#include "appsvc/device_registry.h"
#include "common/crypto/crypto.h"
#include "common/util/clock.h"
#include "protos/management.pb.h"

namespace contoso::appsvc {

// TestDevice: a device of the test PKI: its key, id and chain (device
// certificate + tenant CA).
struct TestDevice {
  sphere::crypto::EcPrivateKey key = sphere::crypto::EcPrivateKey::Generate();
  std::string id;
  std::string chain;
};

// Snap: a snapshot WatchEvent at `revision` (fill in one record).
sphere::v1::WatchEvent Snap(int64_t revision);

class TestPki {
 public:
  inline static constexpr char kTenantId[] = "t-contoso";
  inline static constexpr char kProductId[] = "p-dw100";

  // `clock` must outlive the TestPki.
  explicit TestPki(const sphere::Clock* clock);

  // Issue: a certificate for `key` signed by `issuer` (valid from an hour
  // ago for `lifetime`); server certificates name localhost/127.0.0.1.
  std::string Issue(const std::string& cn,
                    const sphere::crypto::EcPrivateKey& key,
                    sphere::crypto::KeyUsage usage,
                    const sphere::crypto::DeviceClaims& claims,
                    const sphere::crypto::EcPrivateKey& issuer,
                    const std::string& issuer_pem,
                    absl::Duration lifetime = absl::Hours(24 * 365)) const;
  // Ca: a CA certificate (self-signed when issuer_pem is empty).
  std::string Ca(const std::string& cn, const sphere::crypto::EcPrivateKey& key,
                 const sphere::crypto::EcPrivateKey& issuer,
                 const std::string& issuer_pem) const;
  // Device: a Contoso/DW100 device with a 24 h device certificate of
  // `scope` from the tenant CA; claimed in the registry (a live event after
  // the snapshot) unless `add_to_registry` is false.
  TestDevice Device(const std::string& scope = "full",
                    bool add_to_registry = true);
  // Revoke: the registry hears the device's revocation (a live event).
  void Revoke(const TestDevice& d);

  DeviceRegistry& registry() { return registry_; }
  const sphere::crypto::EcPrivateKey& root_key() const { return root_key_; }
  const std::string& root_pem() const { return root_pem_; }
  const std::string& tenant_pem() const { return tenant_pem_; }

 private:
  const sphere::Clock* const clock_;
  sphere::crypto::EcPrivateKey root_key_ =
      sphere::crypto::EcPrivateKey::Generate();
  sphere::crypto::EcPrivateKey tenant_key_ =
      sphere::crypto::EcPrivateKey::Generate();
  std::string root_pem_;
  std::string tenant_pem_;
  int64_t revision_ = 5;
  DeviceRegistry registry_{{"Contoso", "DW100"}};
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_TEST_PKI_H_
