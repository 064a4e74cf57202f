#include "securitysvc/management/limits.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sphere::management::limits {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(LimitsTest, EscapedPrefixCutsAndEscapes) {
  const std::string huge(1 << 20, 'x');
  const std::string e = EscapedPrefix(huge);
  EXPECT_LT(e.size(), 64u);
  EXPECT_THAT(e, HasSubstr("(1048576 bytes)"));
  EXPECT_EQ(EscapedPrefix(std::string("a\x1b[31mb\0c", 9)),
            "a\\x1b[31mb\\x00\\x63");
}

TEST(LimitsTest, Attack_ComponentIdWithControlCharactersOrTraversal) {
  EXPECT_TRUE(ValidateComponentId("component", "kernel").ok());
  EXPECT_TRUE(ValidateComponentId("component", "app:dw100").ok());
  EXPECT_TRUE(ValidateComponentId("component", "os-services").ok());
  for (const std::string bad :
       {std::string("app:\x1b[2Jpwn"), std::string("app:a\0b", 7),
        std::string("../../etc/passwd"), std::string("app:.."),
        std::string(".hidden"), std::string("App:Upper"),
        std::string("app:a/b"), std::string(65, 'a'), std::string()}) {
    absl::Status s = ValidateComponentId("component", bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(s.message(), HasSubstr("component"));
    EXPECT_THAT(std::string(s.message()), Not(HasSubstr("\x1b")));
    EXPECT_EQ(std::string(s.message()).find('\0'), std::string::npos);
  }
  absl::Status s = ValidateComponentId("component", std::string(1 << 20, 'a'));
  EXPECT_THAT(s.message(), HasSubstr("the limit is 64"));
  EXPECT_LT(s.message().size(), 200u);
}

TEST(LimitsTest, NamesAndReferences) {
  EXPECT_TRUE(ValidateName("tenant name", "Contoso Ltd.").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateName("tenant name", " x")));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateName("tenant name", "a\x1b")));
  absl::Status big = ValidateReference("tenant", std::string(8 << 20, 't'));
  EXPECT_TRUE(absl::IsInvalidArgument(big));
  EXPECT_LT(big.message().size(), 200u);
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateReference("tenant", "a\nb")));
  EXPECT_TRUE(ValidateReference("tenant", "").ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateDeviceId("device id", "AB")));
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateVersion("version", "1 0")));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ValidateDescription("description", "bell\a")));
  EXPECT_THAT(ValidateCount("image_ids", 33, 32).message(),
              HasSubstr("the limit is 32"));
}

}  // namespace
}  // namespace sphere::management::limits
