#include "securitysvc/auth/device_authenticator.h"

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/rpc.h"

namespace sphere::auth {

absl::Status DeviceAuthenticator::CheckCatalog(const DeviceContext& ctx,
                                               v1::Device* record) const {
  auto device = catalog_->GetDevice(ctx.device_id);
  if (!device.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("device ", ctx.device_id, " is unknown to the platform"));
  }
  if (device->state() == v1::REVOKED) {
    return absl::PermissionDeniedError(absl::StrCat(
        "device ", ctx.device_id, " is revoked; its credentials are void"));
  }
  if (device->tenant_id() != ctx.tenant_id ||
      device->ownership_epoch() != ctx.ownership_epoch) {
    return absl::PermissionDeniedError(absl::StrCat(
        "credential of device ", ctx.device_id,
        " was issued under a previous ownership (epoch ", ctx.ownership_epoch,
        ", now ", device->ownership_epoch(), "); attest again"));
  }
  if (record != nullptr) *record = *std::move(device);
  return absl::OkStatus();
}

absl::StatusOr<DeviceContext> DeviceAuthenticator::VerifyToken(
    absl::string_view token, absl::Time now) const {
  const size_t slot = absl::HashOf(token) % token_slots_;
  {
    absl::MutexLock l(&token_mu_);
    if (!verified_.empty() && verified_[slot] != nullptr &&
        verified_[slot]->token == token) {
      const DeviceContext& ctx = verified_[slot]->context;
      if (now > ctx.not_after) {
        return absl::UnauthenticatedError(
            "session token expired: attest again to renew it");
      }
      return ctx;
    }
  }
  auto ctx = tokens_->Verify(token, now);
  if (!ctx.ok()) return ctx;
  auto entry = std::make_unique<const VerifiedToken>(
      VerifiedToken{std::string(token), *ctx});
  absl::MutexLock l(&token_mu_);
  if (verified_.empty()) verified_.resize(token_slots_);
  verified_[slot] = std::move(entry);
  return ctx;
}

absl::StatusOr<DeviceContext> DeviceAuthenticator::Authenticate(
    const crypto::ParsedCertificate* peer, absl::string_view session_token,
    v1::Device* record) const {
  if (peer == nullptr) {
    return absl::UnauthenticatedError(
        "no client certificate: connect with a device or gateway certificate");
  }
  absl::StatusOr<DeviceContext> ctx;
  if (ParseScope(peer->claims.scope) == Scope::kGateway) {
    if (session_token.empty()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "gateway calls must carry the device's session token in '",
          kSessionTokenMetadata, "' metadata"));
    }
    ctx = VerifyToken(session_token, clock_->Now());
  } else {
    ctx = FromCertificate(*peer, clock_->Now());
  }
  if (!ctx.ok()) return ctx.status();
  if (auto s = CheckCatalog(*ctx, record); !s.ok()) return s;
  return ctx;
}

absl::StatusOr<DeviceContext> DeviceAuthenticator::FromCall(
    const grpc::ServerContextBase& context) const {
  auto peer = rpc::PeerFromContext(context);
  if (!peer.ok()) return peer.status();
  std::string token;
  const auto& md = context.client_metadata();
  auto it = md.find(kSessionTokenMetadata);
  if (it != md.end()) token.assign(it->second.data(), it->second.size());
  return Authenticate(&peer->cert, token);
}

}  // namespace sphere::auth
