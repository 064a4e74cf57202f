// Cluster PKI bootstrap: creates, once, everything a local cluster's trust
// rests on, under DIR/pki/:
//
//   root.pem / root.key            platform root CA (signs tenant CAs, servers)
//   manufacturing.pem / .key       manufacturing CA (device identity certs)
//   image-signing.key / .pub.pem   platform image-signing key (devices hold
//                                  the public key in ROM)
//   master.key                     cluster master key (wraps tenant CA keys
//                                  and the RocksDB data keys); mode 0600
//   server.pem / server.key        service certificate for 127.0.0.1/localhost
//   operator.pem / operator.key    platform-operator client credential
//   shard.pem / shard.key          internal credential shards use towards
//                                  management (scope "shard")
//   gateway.pem / gateway.key      gateway credential (scope "gateway") for
//                                  multiplexed twins carrying session tokens
//
// Bootstrap is idempotent: existing files are loaded, never replaced.
#ifndef SPHERE_SECURITYSVC_PKI_PKI_H_
#define SPHERE_SECURITYSVC_PKI_PKI_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"

namespace sphere::pki {

struct ClusterPki {
  std::string dir;  // DIR/pki
  std::string root_pem;
  crypto::EcPrivateKey root_key;
  std::string manufacturing_pem;
  crypto::EcPrivateKey manufacturing_key;
  crypto::EcPrivateKey image_signing_key;
  std::string master_key;  // 32 bytes

  std::string Path(absl::string_view name) const;
  // TlsFor returns cert/key/CA of one of the credentials ("server",
  // "operator", "shard").
  absl::StatusOr<rpc::TlsFiles> TlsFor(absl::string_view name) const;
  // SessionTokenKey derives the MAC key for device session tokens.
  std::string SessionTokenKey() const;
};

// Bootstrap creates or loads DIR/pki.
absl::StatusOr<ClusterPki> Bootstrap(const std::string& state_dir);
// Load reads an existing DIR/pki (FailedPrecondition if absent).
absl::StatusOr<ClusterPki> Load(const std::string& state_dir);

// IssueClientCredential writes NAME.pem/NAME.key signed by the root with the
// given claims (e.g. tenant operator credentials).
absl::Status IssueClientCredential(const ClusterPki& pki,
                                   absl::string_view name,
                                   absl::string_view common_name,
                                   const crypto::DeviceClaims& claims);

}  // namespace sphere::pki

#endif  // SPHERE_SECURITYSVC_PKI_PKI_H_
