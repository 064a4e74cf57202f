#include "cli/output.h"

#include <gtest/gtest.h>

#include "cli/exit_codes.h"

namespace sphere::cli {
namespace {

TEST(EscapeTest, ControlAndNonAsciiBytesAreEscaped) {
  EXPECT_EQ(Escape("Contoso"), "Contoso");
  EXPECT_EQ(Escape("\x1b[2J\x1b]0;pwned\x07"), "\\x1b[2J\\x1b]0;pwned\\x07");
  EXPECT_EQ(Escape(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(Escape("line\nnext\r\t"), "line\\nnext\\r\\t");
  EXPECT_EQ(Escape("back\\slash"), "back\\slash");
  // UTF-8 C1 CSI (U+009B) and DEL.
  EXPECT_EQ(Escape("\xc2\x9b"
                   "31m\x7f"),
            "\\xc2\\x9b31m\\x7f");
}

TEST(CheckNameTest, RefusesNonAsciiWithReadableMessage) {
  EXPECT_TRUE(CheckName("--name", "DW100 Pro_1.2-x").ok());
  absl::Status s = CheckName("--name", "Caf\xc3\xa9");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "--name \"Caf\\xc3\\xa9\" contains a non-ASCII character at byte "
            "4; names use ASCII letters, digits, space, '.', '_' and '-'");
  s = CheckName("--name", "evil\x1b[31m");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("control character at byte 5"),
            absl::string_view::npos)
      << s.message();
  EXPECT_EQ(s.message().find('\x1b'), absl::string_view::npos);
}

TEST(EnumNamesTest, UserFacingNames) {
  EXPECT_EQ(FeedName(v1::RETAIL_EVAL), "RetailEval");
  EXPECT_EQ(FeedName(v1::RETAIL), "Retail");
  EXPECT_EQ(PolicyName(v1::NO_3RD_PARTY_APP_UPDATES), "No3rdPartyAppUpdates");
  EXPECT_EQ(StateName(v1::TRANSFER_PENDING), "TransferPending");
  EXPECT_EQ(StateName(v1::CLAIMED), "Claimed");
  EXPECT_EQ(KindName(v1::IMAGE_KIND_APPLICATION), "Application");
  EXPECT_EQ(*ParseFeed("retaileval"), v1::RETAIL_EVAL);
  EXPECT_EQ(*ParseFeed("RETAIL_EVAL"), v1::RETAIL_EVAL);
  EXPECT_EQ(ParseFeed("Beta").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParsePolicy("NoUpdates"), v1::NO_UPDATES);
  EXPECT_EQ(ParsePolicy("Sometimes").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FormatUnixMsTest, UtcAndDashForNever) {
  EXPECT_EQ(FormatUnixMs(0), "-");
  EXPECT_EQ(FormatUnixMs(1764596570000), "2025-12-01 13:42:50 UTC");
}

TEST(PageOfTest, PagesByKeyAfterToken) {
  std::vector<std::string> items = {"a", "b", "c", "d", "e"};
  auto key = [](const std::string& s) { return s; };
  std::string next;
  EXPECT_EQ(PageOf<std::string>(items, key, {2, ""}, &next),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(next, "b");
  EXPECT_EQ(PageOf<std::string>(items, key, {2, next}, &next),
            (std::vector<std::string>{"c", "d"}));
  EXPECT_EQ(next, "d");
  EXPECT_EQ(PageOf<std::string>(items, key, {2, next}, &next),
            (std::vector<std::string>{"e"}));
  EXPECT_EQ(next, "");
  // Everything when size is 0; a token between keys continues after it.
  EXPECT_EQ(PageOf<std::string>(items, key, {0, "bb"}, &next),
            (std::vector<std::string>{"c", "d", "e"}));
  EXPECT_EQ(next, "");
  // Exactly one full page: no next token.
  EXPECT_EQ(PageOf<std::string>(items, key, {5, ""}, &next).size(), 5u);
  EXPECT_EQ(next, "");
}

TEST(ExitCodeTest, DistinctCodes) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("")), 3);
  EXPECT_EQ(ExitCodeFor(absl::PermissionDeniedError("")), 4);
  EXPECT_EQ(ExitCodeFor(absl::UnauthenticatedError("")), 4);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("")), 5);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("")), 5);
  EXPECT_EQ(ExitCodeFor(absl::AlreadyExistsError("")), 6);
  EXPECT_EQ(ExitCodeFor(absl::FailedPreconditionError("")), 7);
  EXPECT_EQ(ExitCodeFor(absl::ResourceExhaustedError("")), 8);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("")), 1);
}

}  // namespace
}  // namespace sphere::cli
