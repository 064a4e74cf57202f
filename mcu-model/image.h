// mcu-model/image: the signed image package format of the platform.
//
// An ImagePackage is {header, payload, signature}: the header (ImageHeader:
// component, version, kind, payload size + SHA-256, app manifest, and for
// applications the owning tenant_id; "" for platform OS images) is signed by
// the platform image-signing key (P-256) as
//   signature = ECDSA(SHA-256("sphere-image-v1" || header)),
// and binds the payload by its digest. The device holds only the signing
// PUBLIC key (in ROM). The image hash that Pluton measures into the boot event
// log is ImageHash() = SHA-256(header), which commits to everything above.
//
// Example (platform side):
//   v1::ImageHeader h;
//   h.set_component("kernel"); h.set_version(7);
//   h.set_kind(v1::IMAGE_KIND_KERNEL);
//   absl::StatusOr<v1::ImagePackage> pkg = SignImage(h, payload, signing_key);
// Device side:
//   absl::StatusOr<VerifiedImage> v = VerifyImage(*pkg, rom_public_key);
#ifndef SPHERE_MCU_MODEL_IMAGE_H_
#define SPHERE_MCU_MODEL_IMAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/crypto/crypto.h"
#include "protos/device.pb.h"

namespace sphere::mcu {

inline constexpr absl::string_view kImageContext = "sphere-image-v1";
inline constexpr uint32_t kImageFormatVersion = 1;

// Boot-chain component names (BootEvent.component, ImageHeader.component).
inline constexpr absl::string_view kPlutonRuntime = "pluton-runtime";
inline constexpr absl::string_view kSecurityMonitor = "security-monitor";
inline constexpr absl::string_view kBootloader = "bootloader";
inline constexpr absl::string_view kKernel = "kernel";
inline constexpr absl::string_view kOsServices = "os-services";

// BootChainComponents lists the components after ROM, in boot order.
const std::vector<std::string>& BootChainComponents();

// KindForComponent maps a boot-chain component name to its ImageKind
// (IMAGE_KIND_UNSPECIFIED for anything else).
v1::ImageKind KindForComponent(absl::string_view component);

// RegisterForKind returns the measurement register an image kind extends
// (0 Secure World, 1 bootloader/kernel, 2 OS services, 3 applications).
int RegisterForKind(v1::ImageKind kind);

// AppComponentName returns "app:<component_id>".
std::string AppComponentName(absl::string_view component_id);

// ImageHash returns SHA-256 of the serialized header bytes.
std::string ImageHash(absl::string_view header_bytes);

// SignImage fills header.format_version, payload_size and payload_sha256 from
// `payload`, serializes the header and signs it. Errors: InvalidArgument
// (empty component, unspecified kind, invalid key).
absl::StatusOr<v1::ImagePackage> SignImage(v1::ImageHeader header,
                                           absl::string_view payload,
                                           const crypto::EcPrivateKey& key);

// ResignImage re-signs an uploaded package with the platform key after
// checking that its payload matches its header (the platform re-signs all
// device software). The signed header's tenant_id is set to `tenant_id`
// (whatever the upload claimed): the tenant the platform signs the app for,
// which devices use to key the app's anti-rollback counter.
// Errors: InvalidArgument (malformed or payload mismatch).
absl::StatusOr<v1::ImagePackage> ResignImage(const v1::ImagePackage& package,
                                             const crypto::EcPrivateKey& key,
                                             absl::string_view tenant_id = "");

// VerifiedImage is the result of a successful verification.
struct VerifiedImage {
  v1::ImageHeader header;
  std::string image_hash;  // ImageHash(header bytes)
};

// VerifyImage checks signature, header and payload digest/size against the
// image-signing public key. Errors: Unauthenticated (signature invalid, or
// payload does not match the signed digest: a tampered image),
// InvalidArgument (malformed header/format).
absl::StatusOr<VerifiedImage> VerifyImage(const v1::ImagePackage& package,
                                          absl::string_view signing_public_key);

// ToStoredImage returns the flash form (payload replaced by its digest).
v1::StoredImage ToStoredImage(const v1::ImagePackage& package);

// VerifyStoredImage is VerifyImage on the flash form.
absl::StatusOr<VerifiedImage> VerifyStoredImage(
    const v1::StoredImage& stored, absl::string_view signing_public_key);

// SyntheticPayload returns `size` deterministic bytes derived from
// (component, version): reproducible images for tests and the cluster.
std::string SyntheticPayload(absl::string_view component, uint32_t version,
                             size_t size);

// FactoryPayloadSize is the realistic synthetic size of a boot-chain
// component (fits the MT3620-like flash partitions of DeviceType).
size_t FactoryPayloadSize(absl::string_view component);

// BuildFactoryImages returns the complete boot chain (pluton-runtime,
// security-monitor, bootloader, kernel, os-services), all at `version`, with
// synthetic payloads, signed by `key`. Deterministic for a given key+version.
absl::StatusOr<std::vector<v1::ImagePackage>> BuildFactoryImages(
    const crypto::EcPrivateKey& key, uint32_t version);

// BuildOsImage builds one boot-chain component image at `version`.
absl::StatusOr<v1::ImagePackage> BuildOsImage(const crypto::EcPrivateKey& key,
                                              absl::string_view component,
                                              uint32_t version);

// BuildAppImage builds an application image for `manifest` (kind from
// manifest.realtime) with a synthetic payload of `payload_size` bytes, signed
// for `tenant_id` ("" = untenanted, as before per-tenant counters).
absl::StatusOr<v1::ImagePackage> BuildAppImage(
    const crypto::EcPrivateKey& key, const v1::AppManifest& manifest,
    uint32_t version, size_t payload_size, absl::string_view tenant_id = "");

}  // namespace sphere::mcu

#endif  // SPHERE_MCU_MODEL_IMAGE_H_
