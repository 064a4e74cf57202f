// image_fuzzer: signed image packages and their headers and app manifests, as
// devices install them and as the platform receives uploads.
//
// Input: a serialized v1::ImagePackage. The target runs
//  * VerifyImage on the package as sent (signature, header, payload digest);
//  * VerifyImage on the same header and payload signed by the platform key,
//    so mutated headers and manifests reach header validation;
//  * the upload pipeline (ImagePipeline::Process) as a tenant and as the
//    platform, and ResignImage;
//  * the flash form: ToStoredImage, VerifyStoredImage, InternImage.
// Invariants: what the platform re-signs, a device verifies; a verified
// image's hash is ImageHash(header); the stored form verifies like the
// package.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_support.h"
#include "mcu-model/image.h"
#include "mcu-model/image_record.h"
#include "protos/device.pb.h"
#include "securitysvc/management/image_pipeline.h"

namespace {

const sphere::crypto::EcPrivateKey& SigningKey() {
  static const auto* key =
      new sphere::crypto::EcPrivateKey(sphere::fuzz::FuzzKey("image-signing"));
  return *key;
}

void CheckVerified(const sphere::v1::ImagePackage& pkg,
                   const sphere::mcu::VerifiedImage& v,
                   const std::string& public_key) {
  sphere::fuzz::Check(v.image_hash == sphere::mcu::ImageHash(pkg.header()),
                      "verified image hash is not ImageHash(header)");
  absl::StatusOr<sphere::mcu::VerifiedImage> stored =
      sphere::mcu::VerifyStoredImage(sphere::mcu::ToStoredImage(pkg),
                                     public_key);
  sphere::fuzz::Check(stored.ok(), "stored form of a verified image refused");
  sphere::fuzz::Check(stored->image_hash == v.image_hash,
                      "stored form has another image hash");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sphere::v1::ImagePackage pkg;
  const std::string bytes(sphere::fuzz::Bytes(data, size));
  if (!pkg.ParseFromString(bytes)) return 0;
  const std::string public_key = SigningKey().PublicKey();

  absl::StatusOr<sphere::mcu::VerifiedImage> as_sent =
      sphere::mcu::VerifyImage(pkg, public_key);
  if (as_sent.ok()) CheckVerified(pkg, *as_sent, public_key);
  (void)sphere::mcu::VerifyStoredImage(sphere::mcu::ToStoredImage(pkg),
                                       public_key);
  (void)sphere::mcu::InternImage(sphere::mcu::ToStoredImage(pkg));

  // Signed by the platform as it is: reaches header and manifest checks.
  sphere::v1::ImagePackage signed_pkg = pkg;
  absl::StatusOr<std::string> sig =
      SigningKey().Sign(absl::StrCat(sphere::mcu::kImageContext, pkg.header()));
  sphere::fuzz::Check(sig.ok(), "signing failed");
  signed_pkg.set_signature(*sig);
  absl::StatusOr<sphere::mcu::VerifiedImage> verified =
      sphere::mcu::VerifyImage(signed_pkg, public_key);
  if (verified.ok()) CheckVerified(signed_pkg, *verified, public_key);

  // The upload pipeline, as a tenant and as the platform operator.
  static const auto* pipeline =
      new sphere::management::ImagePipeline(SigningKey(), /*package_dir=*/"");
  for (absl::string_view tenant : {"tenant-fuzz", ""}) {
    absl::StatusOr<sphere::v1::Image> image = pipeline->Process(tenant, bytes);
    if (image.ok()) {
      sphere::fuzz::Check(image->image_hash().size() == 32,
                          "catalog image hash is not 32 bytes");
    }
  }
  absl::StatusOr<sphere::v1::ImagePackage> resigned =
      sphere::mcu::ResignImage(pkg, SigningKey());
  if (resigned.ok()) {
    absl::StatusOr<sphere::mcu::VerifiedImage> v =
        sphere::mcu::VerifyImage(*resigned, public_key);
    sphere::fuzz::Check(v.ok(), "a re-signed image does not verify");
    CheckVerified(*resigned, *v, public_key);
  }
  return 0;
}
