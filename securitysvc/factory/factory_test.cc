#include "securitysvc/factory/factory.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "twin/state_file.h"

namespace sphere::factory {
namespace {

class FakeRegistry : public DeviceRegistry {
 public:
  absl::Status Register(const std::string& public_key,
                        const std::string& device_type) override {
    if (!fail.ok()) return fail;
    keys.push_back(public_key);
    types.push_back(device_type);
    return absl::OkStatus();
  }
  absl::Status fail;
  std::vector<std::string> keys, types;
};

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

class FactoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto signing = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec ca;
    ca.common_name = "Test Manufacturing CA";
    ca.subject_public_key = mfg_key_.PublicKey();
    ca.not_before = absl::Now() - absl::Hours(1);
    ca.not_after = absl::Now() + absl::Hours(24 * 365 * 20);
    ca.usage = crypto::KeyUsage::kCa;
    mfg_pem_ = *crypto::IssueCertificate(ca, mfg_key_, "");
    FactoryInputs in{mfg_pem_, mfg_key_, signing.PublicKey(), {}};
    auto images = mcu::BuildFactoryImages(signing, 1);
    ASSERT_TRUE(images.ok()) << images.status();
    for (const auto& p : *images) {
      in.factory_images.push_back(mcu::ToStoredImage(p));
    }
    rom_key_ = in.rom_image_signing_key;
    factory_ = std::make_unique<Factory>(std::move(in), &registry_);
    dir_ = std::string(getenv("TEST_TMPDIR")) + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  crypto::EcPrivateKey mfg_key_ = crypto::EcPrivateKey::Generate();
  std::string mfg_pem_, rom_key_, dir_;
  FakeRegistry registry_;
  std::unique_ptr<Factory> factory_;
};

TEST_F(FactoryTest, ManufacturesARegisteredDeviceWithItsManufacturingIdentity) {
  auto made = factory_->Manufacture("seed-1");
  ASSERT_TRUE(made.ok()) << made.status();
  auto dev = mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                                  made->state.rom_image_signing_key(),
                                  made->state.device(), {});
  ASSERT_TRUE(dev.ok()) << dev.status();
  EXPECT_EQ((*dev)->device_id(), made->device_id);
  EXPECT_TRUE((*dev)->Boot().ok());  // the factory OS verifies under the ROM
  ASSERT_EQ(registry_.keys.size(), 1u);
  EXPECT_EQ(registry_.keys[0], (*dev)->public_key());
  EXPECT_EQ(registry_.types[0], "mt3620");

  auto chain = crypto::SplitPemChain(made->state.manufacturing_chain_pem());
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_TRUE(
      crypto::VerifyChain(chain[0], "", mfg_pem_, absl::Now(), true).ok());
  auto leaf = crypto::ParseCertificate(chain[0]);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(leaf->public_key, (*dev)->CertificatePublicKey());
  EXPECT_EQ(leaf->claims.device_id, made->device_id);
  EXPECT_EQ(leaf->claims.scope, "manufacturing");
  // The TLS key the twin derives matches the certificate.
  auto tls_key =
      crypto::EcPrivateKey::FromPem((*dev)->ExportCertificateKeyForTls());
  ASSERT_TRUE(tls_key.ok());
  EXPECT_EQ(tls_key->PublicKey(), leaf->public_key);
  // Nothing of the manufacturing CA's key reaches the twin's state.
  EXPECT_FALSE(
      absl::StrContains(made->state.SerializeAsString(), mfg_key_.ToPem()));
}

TEST_F(FactoryTest, WritesOneStateFilePerTwin) {
  auto made = factory_->ManufactureTwin(dir_, "dw100-1");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(ListDir(dir_ + "/twins/dw100-1"),
            std::vector<std::string>{"twin.state"});
  struct stat st;
  ASSERT_EQ(stat(twin::TwinStatePath(dir_, "dw100-1").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto state = twin::ReadTwinState(twin::TwinStatePath(dir_, "dw100-1"));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->device(), made->state.device());
}

TEST_F(FactoryTest, Attack_ExistingTwinIsNeverOverwritten) {
  ASSERT_TRUE(factory_->ManufactureTwin(dir_, "dw100-1").ok());
  const std::string path = twin::TwinStatePath(dir_, "dw100-1");
  auto before = util::ReadFile(path);
  ASSERT_TRUE(before.ok());
  auto again = factory_->ManufactureTwin(dir_, "dw100-1");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*util::ReadFile(path), *before);
  EXPECT_EQ(registry_.keys.size(), 1u);  // no second device registered
}

TEST_F(FactoryTest, Attack_NameCannotLeaveTheTwinsDirectory) {
  ASSERT_TRUE(util::MakeDirs(dir_ + "/twins", 0700).ok());
  for (const std::string name : std::vector<std::string>{
           "../escape", "a/b", ".hidden", "", std::string(65, 'x')}) {
    auto made = factory_->ManufactureTwin(dir_, name);
    EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
  EXPECT_TRUE(registry_.keys.empty());
  EXPECT_EQ(ListDir(dir_), std::vector<std::string>{"twins"});
  EXPECT_TRUE(ListDir(dir_ + "/twins").empty());
}

TEST_F(FactoryTest, Fault_RegistryFailureWritesNothing) {
  registry_.fail = absl::UnavailableError("management down");
  auto made = factory_->ManufactureTwin(dir_, "dw100-2");
  EXPECT_EQ(made.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(made.status().message(), "management down"));
  struct stat st;
  EXPECT_NE(stat(twin::TwinStatePath(dir_, "dw100-2").c_str(), &st), 0);
  EXPECT_TRUE(registry_.keys.empty());
}

TEST_F(FactoryTest, Fault_OpenNamesWhatIsMissing) {
  auto f = Factory::Open(dir_ + "/no-cluster", 1, &registry_);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(f.status().message(), "manufacturing CA"));
}

}  // namespace
}  // namespace sphere::factory
