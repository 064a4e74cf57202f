// OS releases end to end, against a real local cluster (management + shard
// processes): the platform operator builds OS 2 with the os_builder tool and
// releases it with 'spherectl os release' on the RetailEval feed only. A
// device in "Production OS Evaluation" (RetailEval) then attests as genuine
// but outdated: UPDATE_REQUIRED, an "update-only" certificate listing the OS
// components to update, which a Contoso-style relying party refuses; a device
// in "Production" (Retail) stays UP_TO_DATE with a "full" certificate, which
// the relying party accepts. Devices are in-process mcu::Device twins
// running the factory OS 1.
//
// Attacks are named tests asserting the specific error AND that the catalog
// did not change (its revision, and what 'image list' shows).
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/crypto/crypto.h"
#include "common/util/clock.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"
#include "securitysvc/auth/device_authenticator.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_helpers.h"
#include "tests/spherectl_runner.h"
#include "tests/twin_helpers.h"
#include "twin/attestation_client.h"

namespace sphere::testing {
namespace {

using json = nlohmann::json;

class OsReleaseE2ETest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start("osrel", 1);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    absl::Status s =
        SetUpTenant(cluster_->cluster_file(), "Contoso", {"DW100"});
    ASSERT_TRUE(s.ok()) << s;
    retail_ = NewDevice("retail-device", "DW100/Production").release();
    eval_ =
        NewDevice("eval-device", "DW100/Production OS Evaluation").release();
  }
  static void TearDownTestSuite() {
    delete retail_;
    delete eval_;
    delete cluster_;
    cluster_ = nullptr;
  }

  static std::pair<int, std::string> Ctl(std::vector<std::string> args) {
    return Spherectl(cluster_->cluster_file(), args);
  }

  // Json runs spherectl with --output json (platform operator when `tenant`
  // is empty) and parses its output.
  static json Json(const std::string& tenant, std::vector<std::string> args) {
    return SpherectlJson(cluster_->cluster_file(), tenant, args);
  }

  static void ExpectError(const std::pair<int, std::string>& r,
                          const std::string& fragment) {
    ExpectSpherectlError(r, fragment);
  }

  // NewDevice manufactures an in-process twin with the factory OS 1,
  // registers it, and has Contoso claim it and assign it to `group`.
  static std::unique_ptr<mcu::Device> NewDevice(const std::string& seed,
                                                const std::string& group) {
    auto dev = ManufactureGenuine(*cluster_, seed);
    if (dev == nullptr) return nullptr;
    EXPECT_TRUE(cluster_->ImportDevice(dev->public_key()).ok());
    const std::string id = dev->device_id();
    auto [rc, out] =
        Ctl({"--tenant", "Contoso", "device", "claim", "--device", id});
    EXPECT_EQ(rc, 0) << out;
    std::tie(rc, out) = Ctl({"--tenant", "Contoso", "device", "update",
                             "--device", id, "--device-group", group});
    EXPECT_EQ(rc, 0) << out;
    return dev;
  }

  static int64_t Revision() { return CatalogRevision(cluster_); }

  // Attest runs attestation for `dev` against a shard that has caught up
  // with every catalog change made so far.
  static absl::StatusOr<v1::AttestResponse> Attest(mcu::Device* dev) {
    return AttestViaClient(cluster_, dev);
  }

  // BuildOs runs the os_builder tool for `version` on the cluster's dir.
  static std::pair<int, std::string> BuildOs(int version) {
    return RunCommand({BinaryPath("securitysvc/os_builder"), "--state-dir",
                       cluster_->dir(), "--version", absl::StrCat(version)});
  }

  // ReleaseOs2OnRetailEval builds OS 2 and releases it on RetailEval, once.
  static void ReleaseOs2OnRetailEval() {
    if (os2_released_) return;
    auto [rc, out] = BuildOs(2);
    ASSERT_EQ(rc, 0) << out;
    std::tie(rc, out) =
        Ctl({"os", "release", "--feed", "RetailEval", "--version", "2",
             "--images-dir", cluster_->dir() + "/images/os-2"});
    ASSERT_EQ(rc, 0) << out;
    EXPECT_TRUE(absl::StrContains(out, "RetailEval")) << out;
    EXPECT_TRUE(absl::StrContains(out, "kernel 2")) << out;
    os2_released_ = true;
  }

  // RelyingParty is what a vendor cloud (appsvc) does with a device's
  // certificate chain: verify it to the platform root, authenticate the
  // leaf against its view of the catalog, and require full scope.
  static absl::Status RelyingParty(const std::string& chain_pem,
                                   const v1::Device& device) {
    auto chain = crypto::SplitPemChain(chain_pem);
    if (chain.size() < 2) return absl::InvalidArgumentError("short chain");
    auto root = util::ReadFile(cluster_->dir() + "/pki/root.pem");
    if (!root.ok()) return root.status();
    if (auto s = crypto::VerifyChain(chain[0], chain[1], *root, absl::Now(),
                                     /*require_client_auth=*/true);
        !s.ok()) {
      return s;
    }
    auto leaf = crypto::ParseCertificate(chain[0]);
    if (!leaf.ok()) return leaf.status();
    catalog::InMemoryCatalog view(crypto::RandomBytes(32));
    view.PutDevice(device);
    auth::SessionTokens tokens(crypto::RandomBytes(32));
    auth::DeviceAuthenticator authenticator(&tokens, &view, Clock::Real());
    auto ctx = authenticator.Authenticate(&*leaf, "");
    if (!ctx.ok()) return ctx.status();
    return auth::RequireFullScope(*ctx);
  }

  static v1::Device DeviceRecord(const std::string& id) {
    auto d = cluster_->GetDevice("", id);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *d : v1::Device();
  }

  static LocalCluster* cluster_;
  static mcu::Device* retail_;
  static mcu::Device* eval_;
  static bool os2_released_;
};

LocalCluster* OsReleaseE2ETest::cluster_ = nullptr;
mcu::Device* OsReleaseE2ETest::retail_ = nullptr;
mcu::Device* OsReleaseE2ETest::eval_ = nullptr;
bool OsReleaseE2ETest::os2_released_ = false;

TEST_F(OsReleaseE2ETest, RetailEvalDeviceGetsUpdateOnlyCertificate) {
  // Before: both feeds carry the factory OS 1.
  for (mcu::Device* dev : {retail_, eval_}) {
    auto r = Attest(dev);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);
  }

  ASSERT_NO_FATAL_FAILURE(ReleaseOs2OnRetailEval());
  json images = Json("", {"image", "list"});
  int os2 = 0;
  for (const json& i : images) os2 += i["version"] == 2;
  EXPECT_EQ(os2, static_cast<int>(mcu::BootChainComponents().size()))
      << images.dump();

  // The RetailEval device: genuine but outdated.
  auto eval = Attest(eval_);
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->outcome(), v1::UPDATE_REQUIRED);
  std::vector<std::string> outdated(eval->outdated_components().begin(),
                                    eval->outdated_components().end());
  std::sort(outdated.begin(), outdated.end());
  std::vector<std::string> expected = mcu::BootChainComponents();
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(outdated, expected);
  auto eval_leaf = crypto::ParseCertificate(
      crypto::SplitPemChain(eval->certificate_chain_pem())[0]);
  ASSERT_TRUE(eval_leaf.ok()) << eval_leaf.status();
  EXPECT_EQ(eval_leaf->claims.scope, "update-only");
  EXPECT_EQ(eval_leaf->claims.device_id, eval_->device_id());

  // The Retail device is untouched by a RetailEval release.
  auto retail = Attest(retail_);
  ASSERT_TRUE(retail.ok()) << retail.status();
  EXPECT_EQ(retail->outcome(), v1::UP_TO_DATE);
  EXPECT_EQ(retail->outdated_components_size(), 0);
  auto retail_leaf = crypto::ParseCertificate(
      crypto::SplitPemChain(retail->certificate_chain_pem())[0]);
  ASSERT_TRUE(retail_leaf.ok()) << retail_leaf.status();
  EXPECT_EQ(retail_leaf->claims.scope, "full");

  // spherectl shows what each device last attested, read from its shard
  // (DeviceStatusService), with Contoso's own credential.
  json devices = Json("Contoso", {"device", "list"});
  ASSERT_EQ(devices.size(), 2u) << devices.dump();
  for (const json& d : devices) {
    SCOPED_TRACE(d.dump());
    EXPECT_TRUE(d.contains("last_attested_unix_ms"));
    EXPECT_NE(d.value("last_attested_unix_ms", std::string("0")), "0");
    if (d["id"] == retail_->device_id()) {
      EXPECT_EQ(d["last_attestation_outcome"], "UP_TO_DATE");
      EXPECT_EQ(d["os_version"], "1");  // the factory OS release on Retail
    } else {
      EXPECT_EQ(d["id"], eval_->device_id());
      EXPECT_EQ(d["last_attestation_outcome"], "UPDATE_REQUIRED");
      EXPECT_FALSE(d.contains("os_version"));  // runs 1, RetailEval has 2
    }
  }
  json shown =
      Json("Contoso", {"device", "show", "--device", retail_->device_id()});
  EXPECT_EQ(shown["last_attestation_outcome"], "UP_TO_DATE") << shown.dump();
  auto [rc, table] = Ctl({"--tenant", "Contoso", "device", "list"});
  ASSERT_EQ(rc, 0) << table;
  EXPECT_TRUE(absl::StrContains(table, "UP_TO_DATE")) << table;
  EXPECT_TRUE(absl::StrContains(table, "UPDATE_REQUIRED")) << table;

  // Contoso's cloud serves the full certificate and refuses the other.
  absl::Status refused = RelyingParty(eval->certificate_chain_pem(),
                                      DeviceRecord(eval_->device_id()));
  EXPECT_TRUE(absl::IsPermissionDenied(refused)) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "update-only")) << refused;
  absl::Status accepted = RelyingParty(retail->certificate_chain_pem(),
                                       DeviceRecord(retail_->device_id()));
  EXPECT_TRUE(accepted.ok()) << accepted;
}

TEST_F(OsReleaseE2ETest, Attack_TenantCannotReleaseOs) {
  auto [rc, out] = BuildOs(4);
  ASSERT_EQ(rc, 0) << out;
  // The platform uploads OS 4's components but has not released them.
  std::vector<std::string> ids;
  for (const auto& comp : mcu::BootChainComponents()) {
    json image = Json(
        "", {"image", "upload", "--file",
             absl::StrCat(cluster_->dir(), "/images/os-4/", comp, ".pkg")});
    EXPECT_EQ(image["component"], comp);
    EXPECT_EQ(image["version"], 4);
    ids.push_back(image["id"]);
  }
  const int64_t revision = Revision();
  const json images = Json("", {"image", "list"});

  // Contoso's operator tries to release them on the Retail feed.
  std::vector<std::string> cmd = {"--tenant", "Contoso", "os",        "release",
                                  "--feed",   "Retail",  "--version", "4"};
  for (const auto& id : ids) cmd.insert(cmd.end(), {"--image", id});
  ExpectError(Ctl(cmd), "needs a platform-operator credential");
  // ...or to upload and release a build directory itself.
  ExpectError(
      Ctl({"--tenant", "Contoso", "os", "release", "--feed", "Retail",
           "--version", "4", "--images-dir", cluster_->dir() + "/images/os-4"}),
      "tenants upload applications only");

  // Nothing was recorded, and the Retail device still runs what its feed
  // asks for.
  EXPECT_EQ(Revision(), revision);
  EXPECT_EQ(Json("", {"image", "list"}), images);
  auto retail = Attest(retail_);
  ASSERT_TRUE(retail.ok()) << retail.status();
  EXPECT_EQ(retail->outcome(), v1::UP_TO_DATE);
}

TEST_F(OsReleaseE2ETest, Attack_UploadOfOsImageNotSignedByPlatform) {
  // A kernel built and signed by someone other than the platform.
  auto forged =
      mcu::BuildOsImage(crypto::EcPrivateKey::Generate(), mcu::kKernel, 9);
  ASSERT_TRUE(forged.ok()) << forged.status();
  const std::string path = cluster_->dir() + "/forged-kernel.pkg";
  ASSERT_TRUE(util::WriteFile(path, forged->SerializeAsString()).ok());
  const int64_t revision = Revision();
  const json images = Json("", {"image", "list"});

  ExpectError(Ctl({"image", "upload", "--file", path}),
              "is not signed by the platform");
  // A tenant cannot launder it through the re-signing path either.
  ExpectError(Ctl({"--tenant", "Contoso", "image", "upload", "--file", path}),
              "tenants upload applications only");
  // Nor release it by id (it was never recorded).
  const std::string forged_id =
      crypto::HexEncode(mcu::ImageHash(forged->header()));
  ExpectError(Ctl({"os", "release", "--feed", "RetailEval", "--version", "9",
                   "--image", forged_id}),
              "is not a platform OS component image");

  EXPECT_EQ(Revision(), revision);
  EXPECT_EQ(Json("", {"image", "list"}), images);
  for (const json& i : images) EXPECT_NE(i["id"], forged_id);
}

TEST_F(OsReleaseE2ETest, Attack_OlderOsReleaseOnRetailEvalIsRefused) {
  ASSERT_NO_FATAL_FAILURE(ReleaseOs2OnRetailEval());
  const int64_t revision = Revision();
  // A "newer" version number that ships the OS 1 components would roll
  // RetailEval devices back (they would refuse it anyway: anti-rollback).
  ExpectError(Ctl({"os", "release", "--feed", "RetailEval", "--version", "3",
                   "--images-dir", cluster_->dir() + "/images/os-1"}),
              "would roll back");
  EXPECT_EQ(Revision(), revision);
  auto eval = Attest(eval_);
  ASSERT_TRUE(eval.ok()) << eval.status();
  EXPECT_EQ(eval->outcome(), v1::UPDATE_REQUIRED);
}

TEST_F(OsReleaseE2ETest, TenantUploadsAppAndCreatesDeployment) {
  // Contoso's own build, signed with Contoso's key: the platform re-signs.
  v1::AppManifest manifest;
  manifest.set_component_id("dw100");
  auto app = mcu::BuildAppImage(crypto::EcPrivateKey::Generate(), manifest,
                                /*version=*/1, /*payload_size=*/4096);
  ASSERT_TRUE(app.ok()) << app.status();
  const std::string path = cluster_->dir() + "/dw100-app.pkg";
  ASSERT_TRUE(util::WriteFile(path, app->SerializeAsString()).ok());
  json image = Json("Contoso", {"image", "upload", "--file", path});
  EXPECT_EQ(image["component"], "app:dw100");
  const std::string tenant_id = Json("Contoso", {"tenant", "show"})["id"];
  EXPECT_EQ(image["tenant_id"], tenant_id);
  json mine = Json("Contoso", {"image", "list"});
  ASSERT_EQ(mine.size(), 1u) << mine.dump();  // no platform OS images
  EXPECT_EQ(mine[0]["id"], image["id"]);

  // Deploy to the Development group (no devices there: the attestation
  // expectations of the groups above stay as they are).
  json dep = Json("Contoso", {"deployment", "create", "--device-group",
                              "DW100/Development", "--image", image["id"]});
  EXPECT_EQ(dep["image_ids"][0], image["id"]);
  json deps = Json(
      "Contoso", {"deployment", "list", "--device-group", "DW100/Development"});
  ASSERT_EQ(deps.size(), 1u) << deps.dump();
  EXPECT_EQ(deps[0]["id"], dep["id"]);
  // Table output names the columns, and the product and group by name.
  auto [rc, out] = Ctl({"--tenant", "Contoso", "deployment", "list"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StartsWith(out, "PRODUCT  DEVICE GROUP")) << out;
  EXPECT_TRUE(absl::StrContains(out, "DW100    Development")) << out;

  // A deployment needs images: a usage error (exit 2).
  ExpectSpherectlError(Ctl({"--tenant", "Contoso", "deployment", "create",
                            "--device-group", "DW100/Development"}),
                       2, "--image is required");
}

}  // namespace
}  // namespace sphere::testing
