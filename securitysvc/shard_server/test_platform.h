// TestPlatform (test-only): a platform in miniature for in-process shards:
// PKI (root, tenant CA, server and gateway credentials), a catalog with one
// tenant, its OS release ("24.10" on RETAIL) and claimed devices (mcu-model),
// and a ShardServer hosting the attestation plug-in on port 0 over a store of
// the caller's choice. Used by shard_server_test and shard_memory_benchmark.
//
// Not thread-safe (set up from one thread; the server itself is).
#ifndef SPHERE_SECURITYSVC_SHARD_SERVER_TEST_PLATFORM_H_
#define SPHERE_SECURITYSVC_SHARD_SERVER_TEST_PLATFORM_H_

#include <memory>
#include <string>
#include <vector>

#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "mcu-model/device.h"
#include "securitysvc/auth/scope.h"
#include "protos/attestation.grpc.pb.h"
#include "securitysvc/attestation/attestation_plugin.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/shard_server/shard_server.h"

namespace sphere::shard {

class TestPlatform {
 public:
  static constexpr char kTenant[] = "tenant-contoso";
  static constexpr char kGroup[] = "group-production";

  struct Options {
    // Opens the shard's store; unset = a MemoryStore.
    std::function<absl::StatusOr<std::unique_ptr<store::Store>>(
        const std::vector<std::string>&)>
        open_store;
    attestation::AttestationPlugin::Options attestation;
    RevisionGate::Options revision_gate;
    // More plug-ins for the shard (e.g. update), built once the platform's
    // keys and factory images exist.
    std::function<std::vector<std::unique_ptr<ShardPlugin>>(TestPlatform&)>
        extra_plugins;
  };

  TestPlatform() : clock_(absl::Now()) {}
  ~TestPlatform();

  // Start builds the PKI and catalog (at revision 1) and starts the shard.
  absl::Status Start(Options options);
  // NewDevice manufactures, boots and claims a device (catalog entry).
  absl::StatusOr<std::unique_ptr<mcu::Device>> NewDevice(
      const std::string& seed);
  // Issue: a TLS credential signed by the root with the given claims.
  rpc::TlsFiles Issue(const std::string& cn, crypto::KeyUsage usage,
                      const crypto::DeviceClaims& claims);
  // ManufacturingTls: the device's own manufacturing identity.
  rpc::TlsFiles ManufacturingTls(const mcu::Device& d);
  // DeviceTls: a device certificate as attestation issues it: `d` in
  // kTenant and kGroup at epoch "0", with `scope`.
  rpc::TlsFiles DeviceTls(const mcu::Device& d, const std::string& scope);
  // SessionToken: a session token for `d` in kTenant with `scope`
  // (certificate serial "01"), valid for an hour of clock().
  std::string SessionToken(const mcu::Device& d, auth::Scope scope);
  std::unique_ptr<v1::AttestationService::Stub> Stub(const rpc::TlsFiles& tls);
  std::unique_ptr<v1::DeviceStatusService::Stub> StatusStub(
      const rpc::TlsFiles& tls);

  FakeClock& clock() { return clock_; }
  catalog::InMemoryCatalog& catalog() { return *catalog_; }
  ShardServer& server() { return *server_; }
  attestation::AttestationPlugin& attestation() { return *attestation_; }
  const rpc::TlsFiles& gateway_tls() const { return gateway_tls_; }
  const rpc::TlsFiles& server_tls() const { return server_tls_; }
  // The platform image-signing key and the factory OS images it signed (the
  // catalog's release "24.10").
  const crypto::EcPrivateKey& image_signing_key() const { return signing_; }
  const std::vector<v1::ImagePackage>& factory_images() const {
    return images_;
  }

 private:
  FakeClock clock_;
  crypto::EcPrivateKey root_key_;
  crypto::EcPrivateKey signing_;
  std::string root_pem_;
  std::string signing_public_key_;
  std::vector<v1::ImagePackage> images_;
  rpc::TlsFiles server_tls_, gateway_tls_;
  std::unique_ptr<catalog::InMemoryCatalog> catalog_;
  attestation::AttestationPlugin* attestation_ = nullptr;
  std::unique_ptr<ShardServer> server_;
};

}  // namespace sphere::shard

#endif  // SPHERE_SECURITYSVC_SHARD_SERVER_TEST_PLATFORM_H_
