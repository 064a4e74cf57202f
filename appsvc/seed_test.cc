#include "appsvc/seed.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace contoso::appsvc {
namespace {

TEST(SeedTest, ParsesCustomersAndShops) {
  const std::string id(64, 'a');
  auto seed = ParseSeed(R"({"customers": [{"device_id": ")" + id +
                        R"(", "name": "Ada", "email": "ada@example.com",
      "shop": "s1", "warranty_until": "2030-01-01T00:00:00Z"}],
      "shops": [{"id": "s1", "name": "Shop", "inventory": {"P": 2}}]})");
  ASSERT_TRUE(seed.ok()) << seed.status();
  ASSERT_EQ(seed->customers.size(), 1u);
  EXPECT_EQ(seed->customers[0].name(), "Ada");
  EXPECT_EQ(seed->customers[0].shop_id(), "s1");
  EXPECT_EQ(seed->customers[0].warranty_until_unix_ms(), 1893456000000);
  ASSERT_EQ(seed->shops.size(), 1u);
  EXPECT_EQ(seed->shops[0].inventory().at("P"), 2);
}

TEST(SeedTest, RefusesBadEntries) {
  EXPECT_FALSE(ParseSeed("[]").ok());
  EXPECT_FALSE(ParseSeed("{").ok());
  auto bad_id = ParseSeed(R"({"customers": [{"device_id": "xyz"}]})");
  EXPECT_TRUE(absl::StrContains(bad_id.status().message(), "customers[0]"));
  EXPECT_FALSE(
      ParseSeed(R"({"shops": [{"id": "s", "inventory": {"P": -1}}]})").ok());
  const std::string id(64, 'a');
  EXPECT_FALSE(ParseSeed(R"({"customers": [{"device_id": ")" + id +
                         R"(", "warranty_until": "soon"}]})")
                   .ok());
  EXPECT_FALSE(ParseSeed(std::string(kMaxSeedBytes + 1, ' ')).ok());
}

}  // namespace
}  // namespace contoso::appsvc
