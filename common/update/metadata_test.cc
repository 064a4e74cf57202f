#include "common/update/metadata.h"

#include <string>

#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "common/update/metadata_test_support.h"
#include "gtest/gtest.h"

namespace sphere::update {
namespace {

const absl::Time kNow = kMetadataTestNow;

class MetadataTest : public ::testing::Test {
 protected:
  crypto::EcPrivateKey key_ = crypto::EcPrivateKey::Generate();
  crypto::EcPrivateKey other_ = crypto::EcPrivateKey::Generate();
};

TEST_F(MetadataTest, SignThenVerifyRoundTrips) {
  auto s = SignMetadata(TestMetadata(5), key_);
  ASSERT_TRUE(s.ok()) << s.status();
  auto md = VerifyMetadata(*s, key_.PublicKey(), kNow, 0);
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(md->format_version(), kMetadataFormatVersion);
  EXPECT_EQ(md->metadata_version(), 5u);
  ASSERT_EQ(md->targets_size(), 2);
  EXPECT_NE(FindTarget(*md, md->targets(1).image_id()), nullptr);
  EXPECT_EQ(FindTarget(*md, "ff"), nullptr);
  // The same version again is accepted (refetch).
  EXPECT_TRUE(VerifyMetadata(*s, key_.PublicKey(), kNow, 5).ok());
}

TEST_F(MetadataTest, SignatureCoversContextPrefix) {
  auto s = SignMetadata(TestMetadata(5), key_);
  ASSERT_TRUE(s.ok());
  // The signature is over SHA-256(context || metadata), not the bare bytes.
  EXPECT_TRUE(crypto::EcdsaVerify(key_.PublicKey(),
                                  std::string(kMetadataContext) + s->metadata(),
                                  s->signature())
                  .ok());
  EXPECT_FALSE(
      crypto::EcdsaVerify(key_.PublicKey(), s->metadata(), s->signature())
          .ok());
}

TEST_F(MetadataTest, Attack_UnsignedMetadata) {
  auto s = SignMetadata(TestMetadata(5), key_);
  ASSERT_TRUE(s.ok());
  s->clear_signature();
  auto md = VerifyMetadata(*s, key_.PublicKey(), kNow, 0);
  EXPECT_EQ(md.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(UpdateErrorOf(md.status()), UpdateError::kBadSignature);
}

TEST_F(MetadataTest, Attack_SignedByAnotherKey) {
  auto s = SignMetadata(TestMetadata(5), other_);
  ASSERT_TRUE(s.ok());
  auto md = VerifyMetadata(*s, key_.PublicKey(), kNow, 0);
  EXPECT_EQ(md.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(UpdateErrorOf(md.status()), UpdateError::kBadSignature);
}

TEST_F(MetadataTest, Attack_TamperedMetadataBytes) {
  auto s = SignMetadata(TestMetadata(5), key_);
  ASSERT_TRUE(s.ok());
  v1::UpdateMetadata md = TestMetadata(5);
  md.set_format_version(kMetadataFormatVersion);
  md.mutable_targets(0)->set_version(99);  // attacker edits a target
  s->set_metadata(md.SerializeAsString());
  auto out = VerifyMetadata(*s, key_.PublicKey(), kNow, 0);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(UpdateErrorOf(out.status()), UpdateError::kBadSignature);
}

TEST_F(MetadataTest, Attack_ExpiredMetadataFreeze) {
  auto s = SignMetadata(TestMetadata(5), key_);
  ASSERT_TRUE(s.ok());
  auto md = VerifyMetadata(*s, key_.PublicKey(), kNow + absl::Hours(25), 0);
  EXPECT_EQ(md.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(UpdateErrorOf(md.status()), UpdateError::kExpired);
  // Exactly at expiry is already expired.
  auto at = VerifyMetadata(*s, key_.PublicKey(), kNow + absl::Hours(24), 0);
  EXPECT_EQ(UpdateErrorOf(at.status()), UpdateError::kExpired);
}

TEST_F(MetadataTest, Attack_OlderMetadataVersionRollback) {
  auto s = SignMetadata(TestMetadata(4), key_);
  ASSERT_TRUE(s.ok());
  auto md = VerifyMetadata(*s, key_.PublicKey(), kNow, 5);
  EXPECT_EQ(md.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(UpdateErrorOf(md.status()), UpdateError::kRollback);
}

TEST_F(MetadataTest, UnsupportedFormatVersionIsRefused) {
  v1::UpdateMetadata md = TestMetadata(5);
  md.set_format_version(2);
  v1::SignedUpdateMetadata s;
  s.set_metadata(md.SerializeAsString());
  s.set_signature(*key_.Sign(std::string(kMetadataContext) + s.metadata()));
  auto out = VerifyMetadata(s, key_.PublicKey(), kNow, 0);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UpdateErrorOf(out.status()), UpdateError::kUnsupportedFormat);
}

TEST_F(MetadataTest, OversizedEnvelopeRefusedBeforeSignatureCheck) {
  v1::SignedUpdateMetadata s;
  s.set_metadata(std::string(kMaxMetadataBytes + 1, 'x'));
  s.set_signature("sig");
  auto out = VerifyMetadata(s, key_.PublicKey(), kNow, 0);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UpdateErrorOf(out.status()), UpdateError::kMalformed);
  s.set_metadata("x");
  s.set_signature(std::string(kMaxSignatureBytes + 1, 's'));
  out = VerifyMetadata(s, key_.PublicKey(), kNow, 0);
  EXPECT_EQ(UpdateErrorOf(out.status()), UpdateError::kMalformed);
}

TEST_F(MetadataTest, SignRefusesWhatDevicesWouldRefuse) {
  v1::UpdateMetadata md = TestMetadata(5);
  for (size_t i = 0; i < kMaxTargets; ++i) {
    *md.add_targets() = TestTarget("app:a" + std::to_string(i), 1);
  }
  EXPECT_EQ(UpdateErrorOf(SignMetadata(md, key_).status()),
            UpdateError::kMalformed);

  md = TestMetadata(5);
  md.mutable_targets(0)->set_image_hash("short");
  EXPECT_EQ(UpdateErrorOf(SignMetadata(md, key_).status()),
            UpdateError::kMalformed);

  md = TestMetadata(5);
  md.mutable_targets(0)->set_package_size(kMaxPackageBytes + 1);
  EXPECT_EQ(UpdateErrorOf(SignMetadata(md, key_).status()),
            UpdateError::kMalformed);

  md = TestMetadata(5);
  md.mutable_targets(0)->set_component(std::string(kMaxIdBytes + 1, 'c'));
  EXPECT_EQ(UpdateErrorOf(SignMetadata(md, key_).status()),
            UpdateError::kMalformed);

  md = TestMetadata(5);
  *md.add_targets() = md.targets(0);  // duplicate image id
  EXPECT_EQ(UpdateErrorOf(SignMetadata(md, key_).status()),
            UpdateError::kMalformed);

  md = TestMetadata(5);
  md.set_expires_unix_ms(md.issued_unix_ms());
  EXPECT_EQ(UpdateErrorOf(SignMetadata(md, key_).status()),
            UpdateError::kMalformed);

  md = TestMetadata(0);
  EXPECT_EQ(UpdateErrorOf(SignMetadata(md, key_).status()),
            UpdateError::kMalformed);

  EXPECT_EQ(SignMetadata(TestMetadata(5), crypto::EcPrivateKey()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MetadataTest, UpdateErrorOfIgnoresForeignStatuses) {
  EXPECT_EQ(UpdateErrorOf(absl::OkStatus()), UpdateError::kNone);
  EXPECT_EQ(UpdateErrorOf(absl::InternalError("x")), UpdateError::kNone);
  EXPECT_STREQ(UpdateErrorName(UpdateError::kRollback), "rollback");
}

}  // namespace
}  // namespace sphere::update
