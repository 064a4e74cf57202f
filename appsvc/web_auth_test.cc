#include "appsvc/web_auth.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "appsvc/password.h"
#include "common/util/clock.h"

namespace contoso::appsvc {
namespace {

WebAccount Account(const std::string& user, WebRole role,
                   const std::string& device, const std::string& password) {
  auto h = HashPassword(password, kMinIterations);
  EXPECT_TRUE(h.ok());
  return WebAccount{user, role, device, h.ok() ? *h : ""};
}

class WebAuthTest : public ::testing::Test {
 protected:
  WebAuthTest() : auth_(&clock_, Opts()) {
    EXPECT_TRUE(
        auth_
            .SetAccounts(
                {Account("support", WebRole::kSupport, "", "support-pw"),
                 Account("ada", WebRole::kOwner, dev_a_, "ada-pw")})
            .ok());
  }
  static WebAuth::Options Opts() {
    WebAuth::Options o;
    o.dummy_iterations = kMinIterations;
    o.session_ttl = absl::Hours(1);
    return o;
  }
  const std::string dev_a_ = std::string(64, 'a');
  sphere::FakeClock clock_;
  WebAuth auth_;
};

TEST_F(WebAuthTest, LoginOpensASessionWithItsOwnCsrfToken) {
  auto r = auth_.Login("ada", "ada-pw", "10.0.0.1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token.size(), 64u);
  EXPECT_EQ(r->session.role, WebRole::kOwner);
  EXPECT_EQ(r->session.device_id, dev_a_);
  auto s = auth_.Lookup(r->token);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->user, "ada");
  EXPECT_TRUE(WebAuth::CsrfMatches(*s, r->session.csrf_token));
  EXPECT_FALSE(WebAuth::CsrfMatches(*s, ""));
  EXPECT_FALSE(WebAuth::CsrfMatches(*s, std::string(64, '0')));
  EXPECT_NE(r->session.csrf_token, r->token);
}

TEST_F(WebAuthTest, Attack_WrongPasswordOrUnknownUserRefusedAlike) {
  auto wrong = auth_.Login("ada", "nope", "10.0.0.1");
  auto unknown = auth_.Login("mallory", "nope", "10.0.0.1");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(wrong.status().message(), unknown.status().message());
  EXPECT_EQ(auth_.session_count(), 0u);
}

TEST_F(WebAuthTest, Attack_GuessingIsRateLimitedPerAccount) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(auth_.Login("ada", "guess", "10.0.0.1").status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  // Even the right password is refused while the account's budget is spent,
  // from another address too.
  auto r = auth_.Login("ada", "ada-pw", "10.0.0.2");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(auth_.session_count(), 0u);
  // Another account is unaffected.
  EXPECT_TRUE(auth_.Login("support", "support-pw", "10.0.0.3").ok());
  // The budget refills with time.
  clock_.Advance(absl::Seconds(13));
  EXPECT_TRUE(auth_.Login("ada", "ada-pw", "10.0.0.2").ok());
}

TEST_F(WebAuthTest, Attack_GuessingIsRateLimitedPerAddress) {
  for (int i = 0; i < 5; ++i) {
    (void)auth_.Login(absl::StrCat("user", i), "guess", "10.9.9.9");
  }
  EXPECT_EQ(auth_.Login("ada", "ada-pw", "10.9.9.9").status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(auth_.session_count(), 0u);
}

TEST_F(WebAuthTest, SessionsExpire) {
  auto r = auth_.Login("ada", "ada-pw", "10.0.0.1");
  ASSERT_TRUE(r.ok());
  clock_.Advance(absl::Minutes(59));
  EXPECT_TRUE(auth_.Lookup(r->token).has_value());
  clock_.Advance(absl::Minutes(2));
  EXPECT_FALSE(auth_.Lookup(r->token).has_value());
  EXPECT_EQ(auth_.session_count(), 0u);
}

TEST_F(WebAuthTest, LogoutEndsTheSession) {
  auto r = auth_.Login("ada", "ada-pw", "10.0.0.1");
  ASSERT_TRUE(r.ok());
  auth_.Logout(r->token);
  EXPECT_FALSE(auth_.Lookup(r->token).has_value());
}

TEST_F(WebAuthTest, Attack_ForgedOrMalformedTokensFindNothing) {
  ASSERT_TRUE(auth_.Login("ada", "ada-pw", "10.0.0.1").ok());
  EXPECT_FALSE(auth_.Lookup("").has_value());
  EXPECT_FALSE(auth_.Lookup(std::string(64, '0')).has_value());
  EXPECT_FALSE(auth_.Lookup(std::string(10000, 'a')).has_value());
}

TEST_F(WebAuthTest, SessionsPerAccountAreBounded) {
  WebAuth::Options o = Opts();
  o.max_sessions_per_user = 2;
  o.login_burst = 100;
  WebAuth auth(&clock_, o);
  ASSERT_TRUE(
      auth.SetAccounts({Account("ada", WebRole::kOwner, dev_a_, "pw")}).ok());
  auto first = auth.Login("ada", "pw", "a");
  clock_.Advance(absl::Seconds(1));
  auto second = auth.Login("ada", "pw", "a");
  clock_.Advance(absl::Seconds(1));
  auto third = auth.Login("ada", "pw", "a");
  ASSERT_TRUE(first.ok() && second.ok() && third.ok());
  EXPECT_EQ(auth.session_count(), 2u);
  EXPECT_FALSE(auth.Lookup(first->token).has_value());
  EXPECT_TRUE(auth.Lookup(third->token).has_value());
}

TEST_F(WebAuthTest, ChangedAccountLosesItsSessions) {
  auto r = auth_.Login("ada", "ada-pw", "10.0.0.1");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(
      auth_.SetAccounts({Account("ada", WebRole::kOwner, dev_a_, "new-pw")})
          .ok());
  EXPECT_FALSE(auth_.Lookup(r->token).has_value());
}

TEST_F(WebAuthTest, BadAccountsRefusedWithoutChange) {
  const size_t before = auth_.account_count();
  EXPECT_EQ(
      auth_.SetAccounts({Account("bad name!", WebRole::kSupport, "", "pw")})
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      auth_.SetAccounts({Account("bob", WebRole::kOwner, "", "pw")}).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(auth_
                .SetAccounts({Account("x", WebRole::kSupport, "", "pw"),
                              Account("x", WebRole::kSupport, "", "pw")})
                .code(),
            absl::StatusCode::kInvalidArgument);
  WebAccount plain{"p", WebRole::kSupport, "", "plaintext-password"};
  EXPECT_EQ(auth_.SetAccounts({plain}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(auth_.account_count(), before);
  EXPECT_TRUE(auth_.Login("ada", "ada-pw", "10.0.0.1").ok());
}

TEST_F(WebAuthTest, OversizedInputsRefusedBeforeHashing) {
  EXPECT_EQ(auth_.Login(std::string(65, 'a'), "pw", "x").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(auth_.Login("ada", std::string(257, 'p'), "x").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace contoso::appsvc
