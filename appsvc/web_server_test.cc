// WebServer's login, sessions, roles and CSRF over real HTTPS (httplib
// client against the real server on port 0, over the real ContosoCloud on
// an in-memory store). Each attack asserts the specific refusal and that
// nothing changed.
#include "appsvc/web_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/durable_writer.h"
#include "appsvc/password.h"
#include "appsvc/web_auth.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "common/util/file.h"

namespace contoso::appsvc {
namespace {

const std::string kDevA(64, 'a');
const std::string kDevB(64, 'b');

class NoSphere final : public SphereSource {
 public:
  SphereFacts Fetch(const std::string&) override {
    SphereFacts f;
    f.errors.push_back("no Sphere cluster in this test");
    return f;
  }
};

struct Login {
  std::string cookie;  // "sphere_session=..."
  std::string csrf;
  std::string set_cookie;
};

class WebServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(AuthOptions()); }
  virtual WebAuth::Options AuthOptions() { return {}; }

  void Start(WebAuth::Options o) {
    const std::string dir = absl::StrCat(
        ::testing::TempDir(), "/web_server_test_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(sphere::util::MakeDirs(dir, 0700).ok());
    auto key = sphere::crypto::EcPrivateKey::Generate();
    sphere::crypto::CertificateSpec spec;
    spec.common_name = "web_server_test";
    spec.subject_public_key = key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(1);
    spec.usage = sphere::crypto::KeyUsage::kServerAuth;
    spec.ip_sans = {"127.0.0.1"};
    auto pem = sphere::crypto::IssueCertificate(spec, key, "");
    ASSERT_TRUE(pem.ok());
    ASSERT_TRUE(sphere::util::WriteFile(dir + "/web.pem", *pem).ok());
    ASSERT_TRUE(
        sphere::util::WriteFile(dir + "/web.key", key.ToPem(), 0600).ok());

    store_ = *sphere::store::MemoryStore::Create(ColumnFamilies());
    group_ = std::make_unique<sphere::store::GroupCommitWriter>(store_.get());
    writer_ = std::make_unique<SharedGroupCommit>(group_.get());
    cloud_ = std::make_unique<ContosoCloud>(store_.get(), writer_.get(),
                                            &clock_, CloudOptions{});
    SeedData seed;
    for (auto [id, name] : {std::pair{kDevA, "Ada"}, std::pair{kDevB, "Bob"}}) {
      records::Customer c;
      c.set_device_id(id);
      c.set_name(name);
      c.set_shop_id("shop-1");
      seed.customers.push_back(c);
    }
    ASSERT_TRUE(cloud_->LoadSeed(seed).ok());
    for (const std::string& id : {kDevA, kDevB}) {  // one reading each
      v1::ReportTelemetryRequest req;
      v1::Telemetry* t = req.add_samples();
      t->set_time_unix_ms(absl::ToUnixMillis(clock_.Now()));
      t->set_water_temperature_c(55);
      t->set_drying_temperature_c(65);
      t->set_rinse_agent_level_pct(70);
      t->set_cycle_state(v1::Telemetry::WASHING);
      t->set_cycle_id(1);
      t->set_sequence(1);
      ASSERT_TRUE(cloud_->ReportTelemetry(id, req).ok());
    }

    o.dummy_iterations = kMinIterations;
    auth_ = std::make_unique<WebAuth>(&clock_, o);
    auto hash = [](const std::string& pw) {
      return *HashPassword(pw, kMinIterations);
    };
    ASSERT_TRUE(
        auth_
            ->SetAccounts({{"support", WebRole::kSupport, "", hash("sup-pw")},
                           {"ada", WebRole::kOwner, kDevA, hash("ada-pw")},
                           {"bob", WebRole::kOwner, kDevB, hash("bob-pw")}})
            .ok());
    WebServerOptions w;
    w.cert_file = dir + "/web.pem";
    w.key_file = dir + "/web.key";
    w.threads = 2;
    web_ = std::make_unique<WebServer>(cloud_.get(), &sphere_, auth_.get(), w);
    ASSERT_TRUE(web_->Start().ok());
    client_ = std::make_unique<httplib::SSLClient>("127.0.0.1", web_->port());
    client_->enable_server_certificate_verification(false);
    client_->set_connection_timeout(10, 0);
    client_->set_read_timeout(10, 0);
  }

  void TearDown() override {
    if (web_) web_->Stop();
  }

  // LoginForm: GET /login -> the login CSRF token (cookie == page meta).
  std::string LoginForm() {
    auto r = client_->Get("/login");
    EXPECT_TRUE(r);
    if (!r) return "";
    const std::string set = r->get_header_value("Set-Cookie");
    const std::string prefix = "sphere_login_csrf=";
    EXPECT_TRUE(absl::StartsWith(set, prefix)) << set;
    const std::string token = set.substr(prefix.size(), 64);
    EXPECT_TRUE(absl::StrContains(r->body, token));
    return token;
  }

  httplib::Result PostLogin(const std::string& user, const std::string& pw,
                            const std::string& cookie_token,
                            const std::string& body_token) {
    httplib::Headers h;
    if (!cookie_token.empty()) {
      h.emplace("Cookie", "sphere_login_csrf=" + cookie_token);
    }
    nlohmann::json j = {{"user", user}, {"password", pw}, {"csrf", body_token}};
    return client_->Post("/login", h, j.dump(), "application/json");
  }

  Login LogIn(const std::string& user, const std::string& pw) {
    const std::string t = LoginForm();
    auto r = PostLogin(user, pw, t, t);
    EXPECT_TRUE(r);
    Login out;
    if (!r) return out;
    EXPECT_EQ(r->status, 200) << r->body;
    for (size_t i = 0; i < r->get_header_value_count("Set-Cookie"); ++i) {
      const std::string c = r->get_header_value("Set-Cookie", i);
      if (absl::StartsWith(c, "sphere_session=")) {
        out.set_cookie = c;
        out.cookie = c.substr(0, c.find(';'));
      }
    }
    auto s = client_->Get("/api/session", {{"Cookie", out.cookie}});
    EXPECT_TRUE(s);
    if (s && s->status == 200) {
      out.csrf = nlohmann::json::parse(s->body)["csrf"].get<std::string>();
    }
    return out;
  }

  int Get(const std::string& path, const Login* who) {
    httplib::Headers h;
    if (who) h.emplace("Cookie", who->cookie);
    auto r = client_->Get(path.c_str(), h);
    return r ? r->status : -1;
  }

  int Post(const std::string& path, const Login* who, const std::string& csrf,
           const std::string& body) {
    httplib::Headers h;
    if (who) h.emplace("Cookie", who->cookie);
    if (!csrf.empty()) h.emplace("X-CSRF-Token", csrf);
    auto r = client_->Post(path.c_str(), h, body, "application/json");
    return r ? r->status : -1;
  }

  int ServiceRequests(const std::string& dev) {
    auto i = cloud_->GetDeviceInsights(dev);
    return i.ok() ? i->service_requests_size() : -1;
  }

  sphere::FakeClock clock_{absl::Now()};
  NoSphere sphere_;
  std::unique_ptr<sphere::store::MemoryStore> store_;
  std::unique_ptr<sphere::store::GroupCommitWriter> group_;
  std::unique_ptr<SharedGroupCommit> writer_;
  std::unique_ptr<ContosoCloud> cloud_;
  std::unique_ptr<WebAuth> auth_;
  std::unique_ptr<WebServer> web_;
  std::unique_ptr<httplib::SSLClient> client_;
};

const std::string kRequestBody = R"({"description": "wet dishes"})";

TEST_F(WebServerTest, Attack_NoCookieRedirectedOr401) {
  for (const char* page : {"/", "/support", "/owner"}) {
    auto r = client_->Get(page);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 302) << page;
    EXPECT_EQ(r->get_header_value("Location"), "/login") << page;
  }
  for (const std::string& api :
       {std::string("/api/devices"), "/api/devices/" + kDevA,
        "/api/devices/" + kDevA + "/timeline", std::string("/api/session")}) {
    EXPECT_EQ(Get(api, nullptr), 401) << api;
  }
  EXPECT_EQ(Post("/api/devices/" + kDevA + "/service-request", nullptr, "",
                 kRequestBody),
            401);
  EXPECT_EQ(ServiceRequests(kDevA), 0);
  EXPECT_EQ(Get("/healthz", nullptr), 200);
  EXPECT_EQ(Get("/login", nullptr), 200);
}

TEST_F(WebServerTest, Attack_ForgedOrExpiredSessionCookieIs401) {
  Login forged{"sphere_session=" + std::string(64, '1'), "", ""};
  EXPECT_EQ(Get("/api/devices", &forged), 401);
  Login ada = LogIn("ada", "ada-pw");
  EXPECT_EQ(Get("/api/devices/" + kDevA, &ada), 200);
  clock_.Advance(absl::Hours(8) + absl::Seconds(1));
  EXPECT_EQ(Get("/api/devices/" + kDevA, &ada), 401);
  EXPECT_EQ(Post("/api/devices/" + kDevA + "/service-request", &ada, ada.csrf,
                 kRequestBody),
            401);
  EXPECT_EQ(ServiceRequests(kDevA), 0);
}

TEST_F(WebServerTest, SessionCookieIsSecureHttpOnlySameSiteWithExpiry) {
  Login ada = LogIn("ada", "ada-pw");
  EXPECT_TRUE(absl::StrContains(ada.set_cookie, "; Secure")) << ada.set_cookie;
  EXPECT_TRUE(absl::StrContains(ada.set_cookie, "; HttpOnly"));
  EXPECT_TRUE(absl::StrContains(ada.set_cookie, "; SameSite=Strict"));
  EXPECT_TRUE(absl::StrContains(ada.set_cookie, "; Max-Age=28800"));
  EXPECT_EQ(ada.cookie.size(), std::string("sphere_session=").size() + 64);
  EXPECT_EQ(ada.csrf.size(), 64u);
}

TEST_F(WebServerTest, Attack_OwnerCannotReadAnotherOwnersDishwasher) {
  Login ada = LogIn("ada", "ada-pw");
  EXPECT_EQ(Get("/api/devices/" + kDevA, &ada), 200);
  EXPECT_EQ(Get("/api/devices/" + kDevB, &ada), 403);
  EXPECT_EQ(Get("/api/devices/" + kDevB + "/timeline", &ada), 403);
  EXPECT_EQ(Get("/api/devices", &ada), 403);  // the fleet is support's
  EXPECT_EQ(Get("/support", &ada), 403);
  EXPECT_EQ(Post("/api/devices/" + kDevB + "/service-request", &ada, ada.csrf,
                 kRequestBody),
            403);
  EXPECT_EQ(Post("/api/devices/" + kDevB + "/order", &ada, ada.csrf,
                 R"({"offer_id": "x"})"),
            403);
  EXPECT_EQ(ServiceRequests(kDevB), 0);
  // Support sees both.
  Login sup = LogIn("support", "sup-pw");
  EXPECT_EQ(Get("/api/devices", &sup), 200);
  EXPECT_EQ(Get("/api/devices/" + kDevB, &sup), 200);
  EXPECT_EQ(Get("/support", &sup), 200);
}

TEST_F(WebServerTest, Attack_PostWithoutCsrfTokenRefused) {
  Login ada = LogIn("ada", "ada-pw");
  Login bob = LogIn("bob", "bob-pw");
  const std::string path = "/api/devices/" + kDevA + "/service-request";
  EXPECT_EQ(Post(path, &ada, "", kRequestBody), 403);
  EXPECT_EQ(Post(path, &ada, std::string(64, '0'), kRequestBody), 403);
  EXPECT_EQ(Post(path, &ada, bob.csrf, kRequestBody), 403);  // another's
  EXPECT_EQ(Post("/logout", &ada, "", ""), 403);
  EXPECT_EQ(ServiceRequests(kDevA), 0);
  EXPECT_EQ(Get("/api/session", &ada), 200);  // the refused logout did nothing
  EXPECT_EQ(Post(path, &ada, ada.csrf, kRequestBody), 200);
  EXPECT_EQ(ServiceRequests(kDevA), 1);
}

TEST_F(WebServerTest, Attack_LoginWithoutFormTokenRefused) {
  const std::string t = LoginForm();
  auto none = PostLogin("ada", "ada-pw", "", "");
  auto no_cookie = PostLogin("ada", "ada-pw", "", t);
  auto mismatch = PostLogin("ada", "ada-pw", t, std::string(64, 'f'));
  for (auto* r : {&none, &no_cookie, &mismatch}) {
    ASSERT_TRUE(*r);
    EXPECT_EQ((*r)->status, 403) << (*r)->body;
    EXPECT_EQ((*r)->get_header_value_count("Set-Cookie"), 0u);
  }
  EXPECT_EQ(auth_->session_count(), 0u);
}

TEST_F(WebServerTest, Attack_WrongPasswordGets401AndNoSession) {
  const std::string t = LoginForm();
  auto r = PostLogin("ada", "bob-pw", t, t);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(auth_->session_count(), 0u);
}

class WebServerRateLimitTest : public WebServerTest {
 protected:
  WebAuth::Options AuthOptions() override {
    WebAuth::Options o;
    o.login_burst = 3;
    return o;
  }
};

TEST_F(WebServerRateLimitTest, Attack_LoginGuessingRateLimited) {
  const std::string t = LoginForm();
  for (int i = 0; i < 3; ++i) {
    auto r = PostLogin("ada", absl::StrCat("guess", i), t, t);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
  }
  auto r = PostLogin("ada", "ada-pw", t, t);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(auth_->session_count(), 0u);
}

TEST_F(WebServerTest, LogoutEndsTheSession) {
  Login ada = LogIn("ada", "ada-pw");
  EXPECT_EQ(Post("/logout", &ada, ada.csrf, ""), 200);
  EXPECT_EQ(Get("/api/session", &ada), 401);
  EXPECT_EQ(auth_->session_count(), 0u);
}

}  // namespace
}  // namespace contoso::appsvc
