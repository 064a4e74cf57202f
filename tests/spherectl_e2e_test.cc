// spherectl against a real local cluster, as a subprocess: tenant-scoped
// operator credentials ('tenant credential'), and cross-tenant attacks by
// Fabrikam's operator on Contoso's objects. Each attack asserts exit code 1
// with "error: <permission message>" AND that Contoso's objects, shown with
// Contoso's own credential, are byte-for-byte the same JSON as before.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"

namespace sphere::testing {
namespace {

using json = nlohmann::json;

class SpherectlE2ETest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start("spherectl", 1);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    for (const char *t : {"Contoso", "Fabrikam"}) {
      auto [rc, out] = Ctl({"tenant", "create", "--name", t});
      ASSERT_EQ(rc, 0) << out;
      std::tie(rc, out) = Ctl({"tenant", "credential", "--name", t});
      ASSERT_EQ(rc, 0) << out;
    }
    // Contoso, with its own credential, builds its catalog.
    auto [rc, out] =
        Ctl({"--tenant", "Contoso", "product", "create", "--name", "DW100"});
    ASSERT_EQ(rc, 0) << out;
    device_ = new std::string(ImportDevice());
    std::tie(rc, out) =
        Ctl({"--tenant", "Contoso", "device", "claim", "--device", *device_});
    ASSERT_EQ(rc, 0) << out;
    std::tie(rc, out) =
        Ctl({"--tenant", "Contoso", "device", "update", "--device", *device_,
             "--device-group", "DW100/Production"});
    ASSERT_EQ(rc, 0) << out;
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete device_;
  }

  static std::string ClusterFile() { return cluster_->cluster_file(); }

  static std::pair<int, std::string> Ctl(std::vector<std::string> args,
                                         const std::string &cluster_file = "") {
    return Spherectl(cluster_file.empty() ? ClusterFile() : cluster_file,
                     args);
  }

  // Json runs spherectl with --output json and parses stdout.
  static json Json(const std::string &tenant, std::vector<std::string> args) {
    return SpherectlJson(ClusterFile(), tenant, args);
  }

  static std::string ImportDevice() {
    std::string key = crypto::EcPrivateKey::Generate().PublicKey();
    EXPECT_TRUE(cluster_->ImportDevice(key).ok());
    return crypto::HexEncode(crypto::Sha256(key));
  }

  // ContosoState: Contoso's objects as Contoso's operator sees them.
  struct ContosoState {
    json product, devices, device;
    bool operator==(const ContosoState &o) const {
      return product == o.product && devices == o.devices && device == o.device;
    }
  };
  static ContosoState Contoso() {
    ContosoState s;
    s.product = Json("Contoso", {"product", "show", "--product", "DW100"});
    s.devices = Json("Contoso", {"device", "list"});
    s.device = Json("Contoso", {"device", "show", "--device", *device_});
    return s;
  }

  static void ExpectDenied(const std::pair<int, std::string> &r,
                           const std::string &fragment) {
    ExpectSpherectlError(r, fragment);
    EXPECT_FALSE(absl::StrContains(r.second, "\"id\""))
        << "leaked: " << r.second;
  }

  static LocalCluster *cluster_;
  static std::string *device_;
};

LocalCluster *SpherectlE2ETest::cluster_ = nullptr;
std::string *SpherectlE2ETest::device_ = nullptr;

TEST_F(SpherectlE2ETest, TenantCredentialIsWrittenRecordedAndScoped) {
  const std::string pki = cluster_->dir() + "/pki/tenants/";
  struct stat st;
  ASSERT_EQ(stat((pki + "Contoso.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto cert = rpc::ReadFile(pki + "Contoso.pem");
  ASSERT_TRUE(cert.ok());
  auto parsed = crypto::ParseCertificate(*cert);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  json contoso = Json("Contoso", {"tenant", "show"});
  EXPECT_EQ(parsed->claims.tenant_id, contoso["id"]);
  EXPECT_TRUE(parsed->claims.scope.empty());

  // cluster.json: both credentials recorded, the other keys kept.
  auto text = rpc::ReadFile(ClusterFile());
  ASSERT_TRUE(text.ok());
  json j = json::parse(*text, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["tenants"]["Contoso"]["cert"], pki + "Contoso.pem");
  EXPECT_EQ(j["tenants"]["Contoso"]["key"], pki + "Contoso.key");
  EXPECT_EQ(j["tenants"]["Fabrikam"]["cert"], pki + "Fabrikam.pem");
  EXPECT_EQ(j["management"], cluster_->config().management);
  EXPECT_TRUE(j["shards"].is_array());
  EXPECT_FALSE(j["operator_cert"].get<std::string>().empty());

  // Contoso's credential sees only Contoso, and cannot act as platform.
  json tenants = Json("Contoso", {"tenant", "list"});
  ASSERT_EQ(tenants.size(), 1u) << tenants.dump();
  EXPECT_EQ(tenants[0]["name"], "Contoso");
  ExpectDenied(
      Ctl({"--tenant", "Contoso", "tenant", "create", "--name", "Mallory"}),
      "needs a platform-operator credential");
  ExpectDenied(
      Ctl({"--tenant", "Contoso", "tenant", "credential", "--name", "Contoso"}),
      "platform-operator credential");
}

TEST_F(SpherectlE2ETest, Attack_CrossTenantReadViaSpherectl) {
  const ContosoState before = Contoso();
  const std::string product_id = before.product["id"];
  const std::string group_id = before.device["device_group_id"];
  ASSERT_FALSE(group_id.empty());

  ExpectDenied(
      Ctl({"--tenant", "Fabrikam", "product", "show", "--product", product_id}),
      "not found in tenant \"Fabrikam\"");
  ExpectDenied(Ctl({"--tenant", "Fabrikam", "device", "list", "--device-group",
                    group_id}),
               "not found in tenant \"Fabrikam\"");
  ExpectDenied(
      Ctl({"--tenant", "Fabrikam", "device", "show", "--device", *device_}),
      "not found in tenant \"Fabrikam\"");
  // Fabrikam's own device list does not include Contoso's device.
  json fabrikam_devices = Json("Fabrikam", {"device", "list"});
  EXPECT_TRUE(fabrikam_devices.empty()) << fabrikam_devices.dump();

  // Fabrikam's operator points a cluster file of its own at its credential
  // and names Contoso as the tenant explicitly.
  auto text = rpc::ReadFile(ClusterFile());
  ASSERT_TRUE(text.ok());
  json j = json::parse(*text);
  j["operator_cert"] = j["tenants"]["Fabrikam"]["cert"];
  j["operator_key"] = j["tenants"]["Fabrikam"]["key"];
  j.erase("tenants");
  const std::string forged = cluster_->dir() + "/fabrikam-cluster.json";
  ASSERT_TRUE(rpc::WriteFile(forged, j.dump()).ok());
  for (const auto &cmd : std::vector<std::vector<std::string>>{
           {"--tenant", "Contoso", "product", "show", "--product", "DW100"},
           {"--tenant", "Contoso", "device", "list"},
           {"--tenant", "Contoso", "device", "show", "--device", *device_},
           {"--tenant", "Contoso", "tenant", "show"}}) {
    SCOPED_TRACE(cmd[2] + " " + cmd[3]);
    ExpectDenied(Ctl(cmd, forged),
                 "your credential is scoped to tenant \"Fabrikam\"");
  }
  EXPECT_TRUE(Contoso() == before);
}

TEST_F(SpherectlE2ETest, Attack_CrossTenantClaimViaSpherectl) {
  const ContosoState before = Contoso();
  // Claiming someone else's device: refused, without naming its owner.
  auto claim =
      Ctl({"--tenant", "Fabrikam", "device", "claim", "--device", *device_});
  ExpectDenied(claim, "is not available for claiming");
  EXPECT_FALSE(absl::StrContains(claim.second, "Contoso")) << claim.second;
  ExpectDenied(Ctl({"--tenant", "Fabrikam", "device", "revoke", "--device",
                    *device_, "--reason", "mine now"}),
               "not found in tenant \"Fabrikam\"");
  ExpectDenied(
      Ctl({"--tenant", "Fabrikam", "device", "update", "--device", *device_,
           "--device-group", before.device["device_group_id"]}),
      "not found in tenant \"Fabrikam\"");
  ExpectDenied(Ctl({"--tenant", "Fabrikam", "device", "transfer", "request",
                    "--device", *device_, "--to-tenant", "Fabrikam"}),
               "not found in tenant \"Fabrikam\"");
  EXPECT_TRUE(Contoso() == before);
  EXPECT_EQ(before.device["state"], "CLAIMED");
}

TEST_F(SpherectlE2ETest, DoubleClaimViaSpherectl) {
  const ContosoState before = Contoso();
  auto r =
      Ctl({"--tenant", "Contoso", "device", "claim", "--device", *device_});
  EXPECT_EQ(r.first, 1) << r.second;
  EXPECT_TRUE(absl::StartsWith(r.second, "error: ")) << r.second;
  EXPECT_TRUE(absl::StrContains(
      r.second, "is already claimed by tenant \"Contoso\"; a device can be "
                "claimed only once"))
      << r.second;
  EXPECT_TRUE(Contoso() == before);
}

} // namespace
} // namespace sphere::testing
