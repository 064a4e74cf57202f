// spherectl against a real local cluster, as a subprocess: tenant-scoped
// operator credentials ('tenant credential'), and cross-tenant attacks by
// Fabrikam's operator on Contoso's objects. Each attack asserts exit code 1
// with "error: <permission message>" AND that Contoso's objects, shown with
// Contoso's own credential, are byte-for-byte the same JSON as before.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crypto/crypto.h"
#include "common/util/file.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_helpers.h"
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
      absl::Status s = SetUpTenant(cluster_->cluster_file(), t);
      ASSERT_TRUE(s.ok()) << s;
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
    return Spherectl(cluster_file.empty() ? ClusterFile() : cluster_file, args);
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
                           const std::string &fragment,
                           int exit_code = 4 /* permission denied */) {
    ExpectSpherectlError(r, exit_code, fragment);
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
  auto cert = util::ReadFile(pki + "Contoso.pem");
  ASSERT_TRUE(cert.ok());
  auto parsed = crypto::ParseCertificate(*cert);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  json contoso = Json("Contoso", {"tenant", "show"});
  EXPECT_EQ(parsed->claims.tenant_id, contoso["id"]);
  EXPECT_TRUE(parsed->claims.scope.empty());

  // cluster.json: both credentials recorded, the other keys kept.
  auto text = util::ReadFile(ClusterFile());
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
      "not found in tenant \"Fabrikam\"", 3 /* not found */);
  ExpectDenied(Ctl({"--tenant", "Fabrikam", "device", "list", "--device-group",
                    group_id}),
               "not found in tenant \"Fabrikam\"", 3 /* not found */);
  ExpectDenied(
      Ctl({"--tenant", "Fabrikam", "device", "show", "--device", *device_}),
      "not found in tenant \"Fabrikam\"", 3 /* not found */);
  // Fabrikam's own device list does not include Contoso's device.
  json fabrikam_devices = Json("Fabrikam", {"device", "list"});
  EXPECT_TRUE(fabrikam_devices.empty()) << fabrikam_devices.dump();

  // Fabrikam's operator points a cluster file of its own at its credential
  // and names Contoso as the tenant explicitly.
  auto text = util::ReadFile(ClusterFile());
  ASSERT_TRUE(text.ok());
  json j = json::parse(*text);
  j["operator_cert"] = j["tenants"]["Fabrikam"]["cert"];
  j["operator_key"] = j["tenants"]["Fabrikam"]["key"];
  j.erase("tenants");
  const std::string forged = cluster_->dir() + "/fabrikam-cluster.json";
  ASSERT_TRUE(util::WriteFile(forged, j.dump()).ok());
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
  ExpectDenied(claim, "is not available for claiming", 3 /* not found */);
  EXPECT_FALSE(absl::StrContains(claim.second, "Contoso")) << claim.second;
  ExpectDenied(Ctl({"--tenant", "Fabrikam", "device", "revoke", "--device",
                    *device_, "--reason", "mine now"}),
               "not found in tenant \"Fabrikam\"", 3 /* not found */);
  ExpectDenied(
      Ctl({"--tenant", "Fabrikam", "device", "update", "--device", *device_,
           "--device-group", before.device["device_group_id"]}),
      "not found in tenant \"Fabrikam\"", 3 /* not found */);
  ExpectDenied(Ctl({"--tenant", "Fabrikam", "device", "transfer", "request",
                    "--device", *device_, "--to-tenant", "Fabrikam"}),
               "not found in tenant \"Fabrikam\"", 3 /* not found */);
  EXPECT_TRUE(Contoso() == before);
  EXPECT_EQ(before.device["state"], "CLAIMED");
}

TEST_F(SpherectlE2ETest, DoubleClaimViaSpherectl) {
  const ContosoState before = Contoso();
  auto r =
      Ctl({"--tenant", "Contoso", "device", "claim", "--device", *device_});
  EXPECT_EQ(r.first, 6) << r.second;  // already exists
  EXPECT_TRUE(absl::StartsWith(r.second, "error: ")) << r.second;
  EXPECT_TRUE(absl::StrContains(
      r.second,
      "is already claimed by tenant \"Contoso\"; a device can be "
      "claimed only once"))
      << r.second;
  EXPECT_TRUE(Contoso() == before);
}

// ---- Parsing, exit codes, selection, output (issue 10) ----------------------

TEST_F(SpherectlE2ETest, EveryVerbHelpExitsZeroAndListsExitCodes) {
  const std::vector<std::vector<std::string>> verbs = {
      {},
      {"tenant", "create"},
      {"tenant", "list"},
      {"tenant", "show"},
      {"tenant", "credential"},
      {"tenant", "select"},
      {"product", "create"},
      {"product", "list"},
      {"product", "show"},
      {"device-group", "create"},
      {"device-group", "list"},
      {"device-group", "show"},
      {"device-group", "update"},
      {"device", "claim"},
      {"device", "list"},
      {"device", "show"},
      {"device", "update"},
      {"device", "revoke"},
      {"device", "import"},
      {"device", "transfer", "request"},
      {"device", "transfer", "accept"},
      {"ca-certificate", "download"},
      {"image", "upload"},
      {"image", "list"},
      {"os", "release"},
      {"deployment", "create"},
      {"deployment", "list"},
      {"cluster", "status"},
      {"product", "delete"},
      {"device-group", "delete"},
      {"deployment", "delete"},
      {"image", "delete"}};
  for (std::vector<std::string> v : verbs) {
    v.push_back("--help");
    SCOPED_TRACE(absl::StrJoin(v, " "));
    auto [rc, out] = Ctl(v, "/nonexistent/cluster.json");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_TRUE(absl::StrContains(out, "Exit codes:")) << out;
    EXPECT_TRUE(absl::StrContains(out, "4 permission denied")) << out;
  }
}

TEST_F(SpherectlE2ETest, UnknownFlagsVerbsAndNounsAreUsageErrors) {
  const json before = Json("Contoso", {"product", "list"});
  for (const auto &cmd : std::vector<std::vector<std::string>>{
           {"--tenant", "Contoso", "product", "list", "--produt", "x"},
           {"--tenant", "Contoso", "product", "frobnicate"},
           {"--tenant", "Contoso", "gadget", "list"},
           {"--tenant", "Contoso", "product"},
           {"--tenant", "Contoso", "product", "create"},  // --name missing
           {"--tenant", "Contoso", "product", "create", "--name", "X",
            "stray"}}) {
    SCOPED_TRACE(absl::StrJoin(cmd, " "));
    auto r = Ctl(cmd);
    EXPECT_EQ(r.first, 2) << r.second;
    EXPECT_TRUE(absl::StartsWith(r.second, "error: ")) << r.second;
  }
  EXPECT_EQ(Json("Contoso", {"product", "list"}), before);
}

TEST_F(SpherectlE2ETest, ExitCodesDistinguishNotFoundAndUnavailable) {
  ExpectSpherectlError(
      Ctl({"--tenant", "Contoso", "product", "show", "--product", "NoSuch"}), 3,
      "NoSuch");
  // A cluster file whose management address does not answer.
  auto text = util::ReadFile(ClusterFile());
  ASSERT_TRUE(text.ok());
  json j = json::parse(*text);
  j["management"] = "127.0.0.1:1";
  const std::string dead = cluster_->dir() + "/dead-cluster.json";
  ASSERT_TRUE(util::WriteFile(dead, j.dump()).ok());
  ExpectSpherectlError(
      Ctl({"--timeout", "5", "--tenant", "Contoso", "product", "list"}, dead),
      5, "is unreachable");
}

// A shard that does not answer leaves its devices' status columns '-' and
// one warning on stderr; the list itself still succeeds.
TEST_F(SpherectlE2ETest, DeviceListSurvivesASilentShard) {
  auto text = util::ReadFile(ClusterFile());
  ASSERT_TRUE(text.ok());
  json j = json::parse(*text);
  ASSERT_TRUE(j.contains("shards")) << *text;
  json shards = json::array();
  shards.push_back({{"id", "shard-silent"}, {"address", "127.0.0.1:1"}});
  for (const json &s : j["shards"]) shards.push_back(s);
  j["shards"] = shards;
  const std::string file = cluster_->dir() + "/silent-shard-cluster.json";
  ASSERT_TRUE(util::WriteFile(file, j.dump()).ok());
  auto [rc, out] =
      Ctl({"--timeout", "5", "--tenant", "Contoso", "device", "list"}, file);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, *device_)) << out;
  size_t warnings = 0;
  for (size_t pos = out.find("warning: shard shard-silent");
       pos != std::string::npos;
       pos = out.find("warning: shard shard-silent", pos + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1u) << out;
}

TEST_F(SpherectlE2ETest, NonAsciiNamesAreRefusedReadably) {
  const json before = Json("Contoso", {"product", "list"});
  auto r = Ctl(
      {"--tenant", "Contoso", "product", "create", "--name", "Caf\xc3\xa9"});
  ExpectSpherectlError(r, 2,
                       "--name \"Caf\\xc3\\xa9\" contains a non-ASCII "
                       "character at byte 4");
  EXPECT_EQ(Json("Contoso", {"product", "list"}), before);
}

TEST_F(SpherectlE2ETest, Attack_TerminalInjectionInTablesIsEscaped) {
  // A description is free text: it may carry escape sequences that would
  // retitle or clear the operator's terminal.
  const std::string evil =
      "\x1b]0;pwned\x07\x1b[2J\xc2\x9b"
      "31m";
  auto [rc, out] = Ctl({"--tenant", "Contoso", "product", "create", "--name",
                        "Evil", "--description", evil});
  if (rc == 0) {
    std::tie(rc, out) = Ctl({"--tenant", "Contoso", "product", "list"});
    ASSERT_EQ(rc, 0) << out;
    EXPECT_TRUE(
        absl::StrContains(out, "\\x1b]0;pwned\\x07\\x1b[2J\\xc2\\x9b31m"))
        << out;
  } else {
    // The server refused the description: nothing was created.
    EXPECT_EQ(rc, 2) << out;
    json products = Json("Contoso", {"product", "list"});
    for (const json &p : products) EXPECT_NE(p["name"], "Evil");
  }
  for (char c : out) {
    const unsigned char u = c;
    EXPECT_FALSE((u < 0x20 && c != '\n') || u >= 0x7f)
        << "raw byte " << int(u) << " in: " << out;
  }
}

TEST_F(SpherectlE2ETest, TablesShowNamesSortedAndPaged) {
  auto [rc, out] = Ctl({"--tenant", "Contoso", "device", "list"});
  ASSERT_EQ(rc, 0) << out;
  const json device = Json("Contoso", {"device", "show", "--device", *device_});
  EXPECT_TRUE(absl::StrContains(out, "DW100")) << out;
  EXPECT_TRUE(absl::StrContains(out, "Production")) << out;
  EXPECT_TRUE(absl::StrContains(out, "Claimed")) << out;
  EXPECT_FALSE(
      absl::StrContains(out, device["device_group_id"].get<std::string>()))
      << out;
  EXPECT_FALSE(absl::StrContains(out, device["product_id"].get<std::string>()))
      << out;
  // Tenant tables carry no catalog revision.
  std::tie(rc, out) = Ctl({"--tenant", "Contoso", "tenant", "show"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_FALSE(absl::StrContains(out, "REVISION")) << out;
  // Groups page by PRODUCT/NAME: follow the tokens to the end.
  std::vector<std::string> names;
  std::string token;
  for (int page = 0; page < 10; ++page) {
    std::vector<std::string> cmd = {
        "--tenant", "Contoso",   "--output", "json",        "device-group",
        "list",     "--product", "DW100",    "--page-size", "2"};
    if (!token.empty()) {
      cmd.push_back("--page-token");
      cmd.push_back(token);
    }
    auto r = Ctl(cmd);
    ASSERT_EQ(r.first, 0) << r.second;
    // JSON on stdout first, then the hint on stderr (combined here).
    const size_t more = r.second.find("more: ");
    json groups = json::parse(r.second.substr(0, more), nullptr, false);
    ASSERT_TRUE(groups.is_array()) << r.second;
    EXPECT_LE(groups.size(), 2u);
    for (const json &g : groups) names.push_back(g["name"]);
    if (more == std::string::npos) {
      token.clear();
      break;
    }
    const size_t open = r.second.find('\'', more);
    const size_t close = r.second.find('\'', open + 1);
    ASSERT_NE(close, std::string::npos) << r.second;
    token = r.second.substr(open + 1, close - open - 1);
  }
  EXPECT_TRUE(token.empty());
  ASSERT_EQ(names.size(), 5u) << absl::StrJoin(names, ",");
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()))
      << absl::StrJoin(names, ",");
}

TEST_F(SpherectlE2ETest, DeviceListFiltersByProductAndGroup) {
  auto [rc, out] =
      Ctl({"--tenant", "Contoso", "product", "create", "--name", "DW200"});
  ASSERT_EQ(rc, 0) << out;
  const std::string other = ImportDevice();
  std::tie(rc, out) =
      Ctl({"--tenant", "Contoso", "device", "claim", "--device", other});
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) =
      Ctl({"--tenant", "Contoso", "device", "update", "--device", other,
           "--device-group", "DW200/Development"});
  ASSERT_EQ(rc, 0) << out;
  auto ids = [](const json &devices) {
    std::vector<std::string> out;
    for (const json &d : devices) out.push_back(d["id"]);
    return out;
  };
  EXPECT_EQ(ids(Json("Contoso", {"device", "list", "--product", "DW100"})),
            std::vector<std::string>{*device_});
  EXPECT_EQ(ids(Json("Contoso", {"device", "list", "--product", "DW200"})),
            std::vector<std::string>{other});
  EXPECT_EQ(ids(Json("Contoso", {"device", "list", "--device-group",
                                 "DW200/Development"})),
            std::vector<std::string>{other});
  ExpectSpherectlError(
      Ctl({"--tenant", "Contoso", "device", "list", "--product", "DW999"}), 3,
      "DW999");
}

TEST_F(SpherectlE2ETest, TenantSelectIsOverriddenByEnvAndFlag) {
  const std::string config = cluster_->dir() + "/spherectl-select.json";
  setenv("SPHERECTL_CONFIG", config.c_str(), 1);
  unsetenv("SPHERE_TENANT");
  auto [rc, out] = Ctl({"tenant", "select", "--name", "Contoso"});
  ASSERT_EQ(rc, 0) << out;
  auto text = util::ReadFile(config);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(json::parse(*text)["tenant"], "Contoso");
  // No --tenant: the selected tenant.
  json products = Json("", {"product", "list"});
  ASSERT_FALSE(products.empty());
  EXPECT_EQ(products[0]["name"], "DW100");
  // SPHERE_TENANT overrides the selection; --tenant overrides both.
  setenv("SPHERE_TENANT", "Fabrikam", 1);
  EXPECT_TRUE(Json("", {"product", "list"}).empty());
  EXPECT_FALSE(Json("Contoso", {"product", "list"}).empty());
  unsetenv("SPHERE_TENANT");
  // Selecting a tenant that does not exist changes nothing.
  ExpectSpherectlError(Ctl({"tenant", "select", "--name", "Nobody"}), 3,
                       "Nobody");
  EXPECT_EQ(json::parse(*util::ReadFile(config))["tenant"], "Contoso");
  std::tie(rc, out) = Ctl({"tenant", "select", "--clear"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_FALSE(json::parse(*util::ReadFile(config)).contains("tenant"));
  unsetenv("SPHERECTL_CONFIG");
}

TEST_F(SpherectlE2ETest, DeviceImportFromCsv) {
  std::vector<std::string> keys, ids;
  for (int i = 0; i < 3; ++i) {
    keys.push_back(crypto::EcPrivateKey::Generate().PublicKey());
    ids.push_back(crypto::HexEncode(crypto::Sha256(keys.back())));
  }
  const std::string good = cluster_->dir() + "/keys.csv";
  std::string csv = "public_key,device_type\n# three DW100 boards\n";
  for (const std::string &k : keys) csv += crypto::HexEncode(k) + ",mt3620\n";
  ASSERT_TRUE(util::WriteFile(good, csv).ok());

  // A file with one bad line imports nothing, and says which line.
  const std::string bad = cluster_->dir() + "/bad-keys.csv";
  ASSERT_TRUE(
      util::WriteFile(bad, crypto::HexEncode(keys[0]) + "\nnot-a-key\n").ok());
  ExpectSpherectlError(Ctl({"device", "import", "--file", bad}), 2,
                       "bad-keys.csv:2: the public key must be 130 hex digits");
  ExpectSpherectlError(
      Ctl({"--tenant", "Contoso", "device", "claim", "--device", ids[0]}), 3,
      "");

  json r =
      SpherectlJson(ClusterFile(), "", {"device", "import", "--file", good});
  EXPECT_EQ(r["imported"], "3") << r.dump();  // uint64 prints as a string
  r = SpherectlJson(ClusterFile(), "", {"device", "import", "--file", good});
  EXPECT_EQ(r["already_known"], "3") << r.dump();
  // Imported devices can be claimed.
  auto [rc, out] =
      Ctl({"--tenant", "Contoso", "device", "claim", "--device", ids[1]});
  EXPECT_EQ(rc, 0) << out;
  // Only the platform operator imports.
  ExpectSpherectlError(
      Ctl({"--tenant", "Contoso", "device", "import", "--file", good}), 4, "");
}

TEST_F(SpherectlE2ETest, DeleteVerbsRefuseWhatIsInUseOrInvisible) {
  auto [rc, out] =
      Ctl({"--tenant", "Contoso", "product", "create", "--name", "DW300"});
  ASSERT_EQ(rc, 0) << out;
  const ContosoState before = Contoso();
  // In use: DW100/Production holds the device.
  ExpectSpherectlError(
      Ctl({"--tenant", "Contoso", "product", "delete", "--product", "DW100"}),
      7, "still has devices");
  ExpectSpherectlError(Ctl({"--tenant", "Contoso", "device-group", "delete",
                            "--device-group", "DW100/Production"}),
                       7, "still has devices");
  // Invisible: Fabrikam names Contoso's product and group by id.
  const std::string product_id = before.product["id"];
  const std::string group_id = before.device["device_group_id"];
  auto denied = Ctl(
      {"--tenant", "Fabrikam", "product", "delete", "--product", product_id});
  ExpectSpherectlError(denied, 3, "not found");
  EXPECT_FALSE(absl::StrContains(denied.second, "Contoso")) << denied.second;
  ExpectSpherectlError(Ctl({"--tenant", "Fabrikam", "device-group", "delete",
                            "--device-group", group_id}),
                       3, "not found");
  ExpectSpherectlError(Ctl({"--tenant", "Fabrikam", "deployment", "delete",
                            "--deployment", "no-such-deployment"}),
                       3, "not found");
  EXPECT_TRUE(Contoso() == before);
  // An empty group and an unused product go.
  std::tie(rc, out) = Ctl({"--tenant", "Contoso", "device-group", "delete",
                           "--device-group", "DW300/Development"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "deleted device group DW300/Development"))
      << out;
  std::tie(rc, out) =
      Ctl({"--tenant", "Contoso", "product", "delete", "--product", "DW300"});
  ASSERT_EQ(rc, 0) << out;
  ExpectSpherectlError(
      Ctl({"--tenant", "Contoso", "product", "show", "--product", "DW300"}), 3,
      "DW300");
  EXPECT_TRUE(Contoso() == before);
}

}  // namespace
}  // namespace sphere::testing
