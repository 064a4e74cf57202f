// ImagePipeline tests. Attacks assert the specific error and that nothing was
// signed or stored (no package file written).
#include "securitysvc/management/image_pipeline.h"

#include <dirent.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mcu-model/image.h"

namespace sphere::management {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  closedir(d);
  return out;
}

class ImagePipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/pipeline-",
                        crypto::HexEncode(crypto::RandomBytes(6)));
    ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
  }

  // A tenant-built application package (signed with the tenant's own key;
  // the pipeline re-signs it) whose header names `component`.
  v1::ImagePackage TenantApp(absl::string_view component,
                             absl::string_view component_id = "dw100-app") {
    v1::AppManifest m;
    m.set_component_id(std::string(component_id));
    auto pkg = mcu::BuildAppImage(tenant_key_, m, 999, 4096);
    EXPECT_TRUE(pkg.ok()) << pkg.status();
    v1::ImageHeader h;
    EXPECT_TRUE(h.ParseFromString(pkg->header()));
    h.set_component(std::string(component));
    auto renamed = mcu::SignImage(h, pkg->payload(), tenant_key_);
    EXPECT_TRUE(renamed.ok()) << renamed.status();
    return *renamed;
  }

  crypto::EcPrivateKey signing_key_ = crypto::EcPrivateKey::Generate();
  crypto::EcPrivateKey tenant_key_ = crypto::EcPrivateKey::Generate();
  std::string dir_;
};

TEST_F(ImagePipelineTest, TenantAppIsResignedByThePlatform) {
  ImagePipeline pipeline(signing_key_, dir_);
  auto image = pipeline.Process(
      "tenant-1", TenantApp(mcu::AppComponentName("dw100-app"))
                      .SerializeAsString());
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->component(), "app:dw100-app");
  EXPECT_EQ(image->tenant_id(), "tenant-1");
  EXPECT_EQ(Files(dir_).size(), 1u);
}

// A tenant application named like a boot-chain component ("kernel" v999)
// used to be re-signed by the platform. Measured at app start, it stood in
// for the OS component in attestation (the verifier keys versions by
// component name), so a device running an outdated kernel got a full-scope
// certificate, and on the device it raised the kernel's anti-rollback
// counter.
TEST_F(ImagePipelineTest, Attack_TenantAppNamedLikeBootChainComponent) {
  ImagePipeline pipeline(signing_key_, dir_);
  for (const std::string& component : mcu::BootChainComponents()) {
    SCOPED_TRACE(component);
    auto image =
        pipeline.Process("tenant-1", TenantApp(component).SerializeAsString());
    ASSERT_FALSE(image.ok());
    EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(image.status().message(),
                HasSubstr("must be named \"app:dw100-app\""));
  }
  EXPECT_TRUE(Files(dir_).empty());
}

TEST_F(ImagePipelineTest, Attack_TenantAppNamedAfterAnotherAppsId) {
  ImagePipeline pipeline(signing_key_, dir_);
  auto image = pipeline.Process(
      "tenant-1", TenantApp("app:other-app", "dw100-app").SerializeAsString());
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(),
              HasSubstr("must be named \"app:dw100-app\""));
  EXPECT_TRUE(Files(dir_).empty());
}

}  // namespace
}  // namespace sphere::management
