#include "mcu-model/image.h"

#include "common/crypto/crypto.h"
#include "gtest/gtest.h"
#include "mcu-model/image_signature_cache.h"

namespace sphere::mcu {
namespace {

TEST(ImageTest, SignVerifyRoundTrip) {
  auto key = crypto::EcPrivateKey::Generate();
  absl::StatusOr<v1::ImagePackage> pkg = BuildOsImage(key, kKernel, 3);
  ASSERT_TRUE(pkg.ok()) << pkg.status();
  absl::StatusOr<VerifiedImage> v = VerifyImage(*pkg, key.PublicKey());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->header.component(), "kernel");
  EXPECT_EQ(v->header.version(), 3u);
  EXPECT_EQ(v->header.kind(), v1::IMAGE_KIND_KERNEL);
  EXPECT_EQ(v->image_hash, crypto::Sha256(pkg->header()));
  EXPECT_TRUE(VerifyStoredImage(ToStoredImage(*pkg), key.PublicKey()).ok());
}

TEST(ImageTest, TamperedPayloadIsUnauthenticated) {
  auto key = crypto::EcPrivateKey::Generate();
  v1::ImagePackage pkg = *BuildOsImage(key, kBootloader, 1);
  (*pkg.mutable_payload())[100] ^= 1;
  EXPECT_EQ(VerifyImage(pkg, key.PublicKey()).status().code(),
            absl::StatusCode::kUnauthenticated);
}

TEST(ImageTest, WrongKeyIsUnauthenticated) {
  auto key = crypto::EcPrivateKey::Generate();
  auto other = crypto::EcPrivateKey::Generate();
  v1::ImagePackage pkg = *BuildOsImage(other, kBootloader, 1);
  EXPECT_EQ(VerifyImage(pkg, key.PublicKey()).status().code(),
            absl::StatusCode::kUnauthenticated);
  // The platform re-signs the uploaded package: then it verifies.
  absl::StatusOr<v1::ImagePackage> resigned = ResignImage(pkg, key);
  ASSERT_TRUE(resigned.ok());
  EXPECT_TRUE(VerifyImage(*resigned, key.PublicKey()).ok());
}

// The verified-signature cache: a second verification of the same bytes is
// a hit; any change to the signature, header, key or payload after a cached
// success is still refused, and the cached success stays as it was.
TEST(ImageTest, Attack_ChangedImageAfterACachedVerifyIsRefused) {
  auto key = crypto::EcPrivateKey::Generate();
  auto other = crypto::EcPrivateKey::Generate();
  const v1::ImagePackage pkg = *BuildOsImage(key, kKernel, 7);
  ASSERT_TRUE(VerifyImage(pkg, key.PublicKey()).ok());
  const ImageSignatureCacheStats before = GetImageSignatureCacheStats();
  ASSERT_TRUE(VerifyImage(pkg, key.PublicKey()).ok());
  const ImageSignatureCacheStats after = GetImageSignatureCacheStats();
  EXPECT_EQ(after.hits, before.hits + 1);
  EXPECT_EQ(after.misses, before.misses);

  v1::ImagePackage bad_sig = pkg;
  (*bad_sig.mutable_signature())[10] ^= 1;
  EXPECT_EQ(VerifyImage(bad_sig, key.PublicKey()).status().code(),
            absl::StatusCode::kUnauthenticated);
  v1::ImagePackage bad_header = pkg;
  bad_header.mutable_header()->back() ^= 1;
  EXPECT_FALSE(VerifyImage(bad_header, key.PublicKey()).ok());
  EXPECT_EQ(VerifyImage(pkg, other.PublicKey()).status().code(),
            absl::StatusCode::kUnauthenticated);
  // Same header and signature (a cache hit for the signature), other
  // payload: the digest check still refuses it.
  v1::ImagePackage bad_payload = pkg;
  (*bad_payload.mutable_payload())[0] ^= 1;
  EXPECT_EQ(VerifyImage(bad_payload, key.PublicKey()).status().code(),
            absl::StatusCode::kUnauthenticated);
  v1::StoredImage stored = ToStoredImage(pkg);
  stored.set_payload_size(stored.payload_size() + 1);
  EXPECT_EQ(VerifyStoredImage(stored, key.PublicKey()).status().code(),
            absl::StatusCode::kUnauthenticated);
  // Nothing the refusals did changed the genuine image's answer.
  absl::StatusOr<VerifiedImage> v = VerifyImage(pkg, key.PublicKey());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->header.version(), 7u);
}

TEST(ImageTest, FactorySetIsCompleteAndDeterministic) {
  auto key = *crypto::EcPrivateKey::FromScalar(std::string(31, '\0') + "\x07");
  auto a = BuildFactoryImages(key, 5);
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), BootChainComponents().size());
  auto b = BuildFactoryImages(key, 5);
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].header(), (*b)[i].header());
    EXPECT_EQ((*a)[i].payload(), (*b)[i].payload());
    auto v = VerifyImage((*a)[i], key.PublicKey());
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->header.component(), BootChainComponents()[i]);
    EXPECT_EQ(v->header.payload_size(),
              FactoryPayloadSize(BootChainComponents()[i]));
  }
}

TEST(ImageTest, AppImageCarriesManifest) {
  auto key = crypto::EcPrivateKey::Generate();
  v1::AppManifest m;
  m.set_component_id("dw100");
  m.add_peripherals("GPIO0");
  auto pkg = BuildAppImage(key, m, 2, 10000);
  ASSERT_TRUE(pkg.ok());
  auto v = VerifyImage(*pkg, key.PublicKey());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->header.component(), "app:dw100");
  EXPECT_EQ(v->header.kind(), v1::IMAGE_KIND_APPLICATION);
  EXPECT_EQ(v->header.manifest().peripherals(0), "GPIO0");
  EXPECT_EQ(v->header.payload_size(), 10000u);
}

}  // namespace
}  // namespace sphere::mcu
