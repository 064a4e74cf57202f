#include "securitysvc/auth/device_context.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sphere::auth {

absl::StatusOr<DeviceContext> FromCertificate(
    const crypto::ParsedCertificate& cert, absl::Time now) {
  const crypto::DeviceClaims& c = cert.claims;
  if (c.device_id.empty() || c.tenant_id.empty()) {
    return absl::UnauthenticatedError(
        "certificate carries no Sphere device claims: attest to obtain a "
        "device certificate");
  }
  const Scope scope = ParseScope(c.scope);
  if (scope == Scope::kNone) {
    return absl::UnauthenticatedError(
        "device certificate carries no scope claim: attest to obtain a "
        "current device certificate");
  }
  if (scope != Scope::kFull && scope != Scope::kUpdateOnly) {
    return absl::UnauthenticatedError(absl::StrCat(
        "certificate scope '",
        scope == Scope::kUnknown ? "unknown" : ScopeName(scope),
        "' is not a device certificate scope (full or update-only): attest "
        "to obtain a device certificate"));
  }
  if (now > cert.not_after) {
    return absl::UnauthenticatedError(
        "device certificate expired: attest again to renew it");
  }
  DeviceContext ctx;
  ctx.device_id = c.device_id;
  ctx.tenant_id = c.tenant_id;
  ctx.product_id = c.product_id;
  ctx.device_group_id = c.device_group_id;
  ctx.scope = scope;
  ctx.certificate_serial = cert.serial_hex;
  ctx.not_after = cert.not_after;
  if (!c.epoch.empty() && !absl::SimpleAtoi(c.epoch, &ctx.ownership_epoch)) {
    return absl::UnauthenticatedError(
        "device certificate carries a malformed ownership epoch claim");
  }
  return ctx;
}

absl::Status MayAttestFor(const crypto::DeviceClaims& caller,
                          absl::string_view device_id) {
  const Scope scope = ParseScope(caller.scope);
  if (scope == Scope::kGateway) return absl::OkStatus();
  const bool device_scope = IsDeviceScope(scope);
  if (device_scope && caller.device_id == device_id) return absl::OkStatus();
  if (device_scope) {
    return absl::PermissionDeniedError(
        absl::StrCat("device ", caller.device_id, " may not attest for device ",
                     device_id, ": a device attests only for itself"));
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "this credential (scope '", caller.scope,
      "') may not attest devices: connect with the device's manufacturing or "
      "device certificate, or through a gateway"));
}

absl::Status RequireFullScope(const DeviceContext& ctx) {
  if (ctx.scope == Scope::kFull) return absl::OkStatus();
  if (ctx.update_only()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "device ", ctx.device_id,
        " holds an update-only certificate (outdated software): it may reach "
        "only the update service until it updates and attests again"));
  }
  return absl::PermissionDeniedError(
      absl::StrCat("device ", ctx.device_id, " certificate scope '",
                   ScopeName(ctx.scope), "' does not grant access"));
}

// Token: "v2|device|tenant|product|group|scope|serial|epoch|expiry_s" + "|" +
// hex MAC.
std::string SessionTokens::Issue(const DeviceContext& ctx) const {
  std::string body = absl::StrCat(
      "v2|", ctx.device_id, "|", ctx.tenant_id, "|", ctx.product_id, "|",
      ctx.device_group_id, "|", ScopeName(ctx.scope), "|",
      ctx.certificate_serial, "|", ctx.ownership_epoch, "|",
      absl::ToUnixSeconds(ctx.not_after));
  return absl::StrCat(body, "|",
                      crypto::HexEncode(crypto::HmacSha256(key_, body)));
}

absl::StatusOr<DeviceContext> SessionTokens::Verify(absl::string_view token,
                                                    absl::Time now) const {
  size_t bar = token.rfind('|');
  if (bar == absl::string_view::npos) {
    return absl::UnauthenticatedError("malformed session token");
  }
  absl::string_view body = token.substr(0, bar);
  auto mac = crypto::HexDecode(token.substr(bar + 1));
  if (!mac.ok() ||
      !crypto::ConstantTimeEquals(*mac, crypto::HmacSha256(key_, body))) {
    return absl::UnauthenticatedError(
        "session token MAC does not verify: forged or tampered token");
  }
  std::vector<std::string> f = absl::StrSplit(body, '|');
  int64_t expiry = 0;
  uint32_t epoch = 0;
  if (f.size() != 9 || f[0] != "v2" || !absl::SimpleAtoi(f[7], &epoch) ||
      !absl::SimpleAtoi(f[8], &expiry)) {
    return absl::UnauthenticatedError("malformed session token");
  }
  DeviceContext ctx;
  ctx.device_id = f[1];
  ctx.tenant_id = f[2];
  ctx.product_id = f[3];
  ctx.device_group_id = f[4];
  ctx.scope = ParseScope(f[5]);
  if (ctx.scope != Scope::kFull && ctx.scope != Scope::kUpdateOnly) {
    return absl::UnauthenticatedError(
        "session token carries no device scope (full or update-only)");
  }
  ctx.certificate_serial = f[6];
  ctx.ownership_epoch = epoch;
  ctx.not_after = absl::FromUnixSeconds(expiry);
  if (now > ctx.not_after) {
    return absl::UnauthenticatedError(
        "session token expired: attest again to renew it");
  }
  return ctx;
}

}  // namespace sphere::auth
