#include "securitysvc/osbuild/os_build.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/image.h"

namespace sphere::osbuild {
namespace {

std::string TempDir(const std::string &name) {
  const char *tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
}

TEST(OsBuildTest, WritesEverySignedBootChainComponent) {
  const auto key = crypto::EcPrivateKey::Generate();
  const std::string dir = TempDir("build");
  auto built = BuildOs(key, dir, 2);
  ASSERT_TRUE(built.ok()) << built.status();
  ASSERT_EQ(built->size(), mcu::BootChainComponents().size());
  for (size_t i = 0; i < built->size(); ++i) {
    const BuiltOsImage &b = (*built)[i];
    EXPECT_EQ(b.component, mcu::BootChainComponents()[i]);
    EXPECT_EQ(b.version, 2u);
    EXPECT_EQ(b.path, absl::StrCat(dir, "/images/os-2/", b.component, ".pkg"));
    auto bytes = util::ReadFile(b.path);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    v1::ImagePackage pkg;
    ASSERT_TRUE(pkg.ParseFromString(*bytes));
    auto verified = mcu::VerifyImage(pkg, key.PublicKey());
    ASSERT_TRUE(verified.ok()) << verified.status();
    EXPECT_EQ(crypto::HexEncode(verified->image_hash), b.image_id);
    EXPECT_EQ(verified->header.version(), 2u);
  }
}

TEST(OsBuildTest, RebuildKeepsImageIds) {
  const auto key = crypto::EcPrivateKey::Generate();
  const std::string dir = TempDir("rebuild");
  auto first = BuildOs(key, dir, 3);
  auto second = BuildOs(key, dir, 3);
  ASSERT_TRUE(first.ok() && second.ok());
  for (size_t i = 0; i < first->size(); ++i) {
    EXPECT_EQ((*first)[i].image_id, (*second)[i].image_id);
  }
}

TEST(OsBuildTest, VersionZeroIsRefused) {
  auto built = BuildOs(crypto::EcPrivateKey::Generate(), TempDir("zero"), 0);
  EXPECT_TRUE(absl::IsInvalidArgument(built.status())) << built.status();
}

}  // namespace
}  // namespace sphere::osbuild
