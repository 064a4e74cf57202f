// twin: one simulated Azure Sphere device (an MT3620-like MCU with Pluton),
// as a process of its own.
//
//   twin --cluster DIR/cluster.json --name NAME manufacture
//       Pluton generates the device key; the factory issues the
//       manufacturing TLS certificate, installs the factory OS images and
//       records the public key in the platform's factory registry.
//   twin --cluster DIR/cluster.json --name NAME attest
//       Secure boot, then attestation against the owning shard; writes the
//       issued chain (leaf + tenant CA) to DIR/twins/NAME/device_chain.pem
//       and prints its outcome (UP_TO_DATE, or UPDATE_REQUIRED with the
//       outdated components), subject, claims and chain.
//       --min_catalog_revision N makes the shard answer from a catalog that
//       includes revision N (read-your-writes after a spherectl change).
//
// Device state lives in DIR/twins/NAME/ (device.state is sealed by Pluton).
#include <sys/stat.h>

#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cluster/cluster_config.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "protos/management.grpc.pb.h"
#include "twin/attestation_client.h"

ABSL_FLAG(std::string, cluster, "", "Path to DIR/cluster.json (required)");
ABSL_FLAG(std::string, name, "", "Twin name, e.g. dw100-0001 (required)");
ABSL_FLAG(absl::Duration, retry_budget, absl::Seconds(15),
          "How long attest retries an unavailable shard or a catalog that "
          "does not know the device yet");
ABSL_FLAG(uint32_t, factory_os_version, 1,
          "OS version installed at manufacture");
ABSL_FLAG(int64_t, min_catalog_revision, 0,
          "attest: have the shard answer from a catalog at least this new "
          "(e.g. the revision 'spherectl cluster status' reports after a "
          "change); 0 = the current revision, asked of management, which "
          "also refuses an unclaimed device at once");

namespace sphere::twin {
namespace {

struct Paths {
  std::string dir;
  std::string state() const { return dir + "/device.state"; }
  std::string mfg_cert() const { return dir + "/manufacturing.pem"; }
  std::string tls_key() const { return dir + "/tls.key"; }
  std::string chain() const { return dir + "/device_chain.pem"; }
  std::string token() const { return dir + "/session.token"; }
};

int Fail(const absl::Status& s) {
  std::cerr << "twin: error: " << s.message() << "\n";
  return 1;
}

absl::StatusOr<std::vector<v1::ImagePackage>> LoadFactoryImages(
    const std::string& state_dir, uint32_t version) {
  std::vector<v1::ImagePackage> out;
  for (const auto& component : mcu::BootChainComponents()) {
    std::string path = absl::StrCat(state_dir, "/images/os-", version, "/",
                                    component, ".pkg");
    auto bytes = rpc::ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    v1::ImagePackage pkg;
    if (!pkg.ParseFromString(*bytes)) {
      return absl::DataLossError(absl::StrCat("corrupt image package ", path));
    }
    out.push_back(std::move(pkg));
  }
  return out;
}

absl::StatusOr<std::string> SigningKey(const cluster::ClusterConfig& c) {
  auto pem = rpc::ReadFile(c.state_dir + "/pki/image-signing.pub.pem");
  if (!pem.ok()) return pem.status();
  return crypto::PublicKeyFromPem(*pem);
}

absl::StatusOr<std::unique_ptr<mcu::Device>> LoadDevice(
    const cluster::ClusterConfig& c, const Paths& p) {
  auto sealed = rpc::ReadFile(p.state());
  if (!sealed.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "twin ", p.dir, " was never manufactured: run 'twin manufacture'"));
  }
  auto key = SigningKey(c);
  if (!key.ok()) return key.status();
  return mcu::Device::Restore(mcu::DeviceType::Mt3620(), *key, *sealed, {});
}

absl::Status SaveDevice(mcu::Device& device, const Paths& p) {
  auto sealed = device.Serialize();
  if (!sealed.ok()) return sealed.status();
  return rpc::WriteFile(p.state(), *sealed, 0600);
}

int Manufacture(const cluster::ClusterConfig& c, const Paths& p) {
  if (auto s = rpc::MakeDirs(p.dir, 0700); !s.ok()) return Fail(s);
  struct stat st;
  if (stat(p.state().c_str(), &st) == 0) {
    return Fail(absl::AlreadyExistsError(
        absl::StrCat("twin ", p.dir, " already manufactured")));
  }
  auto signing_key = SigningKey(c);
  if (!signing_key.ok()) return Fail(signing_key.status());
  auto device = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                         *signing_key, {});
  if (!device.ok()) return Fail(device.status());
  auto images =
      LoadFactoryImages(c.state_dir, absl::GetFlag(FLAGS_factory_os_version));
  if (!images.ok()) return Fail(images.status());
  if (auto s = (*device)->InstallFactoryImages(*images); !s.ok()) {
    return Fail(s);
  }
  // Manufacturing TLS identity for the device's TLS (derived) key, signed by
  // the manufacturing CA; the device key itself never leaves Pluton.
  auto mfg_key_pem = rpc::ReadFile(c.state_dir + "/pki/manufacturing.key");
  auto mfg_pem = rpc::ReadFile(c.state_dir + "/pki/manufacturing.pem");
  if (!mfg_key_pem.ok()) return Fail(mfg_key_pem.status());
  if (!mfg_pem.ok()) return Fail(mfg_pem.status());
  auto mfg_key = crypto::EcPrivateKey::FromPem(*mfg_key_pem);
  if (!mfg_key.ok()) return Fail(mfg_key.status());
  crypto::CertificateSpec spec;
  spec.common_name = (*device)->device_id();
  spec.organization = "Sphere Manufacturing";
  spec.subject_public_key = (*device)->CertificatePublicKey();
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(24 * 365 * 10);
  spec.usage = crypto::KeyUsage::kClientAuth;
  spec.claims.device_id = (*device)->device_id();
  spec.claims.scope = "manufacturing";
  auto cert = crypto::IssueCertificate(spec, *mfg_key, *mfg_pem);
  if (!cert.ok()) return Fail(cert.status());
  if (auto s = rpc::WriteFile(p.mfg_cert(), *cert + *mfg_pem); !s.ok()) {
    return Fail(s);
  }
  if (auto s = rpc::WriteFile(p.tls_key(),
                              (*device)->ExportCertificateKeyForTls(), 0600);
      !s.ok()) {
    return Fail(s);
  }
  // Factory registry: record the public key with the platform.
  rpc::TlsFiles op;
  auto oc = rpc::ReadFile(c.operator_cert), ok = rpc::ReadFile(c.operator_key),
       root = rpc::ReadFile(c.root_ca);
  if (!oc.ok() || !ok.ok() || !root.ok()) {
    return Fail(absl::NotFoundError("operator credential missing in cluster"));
  }
  op.cert_pem = *oc;
  op.key_pem = *ok;
  op.ca_pem = *root;
  auto stub = v1::ManagementService::NewStub(rpc::NewChannel(c.management, op));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  v1::ImportDevicesResponse resp;
  auto writer = stub->ImportDevices(&ctx, &resp);
  v1::ImportDevicesRequest req;
  auto* d = req.add_devices();
  d->set_public_key((*device)->public_key());
  d->set_device_type("mt3620");
  writer->Write(req);
  writer->WritesDone();
  grpc::Status gst = writer->Finish();
  if (!gst.ok()) {
    return Fail(absl::UnavailableError(
        absl::StrCat("factory registry import failed: ", gst.error_message())));
  }
  if (auto s = SaveDevice(**device, p); !s.ok()) return Fail(s);
  std::cout << "manufactured " << absl::GetFlag(FLAGS_name) << " device_id "
            << (*device)->device_id() << "\n";
  return 0;
}

// ClaimedCatalogRevision asks management (with the cluster's operator
// credential, as the factory step does) whether the device is claimed, and
// returns the catalog revision that includes its claim, so the shard answers
// from a catalog that has it instead of being retried until it does.
// FailedPrecondition naming the fix for an unclaimed device; Unavailable if
// management cannot be asked.
absl::StatusOr<int64_t> ClaimedCatalogRevision(const cluster::ClusterConfig& c,
                                               const std::string& device_id) {
  auto oc = rpc::ReadFile(c.operator_cert), ok = rpc::ReadFile(c.operator_key),
       root = rpc::ReadFile(c.root_ca);
  if (!oc.ok() || !ok.ok() || !root.ok()) {
    return absl::UnavailableError("operator credential missing in cluster");
  }
  auto stub = v1::ManagementService::NewStub(
      rpc::NewChannel(c.management, rpc::TlsFiles{*oc, *ok, *root}));
  v1::GetDeviceRequest req;
  req.set_device_id(device_id);
  v1::Device d;
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  grpc::Status st = stub->GetDevice(&ctx, req, &d);
  if (!st.ok()) return rpc::FromGrpcStatus(st);
  if (d.state() == v1::UNCLAIMED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", device_id,
        " is not claimed; claim it with spherectl device claim --device ",
        device_id, " (and put it in a device group with spherectl device "
        "update --device ", device_id, " --device-group PRODUCT/GROUP)"));
  }
  v1::CatalogRevision rev;
  grpc::ClientContext rctx;
  rctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  st = stub->GetCatalogRevision(&rctx, v1::GetCatalogRevisionRequest(), &rev);
  if (!st.ok()) return rpc::FromGrpcStatus(st);
  return rev.revision();
}

int Attest(const cluster::ClusterConfig& c, const Paths& p) {
  auto device = LoadDevice(c, p);
  if (!device.ok()) return Fail(device.status());
  if (auto s = (*device)->Boot(); !s.ok()) {
    std::cerr << "twin: secure boot failed, device in recovery: "
              << s.message() << "\n";
  }
  rpc::TlsFiles tls;
  auto cert = rpc::ReadFile(p.mfg_cert()), key = rpc::ReadFile(p.tls_key()),
       root = rpc::ReadFile(c.root_ca);
  if (!cert.ok() || !key.ok() || !root.ok()) {
    return Fail(absl::NotFoundError("twin credentials missing"));
  }
  tls.cert_pem = *cert;
  tls.key_pem = *key;
  tls.ca_pem = *root;
  mcu::Device* dev = device->get();
  int64_t min_revision = absl::GetFlag(FLAGS_min_catalog_revision);
  if (min_revision == 0) {
    absl::StatusOr<int64_t> claimed =
        ClaimedCatalogRevision(c, dev->device_id());
    if (claimed.ok()) {
      min_revision = *claimed;
    } else if (absl::IsFailedPrecondition(claimed.status())) {
      return Fail(claimed.status());
    }  // else: attest anyway; the shard's answer says what is wrong
  }
  AttestationClient client(c.shards, tls);
  auto resp = client.AttestWithRetry(
      dev->device_id(),
      [dev](absl::string_view nonce) { return dev->Quote(nonce); },
      absl::GetFlag(FLAGS_retry_budget), min_revision);
  if (auto s = SaveDevice(*dev, p); !s.ok()) return Fail(s);
  if (!resp.ok()) return Fail(resp.status());
  // Verify what we received before trusting it.
  auto chain = crypto::SplitPemChain(resp->certificate_chain_pem());
  if (chain.size() < 2) {
    return Fail(absl::DataLossError("service returned an incomplete chain"));
  }
  if (auto s = crypto::VerifyChain(chain[0], chain[1], *root, absl::Now(),
                                   /*require_client_auth=*/true);
      !s.ok()) {
    return Fail(s);
  }
  auto leaf = crypto::ParseCertificate(chain[0]);
  if (!leaf.ok()) return Fail(leaf.status());
  if (leaf->public_key != dev->CertificatePublicKey()) {
    return Fail(absl::DataLossError(
        "issued certificate is not for this device's key"));
  }
  if (auto s = rpc::WriteFile(p.chain(), resp->certificate_chain_pem());
      !s.ok()) {
    return Fail(s);
  }
  if (auto s = rpc::WriteFile(p.token(), resp->session_token(), 0600);
      !s.ok()) {
    return Fail(s);
  }
  std::cout << "attested " << absl::GetFlag(FLAGS_name) << " outcome "
            << v1::AttestationOutcome_Name(resp->outcome()) << "\n"
            << "  subject: " << leaf->subject_line << "\n"
            << "  issuer:  " << leaf->issuer_line << "\n"
            << "  claims:  device=" << leaf->claims.device_id
            << " tenant=" << leaf->claims.tenant_id
            << " product=" << leaf->claims.product_id
            << " group=" << leaf->claims.device_group_id
            << " scope=" << leaf->claims.scope << "\n"
            << "  valid until " << absl::FormatTime(leaf->not_after) << "\n"
            << "  chain:   " << p.chain() << " (device -> " << leaf->issuer_line
            << " -> Sphere Platform Root CA)\n";
  if (resp->outdated_components_size() > 0) {
    std::cout << "  update required for: "
              << absl::StrJoin(resp->outdated_components(), ", ") << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace sphere::twin

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "twin --cluster DIR/cluster.json --name NAME (manufacture|attest)");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2 || absl::GetFlag(FLAGS_cluster).empty() ||
      absl::GetFlag(FLAGS_name).empty()) {
    std::cerr << "usage: twin --cluster DIR/cluster.json --name NAME "
                 "(manufacture|attest)\n";
    return 2;
  }
  sphere::log::SetComponent(absl::StrCat("twin:", absl::GetFlag(FLAGS_name)));
  auto c = sphere::cluster::LoadClusterConfig(absl::GetFlag(FLAGS_cluster));
  if (!c.ok()) return sphere::twin::Fail(c.status());
  sphere::twin::Paths p{
      absl::StrCat(c->state_dir, "/twins/", absl::GetFlag(FLAGS_name))};
  std::string cmd = args[1];
  if (cmd == "manufacture") return sphere::twin::Manufacture(*c, p);
  if (cmd == "attest") return sphere::twin::Attest(*c, p);
  std::cerr << "twin: unknown command '" << cmd
            << "': expected manufacture or attest\n";
  return 2;
}
