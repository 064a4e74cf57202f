#include "appsvc/web_auth.h"

#include <openssl/crypto.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "appsvc/password.h"
#include "common/crypto/crypto.h"

namespace contoso::appsvc {
namespace {

constexpr size_t kTokenBytes = 32;  // 256 bits

bool NameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '@' || c == '-';
}

bool IsHexId(absl::string_view id) {
  return id.size() == 64 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string TokenKey(absl::string_view token) {
  return absl::BytesToHexString(sphere::crypto::Sha256(token));
}

}  // namespace

absl::Status ValidateWebAccount(const WebAccount& a) {
  if (a.user.empty() || a.user.size() > kMaxAccountNameBytes ||
      !std::all_of(a.user.begin(), a.user.end(), NameChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("account name must be 1..", kMaxAccountNameBytes,
                     " characters of [A-Za-z0-9._@-]"));
  }
  if (a.role == WebRole::kOwner && !IsHexId(a.device_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "owner account ", a.user, " needs its dishwasher's device_id"));
  }
  if (a.role == WebRole::kSupport && !a.device_id.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("support account ", a.user, " must not name a device"));
  }
  if (auto s = ValidatePasswordHash(a.password_hash); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("account ", a.user, ": ", s.message()));
  }
  return absl::OkStatus();
}

WebAuth::WebAuth(const sphere::Clock* clock, Options options)
    : clock_(clock),
      options_(options),
      per_key_(clock, {.rate_per_second = options.login_per_second,
                       .burst = options.login_burst,
                       .max_keys = 65536}),
      global_(clock, {.rate_per_second = options.global_login_per_second,
                      .burst = options.global_login_burst,
                      .max_keys = 1}) {
  auto h = HashPassword(
      RandomToken(16),
      std::clamp(options.dummy_iterations, kMinIterations, kMaxIterations));
  absl::MutexLock l(&mu_);
  dummy_hash_ = h.ok() ? *h : "";
}

absl::Status WebAuth::SetAccounts(const std::vector<WebAccount>& accounts) {
  if (accounts.size() > kMaxWebAccounts) {
    return absl::InvalidArgumentError(
        absl::StrCat("more than ", kMaxWebAccounts, " web accounts"));
  }
  absl::flat_hash_map<std::string, WebAccount> next;
  for (const WebAccount& a : accounts) {
    if (auto s = ValidateWebAccount(a); !s.ok()) return s;
    if (!next.emplace(a.user, a).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("account ", a.user, " is listed twice"));
    }
  }
  // Unknown names must cost what known ones do: the dummy hash takes the
  // first account's work factor.
  std::string dummy;
  if (!accounts.empty()) {
    auto iterations = HashIterations(accounts.front().password_hash);
    auto h = HashPassword(RandomToken(16),
                          iterations.ok() ? *iterations : kDefaultIterations);
    if (h.ok()) dummy = *h;
  }
  absl::MutexLock l(&mu_);
  if (!dummy.empty()) dummy_hash_ = std::move(dummy);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    const WebSession& s = it->second.session;
    auto n = next.find(s.user);
    auto old = accounts_.find(s.user);
    const bool same = n != next.end() && old != accounts_.end() &&
                      n->second.role == old->second.role &&
                      n->second.device_id == old->second.device_id &&
                      n->second.password_hash == old->second.password_hash;
    if (same) {
      ++it;
    } else {
      sessions_.erase(it++);
    }
  }
  accounts_ = std::move(next);
  return absl::OkStatus();
}

size_t WebAuth::account_count() const {
  absl::MutexLock l(&mu_);
  return accounts_.size();
}

absl::StatusOr<WebAuth::LoginResult> WebAuth::Login(
    absl::string_view user, absl::string_view password,
    absl::string_view client_address) {
  if (user.empty() || user.size() > kMaxAccountNameBytes ||
      password.size() > kMaxPasswordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("account name must be 1..", kMaxAccountNameBytes,
                     " bytes and the password at most ", kMaxPasswordBytes));
  }
  const std::string name_key = absl::StrCat("user:", user);
  const std::string addr_key =
      absl::StrCat("addr:", client_address.substr(0, 64));
  // Check every budget before taking from any, so a refusal takes nothing.
  if (per_key_.RetryAfter(name_key) > absl::ZeroDuration() ||
      per_key_.RetryAfter(addr_key) > absl::ZeroDuration() ||
      global_.RetryAfter("*") > absl::ZeroDuration() ||
      !per_key_.TryAcquire(name_key) || !per_key_.TryAcquire(addr_key) ||
      !global_.TryAcquire("*")) {
    return absl::ResourceExhaustedError(
        "too many login attempts; wait a minute and try again");
  }
  std::optional<WebAccount> account;
  std::string hash;
  {
    absl::MutexLock l(&mu_);
    auto it = accounts_.find(user);
    if (it != accounts_.end()) account = it->second;
    hash = account ? account->password_hash : dummy_hash_;
  }
  // PBKDF2 outside the lock; the same work for an unknown name.
  const bool ok = VerifyPassword(password, hash);
  if (!account || !ok) {
    return absl::UnauthenticatedError("wrong account name or password");
  }
  LoginResult out;
  out.token = RandomToken(kTokenBytes);
  out.session.user = account->user;
  out.session.role = account->role;
  out.session.device_id = account->device_id;
  out.session.csrf_token = RandomToken(kTokenBytes);
  const absl::Time now = clock_->Now();
  out.session.expires = now + options_.session_ttl;
  absl::MutexLock l(&mu_);
  EvictLocked(account->user);
  sessions_[TokenKey(out.token)] = Entry{out.session, now};
  return out;
}

void WebAuth::EvictLocked(const std::string& user) {
  const absl::Time now = clock_->Now();
  // Expired sessions first.
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->second.session.expires <= now) {
      sessions_.erase(it++);
    } else {
      ++it;
    }
  }
  // This account's oldest beyond its share.
  for (;;) {
    size_t mine = 0;
    auto oldest = sessions_.end();
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.session.user != user) continue;
      ++mine;
      if (oldest == sessions_.end() ||
          it->second.created < oldest->second.created) {
        oldest = it;
      }
    }
    if (mine < options_.max_sessions_per_user) break;
    sessions_.erase(oldest);
  }
  // The table's bound: the one closest to expiry goes.
  while (sessions_.size() >= options_.max_sessions && !sessions_.empty()) {
    auto first = std::min_element(
        sessions_.begin(), sessions_.end(), [](const auto& a, const auto& b) {
          return a.second.session.expires < b.second.session.expires;
        });
    sessions_.erase(first);
  }
}

std::optional<WebSession> WebAuth::Lookup(absl::string_view token) {
  if (token.size() != 2 * kTokenBytes) return std::nullopt;
  const std::string key = TokenKey(token);
  absl::MutexLock l(&mu_);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return std::nullopt;
  if (it->second.session.expires <= clock_->Now()) {
    sessions_.erase(it);
    return std::nullopt;
  }
  return it->second.session;
}

void WebAuth::Logout(absl::string_view token) {
  if (token.size() != 2 * kTokenBytes) return;
  const std::string key = TokenKey(token);
  absl::MutexLock l(&mu_);
  sessions_.erase(key);
}

bool WebAuth::CsrfMatches(const WebSession& s, absl::string_view presented) {
  return presented.size() == s.csrf_token.size() && !presented.empty() &&
         CRYPTO_memcmp(presented.data(), s.csrf_token.data(),
                       presented.size()) == 0;
}

size_t WebAuth::session_count() const {
  absl::MutexLock l(&mu_);
  return sessions_.size();
}

}  // namespace contoso::appsvc
