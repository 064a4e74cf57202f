#include "appsvc/gateway_auth.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace contoso::appsvc {

namespace auth = sphere::auth;
namespace crypto = sphere::crypto;

GatewayAuth::GatewayAuth(std::string mac_key, std::string platform_root_pem,
                         const DeviceRegistry* registry, sphere::Clock* clock,
                         GatewayAuthOptions options)
    : tokens_(std::move(mac_key)),
      root_pem_(std::move(platform_root_pem)),
      registry_(registry),
      clock_(clock),
      options_(options),
      issuers_(options.max_remembered_cas) {}

std::string GatewayAuth::ProofMessage(const std::string& device_id,
                                      const std::string& nonce) {
  return GatewayProofMessage(device_id, nonce);
}

absl::Status GatewayAuth::ValidDeviceId(const std::string& device_id) const {
  if (device_id.size() != 64 ||
      !std::all_of(device_id.begin(), device_id.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
      })) {
    return absl::InvalidArgumentError(
        "device_id must be 64 lowercase hex characters (SHA-256 of the "
        "device public key)");
  }
  return absl::OkStatus();
}

void GatewayAuth::SweepExpiredLocked(absl::Time now) {
  absl::erase_if(pending_,
                 [now](const auto& kv) { return kv.second.expires <= now; });
}

size_t GatewayAuth::outstanding_nonces() const {
  absl::MutexLock l(&mu_);
  return pending_.size();
}

absl::StatusOr<std::string> GatewayAuth::Challenge(
    const std::string& device_id) {
  if (auto s = ValidDeviceId(device_id); !s.ok()) return s;
  const absl::Time now = clock_->Now();
  std::string nonce = crypto::RandomBytes(kNonceBytes);
  absl::MutexLock l(&mu_);
  if (pending_.size() >= options_.max_outstanding_nonces &&
      !pending_.contains(device_id)) {
    SweepExpiredLocked(now);
    if (pending_.size() >= options_.max_outstanding_nonces) {
      return absl::ResourceExhaustedError(
          absl::StrCat("gateway challenge table full (", pending_.size(),
                       " live nonces): retry later"));
    }
  }
  // One outstanding nonce per device: a new challenge replaces the last.
  pending_[device_id] = Pending{nonce, now + options_.nonce_ttl};
  return nonce;
}

absl::StatusOr<std::string> GatewayAuth::Prove(const std::string& device_id,
                                               const std::string& nonce,
                                               const std::string& chain_pem,
                                               const std::string& signature) {
  absl::StatusOr<Proven> proven =
      ProveDevice(device_id, nonce, chain_pem, signature);
  if (!proven.ok()) return proven.status();
  return std::move(proven->token);
}

absl::StatusOr<GatewayAuth::Proven> GatewayAuth::ProveDevice(
    const std::string& device_id, const std::string& nonce,
    const std::string& chain_pem, const std::string& signature) {
  return ProveDevice(device_id, nonce, ProofChain{chain_pem, {}}, signature);
}

absl::StatusOr<GatewayAuth::Proven> GatewayAuth::ProveDevice(
    const std::string& device_id, const std::string& nonce,
    const ProofChain& chain, const std::string& signature) {
  // Limits first, before any lookup, parse or log.
  if (auto s = ValidDeviceId(device_id); !s.ok()) return s;
  if (nonce.size() != kNonceBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("nonce must be ", kNonceBytes, " bytes"));
  }
  if (!chain.pem.empty() && !chain.der.empty()) {
    return absl::InvalidArgumentError(
        "the certificate chain must come as PEM or as DER, not both");
  }
  if (chain.der.empty()) {
    if (chain.pem.empty() || chain.pem.size() > options_.max_chain_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("certificate chain must be 1..",
                       options_.max_chain_bytes, " bytes of PEM"));
    }
  } else {
    size_t der_bytes = 0;
    for (absl::string_view der : chain.der) {
      if (der.empty()) {
        return absl::InvalidArgumentError(
            "an empty DER certificate in the chain");
      }
      der_bytes += der.size();
    }
    if (chain.der.size() > kMaxChainCertificates ||
        der_bytes > options_.max_chain_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "certificate chain must be 1..", kMaxChainCertificates,
          " DER certificates of 1..", options_.max_chain_bytes,
          " bytes together"));
    }
  }
  if (signature.empty() || signature.size() > options_.max_signature_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("signature must be 1..",
                                                   options_.max_signature_bytes,
                                                   " bytes (DER ECDSA P-256)"));
  }
  const absl::Time now = clock_->Now();
  // The attempt consumes the device's nonce, whatever its outcome.
  {
    absl::MutexLock l(&mu_);
    auto it = pending_.find(device_id);
    if (it == pending_.end()) {
      return absl::UnauthenticatedError(
          "no outstanding challenge for this device (unknown, used or "
          "replaced nonce): ask for a new challenge");
    }
    const Pending p = std::move(it->second);
    pending_.erase(it);
    if (!crypto::ConstantTimeEquals(p.nonce, nonce)) {
      return absl::UnauthenticatedError(
          "nonce is not the device's outstanding challenge (replayed or "
          "forged): ask for a new challenge");
    }
    if (p.expires <= now) {
      return absl::UnauthenticatedError(
          "challenge expired: ask for a new challenge");
    }
  }
  // The leaf is parsed once: its fields come from the certificate the
  // chain verification used (a parse costs ~3 P-256 verifies in OpenSSL 3.0).
  absl::StatusOr<crypto::ParsedCertificate> cert;
  if (!chain.der.empty()) {
    cert = issuers_.VerifyDerChainAndParse(chain.der, root_pem_, now,
                                           /*require_client_auth=*/true);
  } else {
    std::vector<std::string> pems = crypto::SplitPemChain(chain.pem);
    if (pems.empty() || pems.size() > kMaxChainCertificates) {
      return absl::InvalidArgumentError(
          "certificate chain must hold the device certificate and at most two "
          "intermediates");
    }
    std::string intermediates;
    for (size_t i = 1; i < pems.size(); ++i) intermediates += pems[i];
    cert = issuers_.VerifyChainAndParse(pems[0], intermediates, root_pem_, now,
                                        /*require_client_auth=*/true);
  }
  if (!cert.ok()) {
    const absl::Status& s = cert.status();
    return absl::Status(
        s.code() == absl::StatusCode::kInvalidArgument
            ? absl::StatusCode::kInvalidArgument
            : absl::StatusCode::kUnauthenticated,
        absl::StrCat("device certificate chain: ", s.message()));
  }
  auto ctx = auth::FromCertificate(*cert, now);
  if (!ctx.ok()) return ctx.status();
  if (ctx->device_id != device_id) {
    return absl::PermissionDeniedError(
        "the certificate names another device than the proof");
  }
  if (auto s = crypto::EcdsaVerify(cert->public_key,
                                   ProofMessage(device_id, nonce), signature);
      !s.ok()) {
    return absl::UnauthenticatedError(
        "proof signature does not verify with the device certificate's key");
  }
  if (auto s = registry_->Authorize(*ctx); !s.ok()) return s;
  auth::DeviceContext token_ctx = *ctx;
  token_ctx.not_after = std::min(ctx->not_after, now + options_.token_ttl);
  tokens_issued_.fetch_add(1);
  return Proven{tokens_.Issue(token_ctx), token_ctx.not_after};
}

absl::StatusOr<auth::DeviceContext> GatewayAuth::Authenticate(
    const std::string& token, const std::string& device_id) const {
  if (token.empty() || token.size() > options_.max_token_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gateway token must be 1..", options_.max_token_bytes, " bytes"));
  }
  if (auto s = ValidDeviceId(device_id); !s.ok()) return s;
  auto ctx = tokens_.Verify(token, clock_->Now());
  if (!ctx.ok()) return ctx.status();
  if (ctx->device_id != device_id) {
    return absl::PermissionDeniedError(
        "gateway token belongs to another device");
  }
  if (auto s = registry_->Authorize(*ctx); !s.ok()) return s;
  return ctx;
}

}  // namespace contoso::appsvc
