// spherectl against a real local cluster with more rows than one server page
// (issue 9): 2,500 devices (imported in one `spherectl device import`,
// claimed by parallel ClaimDevice calls) and 1,050 products. `device list`
// and `product list` print every row exactly once, in id / name order, with
// or without --page-size, across pages linked by the printed page token;
// --page-size limits behave. Also: spherectl checks the TLS server name
// cluster.json gives each process (Attack_: a name the certificate does not
// carry is refused and changes nothing).
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crypto/crypto.h"
#include "common/util/file.h"
#include "tests/cluster_fixture.h"
#include "tests/spherectl_runner.h"

namespace sphere::testing {
namespace {

using json = nlohmann::json;

constexpr int kDevices = 2500;
constexpr int kProducts = 1050;
constexpr int kThreads = 16;

// Page: one spherectl JSON list page and the token it printed for the next.
struct Page {
  json items;
  std::string next;  // empty: last page
};

class SpherectlScaleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start("spherectl_scale", 2);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    auto tenant = cluster_->CreateTenant("Contoso");
    ASSERT_TRUE(tenant.ok()) << tenant.status();
    tenant_id_ = new std::string(tenant->id());

    // Factory keys: one bulk import through spherectl.
    std::string csv = "public_key\n";
    device_ids_ = new std::vector<std::string>();
    for (int i = 0; i < kDevices; ++i) {
      std::string key = crypto::EcPrivateKey::Generate().PublicKey();
      absl::StrAppend(&csv, crypto::HexEncode(key), "\n");
      device_ids_->push_back(crypto::HexEncode(crypto::Sha256(key)));
    }
    const std::string keys = cluster_->dir() + "/keys.csv";
    ASSERT_TRUE(util::WriteFile(keys, csv).ok());
    auto [rc, out] = Spherectl(cluster_->cluster_file(),
                               {"device", "import", "--file", keys});
    ASSERT_EQ(rc, 0) << out;

    // Claims and products: parallel calls (the API claims one device per
    // call), bounded by kThreads in flight.
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < kDevices; i += kThreads) {
          if (!cluster_->Claim(*tenant_id_, (*device_ids_)[i]).ok()) ++failures;
        }
        for (int i = t; i < kProducts; i += kThreads) {
          if (!cluster_->CreateProduct(*tenant_id_, ProductName(i)).ok()) {
            ++failures;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(failures.load(), 0);
    std::sort(device_ids_->begin(), device_ids_->end());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete tenant_id_;
    delete device_ids_;
  }

  static std::string ProductName(int i) { return absl::StrFormat("P%05d", i); }

  // List runs `spherectl --tenant Contoso --output json NOUN list ARGS` and
  // splits stdout (the JSON array) from the "more: ... --page-token 'T'"
  // line spherectl prints on stderr when more rows follow.
  static Page List(const std::string& noun,
                   const std::vector<std::string>& args,
                   const std::string& cluster_file = "") {
    std::vector<std::string> argv = {"--tenant", "Contoso", "--output",
                                     "json",     noun,      "list"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto [rc, out] = Spherectl(
        cluster_file.empty() ? cluster_->cluster_file() : cluster_file, argv);
    EXPECT_EQ(rc, 0) << out.substr(0, 2000);
    Page page;
    std::string body = out;
    static const std::regex kMore(
        "(^|\n)more: add --page-size [0-9]+ "
        "--page-token '([^']*)' for the next page\n");
    std::smatch m;
    if (std::regex_search(out, m, kMore)) {
      page.next = m[2];
      body = out.substr(0, m.position(0)) +
             out.substr(m.position(0) + m.length(0));
    }
    // Device lists also warn on stderr when a shard does not answer; none
    // is expected here, so the body must be exactly the JSON array.
    page.items = json::parse(body, nullptr, false);
    EXPECT_TRUE(page.items.is_array()) << body.substr(0, 2000);
    if (!page.items.is_array()) page.items = json::array();
    return page;
  }

  // All pages of `noun list --page-size N`, following the printed tokens.
  static std::vector<std::string> AllPages(const std::string& noun,
                                           const std::string& field, int size,
                                           size_t* pages, size_t* largest) {
    std::vector<std::string> keys;
    std::string token;
    *pages = 0;
    *largest = 0;
    do {
      std::vector<std::string> args = {"--page-size", absl::StrCat(size)};
      if (!token.empty()) args.insert(args.end(), {"--page-token", token});
      Page p = List(noun, args);
      ++*pages;
      *largest = std::max(*largest, p.items.size());
      for (const json& item : p.items) keys.push_back(item.value(field, ""));
      EXPECT_TRUE(!p.items.empty() || p.next.empty());
      token = p.next;
    } while (!token.empty() && *pages <= 100);
    return keys;
  }

  static LocalCluster* cluster_;
  static std::string* tenant_id_;
  static std::vector<std::string>* device_ids_;  // sorted
};

LocalCluster* SpherectlScaleTest::cluster_ = nullptr;
std::string* SpherectlScaleTest::tenant_id_ = nullptr;
std::vector<std::string>* SpherectlScaleTest::device_ids_ = nullptr;

std::vector<std::string> Keys(const json& items, const std::string& field) {
  std::vector<std::string> out;
  for (const json& i : items) out.push_back(i.value(field, ""));
  return out;
}

TEST_F(SpherectlScaleTest, DeviceListPrintsEveryRowOnceInIdOrder) {
  // No --page-size: spherectl follows the server's pages (1,000 at most
  // each) and prints all of them, sorted by id.
  Page all = List("device", {});
  EXPECT_TRUE(all.next.empty());
  EXPECT_EQ(Keys(all.items, "id"), *device_ids_);
}

TEST_F(SpherectlScaleTest, DevicePagesLinkedByTokensCoverEveryRowOnce) {
  // 700 does not divide 2,500 or the server's 1,000: pages end mid-page.
  for (int size : {700}) {
    size_t pages = 0, largest = 0;
    std::vector<std::string> ids =
        AllPages("device", "id", size, &pages, &largest);
    EXPECT_EQ(ids, *device_ids_) << "page size " << size;
    EXPECT_EQ(pages, static_cast<size_t>((kDevices + size - 1) / size))
        << "page size " << size;
    EXPECT_EQ(largest, static_cast<size_t>(size));
  }
  // The same page asked twice is the same rows (a stable order).
  Page first = List("device", {"--page-size", "300"});
  ASSERT_FALSE(first.next.empty());
  Page a = List("device", {"--page-size", "300", "--page-token", first.next});
  Page b = List("device", {"--page-size", "300", "--page-token", first.next});
  EXPECT_EQ(a.items, b.items);
  EXPECT_EQ(a.next, b.next);
  EXPECT_EQ(a.items.size(), 300u);
}

TEST_F(SpherectlScaleTest, DevicePageSizeAboveTheServerLimitIsCapped) {
  // The server returns at most 1,000 devices per page; asking for more
  // pages at 1,000 and still reaches every row.
  size_t pages = 0, largest = 0;
  std::vector<std::string> ids =
      AllPages("device", "id", 5000, &pages, &largest);
  EXPECT_EQ(ids, *device_ids_);
  EXPECT_EQ(largest, 1000u);
  EXPECT_EQ(pages, 3u);
}

TEST_F(SpherectlScaleTest, Attack_OutOfRangePageSizeIsAUsageError) {
  for (const char* size : {"0", "-5", "100001", "many"}) {
    auto r = Spherectl(
        cluster_->cluster_file(),
        {"--tenant", "Contoso", "device", "list", "--page-size", size});
    EXPECT_EQ(r.first, 2) << size << ": " << r.second;  // kExitUsage
  }
  // Nothing changed: still every device, once.
  EXPECT_EQ(Keys(List("device", {}).items, "id"), *device_ids_);
}

TEST_F(SpherectlScaleTest, ProductListPrintsEveryRowOnceInNameOrder) {
  std::vector<std::string> names;
  for (int i = 0; i < kProducts; ++i) names.push_back(ProductName(i));
  EXPECT_EQ(Keys(List("product", {}).items, "name"), names);
  size_t pages = 0, largest = 0;
  EXPECT_EQ(AllPages("product", "name", 400, &pages, &largest), names);
  EXPECT_EQ(pages, 3u);
  EXPECT_EQ(largest, 400u);
}

// cluster.json's server names reach spherectl: a management or shard
// certificate that does not carry the configured name is refused at the
// handshake (nothing is read or written), and a name the certificate does
// carry (its IP address 127.0.0.1, not the default "localhost") works.
TEST_F(SpherectlScaleTest, Attack_ServerCertificateForAnotherNameIsRefused) {
  auto text = util::ReadFile(cluster_->cluster_file());
  ASSERT_TRUE(text.ok()) << text.status();
  auto with_names = [&](const json& names, const std::string& file) {
    json j = json::parse(*text);
    j["server_names"] = names;
    const std::string path = absl::StrCat(cluster_->dir(), "/", file);
    EXPECT_TRUE(util::WriteFile(path, j.dump(2)).ok());
    return path;
  };
  const std::string evil_mgmt =
      with_names({{"management", "evil.sphere.example"}}, "evil_mgmt.json");
  auto refused = Spherectl(evil_mgmt, {"--tenant", "Contoso", "product",
                                       "create", "--name", "Evil"});
  ExpectSpherectlError(refused, 5, "unreachable");  // kExitUnavailable
  // Nothing was written.
  std::vector<std::string> names;
  for (int i = 0; i < kProducts; ++i) names.push_back(ProductName(i));
  EXPECT_EQ(Keys(List("product", {}).items, "name"), names);

  // A shard whose certificate lacks its configured name is not asked: its
  // devices' status shows "-" and spherectl warns, naming the shard.
  const std::string evil_shard =
      with_names({{"shard-0", "evil.sphere.example"}}, "evil_shard.json");
  auto r = Spherectl(evil_shard, {"--tenant", "Contoso", "device", "list",
                                  "--page-size", "5"});
  EXPECT_EQ(r.first, 0) << r.second;
  EXPECT_TRUE(absl::StrContains(r.second, "warning: shard shard-0"))
      << r.second;

  // The right name (one the certificates carry) works for every process.
  const std::string ip = with_names({{"management", "127.0.0.1"},
                                     {"shard-0", "127.0.0.1"},
                                     {"shard-1", "127.0.0.1"}},
                                    "ip_names.json");
  auto ok = Spherectl(
      ip, {"--tenant", "Contoso", "device", "list", "--page-size", "5"});
  EXPECT_EQ(ok.first, 0) << ok.second;
  EXPECT_FALSE(absl::StrContains(ok.second, "warning")) << ok.second;
}

}  // namespace
}  // namespace sphere::testing
