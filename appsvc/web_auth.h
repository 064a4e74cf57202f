// WebAuth: who may use appsvc's web pages. Two kinds of account:
//   support  Contoso support staff: the fleet, every device, timelines;
//   owner    a dishwasher's owner: only their own device (device_id).
// Accounts come from the seed file (seed.h "accounts"), with passwords as
// salted PBKDF2 hashes (password.h); nothing here stores a plaintext.
//
// Login checks the password and, on success, opens a session: a 256-bit
// random token the server keeps only as its SHA-256 (a leaked session table
// does not hand out live cookies), an expiry (Options::session_ttl, on the
// injected Clock), and a per-session CSRF token the pages send back in the
// X-CSRF-Token header of every POST. Sessions are bounded
// (Options::max_sessions; the one closest to expiry goes first) and per
// account (Options::max_sessions_per_user; the oldest goes first), so no
// caller can fill the table for others.
//
// Login attempts are rate-limited per account name and per client address
// (common/util RateLimiter) and overall (bounding the PBKDF2 CPU one attacker
// can burn); a refused attempt runs no hash. An unknown account name costs
// the same PBKDF2 as a known one (no account enumeration by timing).
//
// Thread-safe.
#ifndef SPHERE_APPSVC_WEB_AUTH_H_
#define SPHERE_APPSVC_WEB_AUTH_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/util/clock.h"
#include "common/util/rate_limiter.h"

namespace contoso::appsvc {

enum class WebRole { kSupport, kOwner };

inline constexpr size_t kMaxAccountNameBytes = 64;
inline constexpr size_t kMaxWebAccounts = 100'000;

struct WebAccount {
  std::string user;  // 1..64 of [A-Za-z0-9._@-], matched exactly
  WebRole role = WebRole::kOwner;
  std::string device_id;      // owner: their dishwasher (64 hex); support: ""
  std::string password_hash;  // password.h format
};

// ValidateWebAccount: InvalidArgument naming the bad field.
absl::Status ValidateWebAccount(const WebAccount& a);

struct WebSession {
  std::string user;
  WebRole role = WebRole::kOwner;
  std::string device_id;
  std::string csrf_token;  // 64 hex
  absl::Time expires;
};

class WebAuth {
 public:
  struct Options {
    absl::Duration session_ttl = absl::Hours(8);
    size_t max_sessions = 10'000;
    size_t max_sessions_per_user = 16;
    // Per account name and per client address: a burst of 5, then one
    // attempt every 12 s.
    double login_burst = 5;
    double login_per_second = 1.0 / 12;
    // All logins together (bounds PBKDF2 CPU): a burst of 20, 4/s.
    double global_login_burst = 20;
    double global_login_per_second = 4;
    // Iterations of the dummy hash run for unknown account names until
    // SetAccounts sets it to what the first account's hash uses.
    int dummy_iterations = 600'000;
  };

  WebAuth(const sphere::Clock* clock, Options options);
  WebAuth(const WebAuth&) = delete;
  WebAuth& operator=(const WebAuth&) = delete;

  // SetAccounts replaces every account (seed load). InvalidArgument (and no
  // change) when one is malformed or a name repeats. Sessions of accounts
  // that are gone or changed are dropped.
  absl::Status SetAccounts(const std::vector<WebAccount>& accounts);
  size_t account_count() const;

  // Login: a new session and its token (the cookie value).
  //   UNAUTHENTICATED     wrong name or password (one message for both);
  //   RESOURCE_EXHAUSTED  too many attempts for this name or address;
  //   INVALID_ARGUMENT    name or password over their limits.
  struct LoginResult {
    std::string token;
    WebSession session;
  };
  absl::StatusOr<LoginResult> Login(absl::string_view user,
                                    absl::string_view password,
                                    absl::string_view client_address);

  // Lookup: the live session for a cookie token, or nullopt (unknown,
  // malformed or expired; an expired one is dropped).
  std::optional<WebSession> Lookup(absl::string_view token);

  // Logout ends the session (no-op for an unknown token).
  void Logout(absl::string_view token);

  // CsrfMatches: constant-time comparison of a POST's token with the
  // session's.
  static bool CsrfMatches(const WebSession& s, absl::string_view presented);

  size_t session_count() const;
  absl::Duration session_ttl() const { return options_.session_ttl; }

 private:
  struct Entry {
    WebSession session;
    absl::Time created;
  };
  void EvictLocked(const std::string& user) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const sphere::Clock* const clock_;
  const Options options_;
  sphere::RateLimiter per_key_;
  sphere::RateLimiter global_;

  mutable absl::Mutex mu_;
  std::string dummy_hash_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, WebAccount> accounts_ ABSL_GUARDED_BY(mu_);
  // SHA-256(token) (hex) -> session.
  absl::flat_hash_map<std::string, Entry> sessions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_WEB_AUTH_H_
