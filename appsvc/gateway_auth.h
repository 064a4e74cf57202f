// GatewayAuth: appsvc's own gateway path (DESIGN §5 pattern), so a load
// generator (or an IoT gateway) can carry many devices' telemetry over a few
// channels without one TLS connection per device and without Sphere's
// shard session-token key, which Contoso must never hold.
//
//   1. Challenge(device_id): a one-time 32-byte nonce bound to that device
//      (at most one outstanding per device, kNonceTtl, bounded table).
//   2. Prove(device_id, nonce, chain_pem, signature): the device signs
//      ProofMessage(device_id, nonce) with the key of its Sphere-issued
//      device certificate and sends the chain (device cert + tenant CA) as
//      PEM or as DER certificates (ProofChain; DER spares the PEM decoding).
//      appsvc verifies the chain to the platform root (clientAuth EKU,
//      validity; a tenant CA already verified is remembered, see
//      GatewayAuthOptions::max_remembered_cas), reads the claims (auth::FromCertificate), checks the
//      signature with the certificate's key, and runs every relying-party
//      check of DeviceRegistry::Authorize (tenant Contoso, product DW100,
//      known, claimed, not revoked, ownership epoch, full scope: not
//      update-only). The nonce is consumed by the attempt, whatever its
//      outcome. On success it issues its own session token: a MAC with
//      appsvc's own key over the device's claims, valid until the earlier
//      of the certificate's expiry and token_ttl.
//   3. Authenticate(token, device_id) for each later call: MAC and expiry,
//      the token must name `device_id` (a token of another device is
//      refused), and DeviceRegistry::Authorize again, so a revocation applies
//      from the next call after the catalog event.
//
// Every input has a size limit checked before anything else. Errors:
// InvalidArgument (oversized / malformed input), Unauthenticated (unknown,
// expired or replayed nonce, chain not from the platform root, bad
// signature, forged or expired token), PermissionDenied (registry refusal,
// token of another device), ResourceExhausted (challenge table full of live
// nonces: retry later).
//
// Served over gRPC as contoso.v1.ContosoGateway by gateway_service.h
// (appsvc_main wires it with the key from DIR/appsvc/gateway_token.key).
//
// Thread-safety: all methods are thread-safe; Prove does its crypto outside
// the lock.
#ifndef SPHERE_APPSVC_GATEWAY_AUTH_H_
#define SPHERE_APPSVC_GATEWAY_AUTH_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "appsvc/device_registry.h"
#include "appsvc/gateway_contract.h"
#include "common/crypto/verified_issuers.h"
#include "common/util/clock.h"
#include "securitysvc/auth/device_context.h"

namespace contoso::appsvc {

struct GatewayAuthOptions {
  absl::Duration nonce_ttl = absl::Seconds(30);
  absl::Duration token_ttl = absl::Hours(1);
  size_t max_outstanding_nonces = 1 << 20;  // ~100 B each
  size_t max_chain_bytes = 8 * 1024;  // device cert + tenant CA (PEM or DER)
  size_t max_signature_bytes = 80;          // DER ECDSA P-256 is <= 72
  size_t max_token_bytes = 1024;
  // Tenant CAs remembered once verified to the platform root (keyed by
  // their DER digest), so a proof costs two ECDSA verifies (proof, device
  // certificate) instead of three; 0 verifies every chain in full.
  // crypto::VerifiedIssuers says what is still checked on every call.
  size_t max_remembered_cas = 64;
};

class GatewayAuth {
 public:
  static constexpr size_t kNonceBytes = 32;
  // Certificates in a chain, at most: the device's and two intermediates.
  static constexpr size_t kMaxChainCertificates = 3;

  // `mac_key`: appsvc's own 32-byte token key (never the shards').
  // `platform_root_pem`: the Sphere platform root the chains must reach.
  // `registry` and `clock` must outlive this object.
  GatewayAuth(std::string mac_key, std::string platform_root_pem,
              const DeviceRegistry* registry, sphere::Clock* clock,
              GatewayAuthOptions options = {});

  absl::StatusOr<std::string> Challenge(const std::string& device_id);
  absl::StatusOr<std::string> Prove(const std::string& device_id,
                                    const std::string& nonce,
                                    const std::string& chain_pem,
                                    const std::string& signature);
  // Proven: a session token and when it expires.
  struct Proven {
    std::string token;
    absl::Time expires;
  };
  // ProveDevice is Prove that also says when the token expires (so a caller
  // need not verify the token it was just given).
  absl::StatusOr<Proven> ProveDevice(const std::string& device_id,
                                     const std::string& nonce,
                                     const std::string& chain_pem,
                                     const std::string& signature);
  // ProofChain: the chain a proof carries, as PEM text (`pem`: the device
  // certificate, then its issuers) or as the same certificates in DER, one
  // element each (`der`: 1..kMaxChainCertificates, at most max_chain_bytes
  // together), which spares the PEM decoding. Exactly one must be set.
  struct ProofChain {
    absl::string_view pem;
    absl::Span<const absl::string_view> der;
  };
  // ProveDevice with the chain in either form: the same checks, errors and
  // nonce handling whichever form it has (a DER chain is verified as
  // crypto::VerifiedIssuers::VerifyDerChainAndParse says).
  absl::StatusOr<Proven> ProveDevice(const std::string& device_id,
                                     const std::string& nonce,
                                     const ProofChain& chain,
                                     const std::string& signature);
  absl::StatusOr<sphere::auth::DeviceContext> Authenticate(
      const std::string& token, const std::string& device_id) const;

  // ProofMessage: the bytes a device signs ("contoso-gateway-proof-v1",
  // device id, nonce), domain-separated from every Sphere signature.
  static std::string ProofMessage(const std::string& device_id,
                                  const std::string& nonce);

  size_t outstanding_nonces() const;
  uint64_t tokens_issued() const { return tokens_issued_.load(); }
  // Tenant CAs remembered, and chains verified through one.
  size_t remembered_cas() const { return issuers_.size(); }
  uint64_t chains_via_remembered_ca() const { return issuers_.hits(); }
  // Of those, device certificates read without OpenSSL's X509 parse.
  uint64_t leaves_read_directly() const { return issuers_.direct_leaves(); }

 private:
  struct Pending {
    std::string nonce;
    absl::Time expires;
  };
  absl::Status ValidDeviceId(const std::string& device_id) const;
  void SweepExpiredLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const sphere::auth::SessionTokens tokens_;
  const std::string root_pem_;
  const DeviceRegistry* const registry_;
  sphere::Clock* const clock_;
  const GatewayAuthOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> tokens_issued_{0};
  sphere::crypto::VerifiedIssuers issuers_;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_GATEWAY_AUTH_H_
