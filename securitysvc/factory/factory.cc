#include "securitysvc/factory/factory.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cluster/pki_layout.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/pki/pki.h"
#include "twin/state_file.h"

namespace sphere::factory {
namespace {

class GrpcRegistry final : public DeviceRegistry {
 public:
  explicit GrpcRegistry(std::unique_ptr<v1::ManagementService::Stub> stub)
      : stub_(std::move(stub)) {}

  absl::Status Register(const std::string& public_key,
                        const std::string& device_type) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::ImportDevicesResponse resp;
    auto writer = stub_->ImportDevices(&ctx, &resp);
    v1::ImportDevicesRequest req;
    auto* d = req.add_devices();
    d->set_public_key(public_key);
    d->set_device_type(device_type);
    writer->Write(req);
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    if (!st.ok()) {
      absl::Status s = rpc::FromGrpcStatus(st);
      return absl::Status(
          s.code(),
          absl::StrCat("factory registry import failed: ", s.message()));
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<v1::ManagementService::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DeviceRegistry>> ManagementRegistry(
    const cluster::ClusterConfig& c) {
  auto cert = util::ReadFile(c.operator_cert),
       key = util::ReadFile(c.operator_key), root = util::ReadFile(c.root_ca);
  if (!cert.ok() || !key.ok() || !root.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "platform-operator credential missing (", c.operator_cert, ", ",
        c.operator_key, ", ", c.root_ca,
        "): the factory registers devices as the platform operator"));
  }
  rpc::TlsFiles tls;
  tls.cert_pem = *cert;
  tls.key_pem = *key;
  tls.ca_pem = *root;
  return std::make_unique<GrpcRegistry>(v1::ManagementService::NewStub(
      rpc::NewChannel(c.management, tls, c.ServerName("management"))));
}

absl::StatusOr<std::unique_ptr<Factory>> Factory::Open(
    const std::string& state_dir, uint32_t os_version,
    DeviceRegistry* registry) {
  pki::ClusterPki paths;
  paths.dir = cluster::PkiDir(state_dir);
  auto mfg_pem = util::ReadFile(paths.Path("manufacturing.pem"));
  auto mfg_key_pem = util::ReadFile(paths.Path("manufacturing.key"));
  auto signing_pem = util::ReadFile(paths.Path("image-signing.pub.pem"));
  if (!mfg_pem.ok() || !mfg_key_pem.ok() || !signing_pem.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "manufacturing CA or image-signing key missing under ", paths.dir,
        ": start the cluster once (it bootstraps the PKI)"));
  }
  auto mfg_key = crypto::EcPrivateKey::FromPem(*mfg_key_pem);
  if (!mfg_key.ok()) return mfg_key.status();
  auto signing_key = crypto::PublicKeyFromPem(*signing_pem);
  if (!signing_key.ok()) return signing_key.status();
  FactoryInputs inputs{*mfg_pem, std::move(*mfg_key), *signing_key, {}};
  for (const auto& component : mcu::BootChainComponents()) {
    const std::string path = absl::StrCat(state_dir, "/images/os-", os_version,
                                          "/", component, ".pkg");
    auto bytes = util::ReadFile(path);
    if (!bytes.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("factory OS image ", path, " missing: build OS ",
                       os_version, " with os_builder first"));
    }
    v1::ImagePackage pkg;
    if (!pkg.ParseFromString(*bytes)) {
      return absl::DataLossError(absl::StrCat("corrupt image package ", path));
    }
    inputs.factory_images.push_back(mcu::ToStoredImage(pkg));
  }
  return std::make_unique<Factory>(std::move(inputs), registry);
}

Factory::Factory(FactoryInputs inputs, DeviceRegistry* registry)
    : inputs_(std::move(inputs)), registry_(registry) {}

absl::StatusOr<ManufacturedTwin> Factory::Manufacture(
    std::optional<std::string> seed) {
  mcu::Device::Options options;
  options.seed = std::move(seed);
  auto device = mcu::Device::Manufacture(
      mcu::DeviceType::Mt3620(), inputs_.rom_image_signing_key, options);
  if (!device.ok()) return device.status();
  if (absl::Status s = (*device)->InstallFactoryImages(inputs_.factory_images);
      !s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat("installing the factory OS: ", s.message()));
  }
  const std::string device_id = (*device)->device_id();
  // Manufacturing TLS identity for the device's certificate (TLS) key; the
  // device key itself never leaves Pluton.
  crypto::CertificateSpec spec;
  spec.common_name = device_id;
  spec.organization = "Sphere Manufacturing";
  spec.subject_public_key = (*device)->CertificatePublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24 * 365 * 10);
  spec.usage = crypto::KeyUsage::kClientAuth;
  spec.claims.device_id = device_id;
  spec.claims.scope = "manufacturing";
  auto cert = crypto::IssueCertificate(spec, inputs_.manufacturing_key,
                                       inputs_.manufacturing_ca_pem);
  if (!cert.ok()) return cert.status();
  auto sealed = (*device)->Serialize();
  if (!sealed.ok()) return sealed.status();
  if (absl::Status s = registry_->Register((*device)->public_key(), "mt3620");
      !s.ok()) {
    return s;
  }
  ManufacturedTwin out;
  out.device_id = device_id;
  out.state.set_format(1);
  out.state.set_device(*sealed);
  out.state.set_manufacturing_chain_pem(*cert + inputs_.manufacturing_ca_pem);
  out.state.set_rom_image_signing_key(inputs_.rom_image_signing_key);
  return out;
}

absl::StatusOr<ManufacturedTwin> Factory::ManufactureTwin(
    const std::string& state_dir, const std::string& name,
    std::optional<std::string> seed) {
  if (absl::Status s = twin::ValidateTwinName(name); !s.ok()) return s;
  const std::string path = twin::TwinStatePath(state_dir, name);
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(absl::StrCat("twin ", name,
                                                 " already manufactured (",
                                                 path, "); pick another name"));
  }
  auto made = Manufacture(std::move(seed));
  if (!made.ok()) return made.status();
  if (absl::Status s = twin::WriteTwinState(path, made->state); !s.ok()) {
    return s;
  }
  return made;
}

}  // namespace sphere::factory
