// attest_fuzzer: a whole attestation as a shard's Attestor sees it: the
// AttestRequest from outside, checked against the catalog (registered device,
// tenant, group, platform-signed images and the versions its feed should
// run), then the certificate issued and the record written and read back.
//
// Input: a serialized v1::AttestRequest. The fixture (built once) is a shard
// catalog with one tenant (CA key wrapped under FuzzMasterKey), a group on
// the Retail feed, an OS release of the factory images (version 1) and one
// claimed device whose key is FuzzKey("device"). Each input is attested
//  1. as sent; then
//  2. with its quote body bound to a fresh challenge for the fixture device
//     and re-signed by the device key, so mutated bodies (event logs, image
//     hashes, versions, counters, certificate keys) reach every check after
//     the signature and nonce.
// Every input gets a fresh store and nonce store.
// Invariants: a successful attestation leaves a readable LastRecord and a
// certificate chain that verifies to the root and a session token for the
// device; History always reads back.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "fuzz/fuzz_support.h"
#include "mcu-model/image.h"
#include "mcu-model/quote.h"
#include "protos/attestation.pb.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/attestation/nonce_store.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"

using sphere::fuzz::Check;

namespace {

struct Fixture {
  sphere::FakeClock clock{sphere::fuzz::FuzzNow()};
  std::string root_pem = sphere::fuzz::FuzzRootPem();
  sphere::crypto::EcPrivateKey device_key = sphere::fuzz::FuzzKey("device");
  std::string device_id;
  sphere::catalog::InMemoryCatalog view{sphere::fuzz::FuzzMasterKey()};
  sphere::auth::SessionTokens tokens{sphere::crypto::Sha256("fuzz-tokens")};
};

Fixture* MakeFixture() {
  auto* f = new Fixture;
  const sphere::crypto::EcPrivateKey root = sphere::fuzz::FuzzKey("root");
  const sphere::crypto::EcPrivateKey ca_key =
      sphere::fuzz::FuzzKey("tenant-ca");
  sphere::crypto::CertificateSpec ca;
  ca.common_name = "Contoso CA";
  ca.subject_public_key = ca_key.PublicKey();
  ca.serial = 2;
  ca.not_before = sphere::fuzz::FuzzNow() - absl::Hours(1);
  ca.not_after = sphere::fuzz::FuzzNow() + absl::Hours(24 * 365);
  ca.usage = sphere::crypto::KeyUsage::kCa;
  auto ca_pem = sphere::crypto::IssueCertificate(ca, root, f->root_pem);
  Check(ca_pem.ok(), "tenant CA");
  sphere::v1::Tenant tenant;
  tenant.set_id("t-contoso");
  tenant.set_name("Contoso");
  tenant.set_ca_certificate_pem(*ca_pem);
  auto wrapped = sphere::catalog::WrapTenantCaKey(sphere::fuzz::FuzzMasterKey(),
                                                  tenant.id(), ca_key);
  Check(wrapped.ok(), "wrap tenant CA key");
  tenant.set_wrapped_ca_key(*wrapped);
  Check(f->view.PutTenant(tenant).ok(), "put tenant");

  sphere::v1::DeviceGroup group;
  group.set_id("g-field");
  group.set_tenant_id(tenant.id());
  group.set_product_id("p-dw100");
  group.set_name("Field Test");
  group.set_os_feed(sphere::v1::RETAIL);
  f->view.PutGroup(group);

  auto images = sphere::mcu::BuildFactoryImages(
      sphere::fuzz::FuzzKey("image-signing"), 1);
  Check(images.ok(), "factory images");
  sphere::v1::OsRelease release;
  release.set_feed(sphere::v1::RETAIL);
  release.set_version("1");
  release.set_create_revision(1);
  for (const sphere::v1::ImagePackage& pkg : *images) {
    sphere::v1::ImageHeader h;
    Check(h.ParseFromString(pkg.header()), "image header");
    sphere::v1::Image image;
    image.set_image_hash(sphere::mcu::ImageHash(pkg.header()));
    image.set_id(sphere::crypto::HexEncode(image.image_hash()));
    image.set_component(h.component());
    image.set_version(h.version());
    image.set_kind(h.kind());
    image.set_size(h.payload_size());
    f->view.PutImage(image);
    release.add_image_ids(image.id());
  }
  f->view.PutOsRelease(release);

  f->device_id = sphere::crypto::HexEncode(
      sphere::crypto::Sha256(f->device_key.PublicKey()));
  sphere::v1::Device device;
  device.set_id(f->device_id);
  device.set_public_key(f->device_key.PublicKey());
  device.set_tenant_id(tenant.id());
  device.set_product_id(group.product_id());
  device.set_device_group_id(group.id());
  device.set_state(sphere::v1::CLAIMED);
  device.set_device_type("mt3620");
  f->view.PutDevice(device);
  return f;
}

void AttestOnce(const Fixture& f, sphere::attestation::Attestor& attestor,
                const sphere::v1::AttestRequest& request) {
  absl::StatusOr<sphere::v1::AttestResponse> resp = attestor.Attest(request);
  if (resp.ok()) {
    Check(attestor.LastRecord(request.device_id()).ok(),
          "a successful attestation left no readable record");
    std::vector<std::string> chain =
        sphere::crypto::SplitPemChain(resp->certificate_chain_pem());
    Check(chain.size() == 2, "certificate chain is not device + tenant CA");
    Check(sphere::crypto::VerifyChain(chain[0], chain[1], f.root_pem,
                                      f.clock.Now(), true)
              .ok(),
          "an issued device certificate does not verify to the root");
    absl::StatusOr<sphere::auth::DeviceContext> ctx =
        f.tokens.Verify(resp->session_token(), f.clock.Now());
    Check(ctx.ok() && ctx->device_id == request.device_id(),
          "an issued session token does not verify for the device");
  }
  (void)attestor.History(request.device_id());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* f = MakeFixture();
  sphere::v1::AttestRequest request;
  if (!request.ParseFromString(std::string(sphere::fuzz::Bytes(data, size)))) {
    return 0;
  }
  auto store =
      sphere::store::MemoryStore::Create(sphere::attestation::ColumnFamilies());
  Check(store.ok(), "memory store");
  sphere::attestation::NonceStore nonces(&f->clock);
  sphere::attestation::Attestor attestor(&f->view, store->get(), &nonces,
                                         &f->tokens, &f->clock, {});

  // 1. As sent (mostly refused at the signature or the nonce).
  (void)attestor.GetChallenge(request.device_id());
  AttestOnce(*f, attestor, request);

  // 2. Bound to a fresh challenge of the fixture device and re-signed.
  sphere::v1::QuoteBody body;
  if (!body.ParseFromString(request.quote().body())) return 0;
  absl::StatusOr<sphere::v1::GetChallengeResponse> challenge =
      attestor.GetChallenge(f->device_id);
  Check(challenge.ok(), "challenge for the fixture device");
  body.set_nonce(challenge->nonce());
  body.set_device_id(f->device_id);
  sphere::v1::AttestRequest resigned;
  resigned.set_device_id(f->device_id);
  resigned.mutable_quote()->set_body(body.SerializeAsString());
  absl::StatusOr<std::string> sig = f->device_key.Sign(
      absl::StrCat(sphere::mcu::kQuoteContext, resigned.quote().body()));
  Check(sig.ok(), "sign quote");
  resigned.mutable_quote()->set_signature(*sig);
  AttestOnce(*f, attestor, resigned);
  return 0;
}
