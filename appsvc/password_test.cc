#include "appsvc/password.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace contoso::appsvc {
namespace {

constexpr int kFast = kMinIterations;  // keeps the test quick

TEST(PasswordTest, VerifiesTheRightPasswordOnly) {
  auto h = HashPassword("correct horse", kFast);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(absl::StartsWith(*h, "pbkdf2-sha256$1000$"));
  EXPECT_TRUE(VerifyPassword("correct horse", *h));
  EXPECT_FALSE(VerifyPassword("correct horsE", *h));
  EXPECT_FALSE(VerifyPassword("", *h));
  EXPECT_TRUE(ValidatePasswordHash(*h).ok());
}

TEST(PasswordTest, SaltMakesEveryHashDifferent) {
  auto a = HashPassword("same", kFast);
  auto b = HashPassword("same", kFast);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(VerifyPassword("same", *a));
  EXPECT_TRUE(VerifyPassword("same", *b));
}

TEST(PasswordTest, StoredFormNeverHoldsThePlaintext) {
  auto h = HashPassword("hunter2-plaintext", kFast);
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(absl::StrContains(*h, "hunter2"));
}

TEST(PasswordTest, Attack_MalformedOrCheapHashRefused) {
  auto h = HashPassword("pw", kFast);
  ASSERT_TRUE(h.ok());
  std::vector<std::string> parts = absl::StrSplit(*h, '$');
  // A work factor below the floor would make brute force cheap.
  const std::string cheap =
      absl::StrCat("pbkdf2-sha256$1$", parts[2], "$", parts[3]);
  EXPECT_EQ(ValidatePasswordHash(cheap).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(VerifyPassword("pw", cheap));
  // One that would burn minutes per login.
  EXPECT_FALSE(ValidatePasswordHash(absl::StrCat("pbkdf2-sha256$999999999$",
                                                 parts[2], "$", parts[3]))
                   .ok());
  EXPECT_FALSE(ValidatePasswordHash("plaintext").ok());
  EXPECT_FALSE(
      ValidatePasswordHash(absl::StrCat("md5$1000$", parts[2], "$", parts[3]))
          .ok());
  EXPECT_FALSE(ValidatePasswordHash(std::string(300, 'a')).ok());
  EXPECT_FALSE(VerifyPassword("pw", "plaintext"));
}

TEST(PasswordTest, LimitsOnPasswords) {
  EXPECT_EQ(HashPassword("", kFast).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword(std::string(kMaxPasswordBytes + 1, 'x'), kFast)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword("pw", 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  // An over-long password is refused, not truncated into a match.
  const std::string longpw(kMaxPasswordBytes, 'x');
  auto h = HashPassword(longpw, kFast);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(VerifyPassword(longpw, *h));
  EXPECT_FALSE(VerifyPassword(longpw + "x", *h));
}

TEST(PasswordTest, RandomTokensAreHexAndDistinct) {
  const std::string a = RandomToken(), b = RandomToken();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

}  // namespace
}  // namespace contoso::appsvc
