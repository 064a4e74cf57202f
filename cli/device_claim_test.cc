#include "cli/device_claim.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sphere::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kA(64, 'a');
const std::string kB(64, 'b');

TEST(ParseDeviceIdsTest, ReadsOneIdPerLineSkippingCommentsAndBlanks) {
  auto ids = ParseDeviceIds(
      "ids.txt", absl::StrCat("# fleet 1\n", kA, "\n\n  ", kB, "  \r\n"));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(kA, kB));
}

TEST(ParseDeviceIdsTest, MalformedLineIsRefusedNamingTheLine) {
  for (const std::string& bad :
       {std::string(63, 'a'), std::string(65, 'a'), std::string(64, 'A'),
        absl::StrCat(std::string(63, 'a'), "g"), absl::StrCat(kA, ",mt3620")}) {
    auto ids = ParseDeviceIds("ids.txt", absl::StrCat(kA, "\n", bad, "\n"));
    ASSERT_FALSE(ids.ok()) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(ids.status()));
    EXPECT_THAT(ids.status().message(), HasSubstr("ids.txt:2:"));
  }
}

TEST(ParseDeviceIdsTest, RepeatedIdIsRefusedNamingBothLines) {
  auto ids = ParseDeviceIds("ids.txt", absl::StrCat(kA, "\n", kB, "\n", kA));
  ASSERT_FALSE(ids.ok());
  EXPECT_THAT(ids.status().message(),
              HasSubstr("ids.txt:3: repeats the device id of line 1"));
}

TEST(ParseDeviceIdsTest, EmptyListIsRefused) {
  auto ids = ParseDeviceIds("ids.txt", "# nothing\n\n");
  ASSERT_FALSE(ids.ok());
  EXPECT_THAT(ids.status().message(), HasSubstr("lists no device ids"));
}

}  // namespace
}  // namespace sphere::cli
