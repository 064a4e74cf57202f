// ImagePipeline tests. Attacks assert the specific error and that nothing was
// signed or stored (no package file written).
#include "securitysvc/management/image_pipeline.h"

#include <dirent.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mcu-model/image.h"
#include "securitysvc/management/limits.h"

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
  std::string package_key_ = PackageKeyFromMasterKey(crypto::RandomBytes(32));
  std::string dir_;
};

TEST_F(ImagePipelineTest, TenantAppIsResignedByThePlatform) {
  ImagePipeline pipeline(signing_key_, dir_, package_key_);
  auto image = pipeline.Process(
      "tenant-1",
      TenantApp(mcu::AppComponentName("dw100-app")).SerializeAsString());
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->component(), "app:dw100-app");
  EXPECT_EQ(image->tenant_id(), "tenant-1");
  EXPECT_EQ(Files(dir_).size(), 1u);
}

// Issue 8, hole 3 (device side): the re-signed header names the tenant the
// platform signed the app for (devices key anti-rollback counters by tenant
// and component), whatever tenant the upload itself claimed.
TEST_F(ImagePipelineTest, ResignedTenantAppHeaderCarriesTheTenant) {
  ImagePipeline pipeline(signing_key_, dir_, package_key_);
  v1::ImagePackage app = TenantApp(mcu::AppComponentName("dw100-app"));
  v1::ImageHeader claimed;
  ASSERT_TRUE(claimed.ParseFromString(app.header()));
  claimed.set_tenant_id("contoso");  // Evil claims to upload for Contoso
  auto forged = mcu::SignImage(claimed, app.payload(), tenant_key_);
  ASSERT_TRUE(forged.ok()) << forged.status();
  auto image = pipeline.Process("evil", forged->SerializeAsString());
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->tenant_id(), "evil");
  auto back = pipeline.ReadPackage(image->id());
  ASSERT_TRUE(back.ok()) << back.status();
  auto verified = mcu::VerifyImage(*back, signing_key_.PublicKey());
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->header.tenant_id(), "evil");
  EXPECT_EQ(crypto::HexEncode(verified->image_hash), image->id());
  // The same bytes uploaded by Contoso become a distinct image for Contoso.
  auto mine = pipeline.Process("contoso", forged->SerializeAsString());
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_NE(mine->id(), image->id());
  auto mine_back = pipeline.ReadPackage(mine->id());
  ASSERT_TRUE(mine_back.ok()) << mine_back.status();
  EXPECT_EQ(mcu::VerifyImage(*mine_back, signing_key_.PublicKey())
                ->header.tenant_id(),
            "contoso");
}

// A tenant application named like a boot-chain component ("kernel" v999)
// used to be re-signed by the platform. Measured at app start, it stood in
// for the OS component in attestation (the verifier keys versions by
// component name), so a device running an outdated kernel got a full-scope
// certificate, and on the device it raised the kernel's anti-rollback
// counter.
TEST_F(ImagePipelineTest, Attack_TenantAppNamedLikeBootChainComponent) {
  ImagePipeline pipeline(signing_key_, dir_, package_key_);
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
  ImagePipeline pipeline(signing_key_, dir_, package_key_);
  auto image = pipeline.Process(
      "tenant-1", TenantApp("app:other-app", "dw100-app").SerializeAsString());
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(),
              HasSubstr("must be named \"app:dw100-app\""));
  EXPECT_TRUE(Files(dir_).empty());
}

// Tenant packages used to sit in plaintext, 0644, in the state directory.
TEST_F(ImagePipelineTest, PackagesAreSealedAtRestAndPrivate) {
  ImagePipeline pipeline(signing_key_, dir_, package_key_);
  v1::ImagePackage app = TenantApp(mcu::AppComponentName("dw100-app"));
  auto image = pipeline.Process("tenant-1", app.SerializeAsString());
  ASSERT_TRUE(image.ok()) << image.status();
  const std::string path = absl::StrCat(dir_, "/", image->id(), ".pkg");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto raw = util::ReadFile(path);
  ASSERT_TRUE(raw.ok());
  // Neither the payload nor the component name is readable on disk.
  EXPECT_EQ(raw->find(app.payload().substr(0, 64)), std::string::npos);
  EXPECT_EQ(raw->find("app:dw100-app"), std::string::npos);
  auto back = pipeline.ReadPackage(image->id());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->payload(), app.payload());
  EXPECT_TRUE(mcu::VerifyImage(*back, signing_key_.PublicKey()).ok());

  // Another master key, or a flipped byte, does not open it.
  ImagePipeline other(signing_key_, dir_,
                      PackageKeyFromMasterKey(crypto::RandomBytes(32)));
  EXPECT_EQ(other.ReadPackage(image->id()).status().code(),
            absl::StatusCode::kDataLoss);
  std::string tampered = *raw;
  tampered[tampered.size() / 2] ^= 1;
  ASSERT_TRUE(util::WriteFile(path, tampered, 0600).ok());
  EXPECT_EQ(pipeline.ReadPackage(image->id()).status().code(),
            absl::StatusCode::kDataLoss);
}

// Component ids with ESC, NUL, "../" or 1 MB reached the operator's terminal.
TEST_F(ImagePipelineTest, Attack_ComponentIdWithControlCharactersIsRefused) {
  ImagePipeline pipeline(signing_key_, dir_, package_key_);
  for (const std::string id :
       {std::string("dw\x1b[2J"), std::string("dw\0x", 4),
        std::string("../../x"), std::string(1 << 20, 'a')}) {
    auto image = pipeline.Process(
        "tenant-1",
        TenantApp(mcu::AppComponentName(id), id).SerializeAsString());
    ASSERT_FALSE(image.ok());
    EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(image.status().message(), HasSubstr("component"));
    EXPECT_EQ(std::string(image.status().message()).find('\x1b'),
              std::string::npos);
    EXPECT_LT(image.status().message().size(), 300u);
  }
  EXPECT_TRUE(Files(dir_).empty());
}

TEST_F(ImagePipelineTest, Fault_OversizedPackageIsRefusedBeforeParsing) {
  ImagePipeline pipeline(signing_key_, dir_, package_key_);
  auto image = pipeline.Process(
      "tenant-1", std::string(limits::kMaxImagePackageBytes + 1, 'x'));
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("the limit is"));
  EXPECT_TRUE(Files(dir_).empty());
}

TEST_F(ImagePipelineTest, Fault_NoPackageKeyStoresNothing) {
  ImagePipeline pipeline(signing_key_, dir_);
  auto image = pipeline.Process(
      "tenant-1",
      TenantApp(mcu::AppComponentName("dw100-app")).SerializeAsString());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Files(dir_).empty());
}

}  // namespace
}  // namespace sphere::management
