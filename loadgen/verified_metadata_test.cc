#include "loadgen/verified_metadata.h"

#include <string>

#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "common/update/metadata.h"
#include "common/update/metadata_test_support.h"
#include "gtest/gtest.h"

namespace sphere::loadgen {
namespace {

using update::UpdateError;
using update::UpdateErrorOf;

const absl::Time kNow = update::kMetadataTestNow;

v1::UpdateMetadata Metadata(uint64_t version) {
  return update::TestMetadata(version, {"kernel"});
}

class VerifiedMetadataCacheTest : public ::testing::Test {
 protected:
  v1::SignedUpdateMetadata Signed(uint64_t version) {
    auto s = update::SignMetadata(Metadata(version), key_);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  }
  crypto::EcPrivateKey key_ = crypto::EcPrivateKey::Generate();
  crypto::EcPrivateKey other_ = crypto::EcPrivateKey::Generate();
  VerifiedMetadataCache cache_;
};

TEST_F(VerifiedMetadataCacheTest, VerifiesOnceThenServesTheSameDocument) {
  const v1::SignedUpdateMetadata doc = Signed(7);
  for (int i = 0; i < 100; ++i) {
    auto md = cache_.Verify(doc, key_.PublicKey(), kNow, 0);
    ASSERT_TRUE(md.ok()) << md.status();
    EXPECT_EQ((*md)->metadata_version(), 7u);
    ASSERT_EQ((*md)->targets_size(), 1);
  }
  EXPECT_EQ(cache_.signature_checks(), 1u);
}

TEST_F(VerifiedMetadataCacheTest, Attack_ChangedMetadataByteIsVerifiedAfresh) {
  const v1::SignedUpdateMetadata doc = Signed(7);
  ASSERT_TRUE(cache_.Verify(doc, key_.PublicKey(), kNow, 0).ok());
  v1::SignedUpdateMetadata tampered = doc;  // same signature, other bytes
  std::string* bytes = tampered.mutable_metadata();
  (*bytes)[bytes->size() - 1] ^= 1;
  auto md = cache_.Verify(tampered, key_.PublicKey(), kNow, 0);
  EXPECT_EQ(md.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(UpdateErrorOf(md.status()), UpdateError::kBadSignature);
  EXPECT_EQ(cache_.signature_checks(), 2u);
  // The genuine document is still served (nothing was replaced).
  EXPECT_TRUE(cache_.Verify(doc, key_.PublicKey(), kNow, 0).ok());
  EXPECT_EQ(cache_.signature_checks(), 2u);
}

TEST_F(VerifiedMetadataCacheTest, Attack_AnotherKeyIsNotServedFromTheCache) {
  const v1::SignedUpdateMetadata doc = Signed(7);
  ASSERT_TRUE(cache_.Verify(doc, key_.PublicKey(), kNow, 0).ok());
  auto md = cache_.Verify(doc, other_.PublicKey(), kNow, 0);
  EXPECT_EQ(UpdateErrorOf(md.status()), UpdateError::kBadSignature);
  EXPECT_EQ(cache_.signature_checks(), 2u);
}

TEST_F(VerifiedMetadataCacheTest, Attack_ExpiredRememberedDocumentIsRefused) {
  const v1::SignedUpdateMetadata doc = Signed(7);
  ASSERT_TRUE(cache_.Verify(doc, key_.PublicKey(), kNow, 0).ok());
  auto md = cache_.Verify(doc, key_.PublicKey(), kNow + absl::Hours(25), 0);
  EXPECT_EQ(md.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(UpdateErrorOf(md.status()), UpdateError::kExpired);
}

TEST_F(VerifiedMetadataCacheTest,
       Attack_RememberedDocumentOlderThanAcceptedIsRefused) {
  const v1::SignedUpdateMetadata doc = Signed(7);
  ASSERT_TRUE(cache_.Verify(doc, key_.PublicKey(), kNow, 0).ok());
  auto md = cache_.Verify(doc, key_.PublicKey(), kNow, 8);
  EXPECT_EQ(md.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(UpdateErrorOf(md.status()), UpdateError::kRollback);
  EXPECT_TRUE(cache_.Verify(doc, key_.PublicKey(), kNow, 7).ok());
}

TEST_F(VerifiedMetadataCacheTest, StaysBoundedAndStillVerifiesEveryDocument) {
  VerifiedMetadataCache small(4);
  std::vector<v1::SignedUpdateMetadata> docs;
  for (uint64_t v = 1; v <= 10; ++v) docs.push_back(Signed(v));
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < docs.size(); ++i) {
      auto md = small.Verify(docs[i], key_.PublicKey(), kNow, 0);
      ASSERT_TRUE(md.ok()) << md.status();
      EXPECT_EQ((*md)->metadata_version(), i + 1);
    }
  }
  // 10 distinct documents, at most 4 held: every round misses.
  EXPECT_EQ(small.signature_checks(), 20u);
}

}  // namespace
}  // namespace sphere::loadgen
