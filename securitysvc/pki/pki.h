// Cluster PKI bootstrap: creates, once, everything a local cluster's trust
// rests on, under DIR/pki/:
//
//   root.pem / root.key            platform root CA (signs tenant CAs, servers)
//   manufacturing.pem / .key       manufacturing CA (device identity certs)
//   image-signing.key / .pub.pem   platform image-signing key (devices hold
//                                  the public key in ROM)
//   master.key                     cluster master key (wraps tenant CA keys
//                                  and the RocksDB data keys); mode 0600.
//                                  Only the zero-setup default: the key can
//                                  live outside the state directory (see
//                                  MasterKeySource).
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

// MasterKeySource says where the cluster master key comes from, so it need
// not sit next to the data it protects (docs/threat-model.md, "Master key").
// Resolution order:
//   1. `file` (--master-key-file PATH): 32 raw bytes or 64 hex digits;
//   2. `env` (--master-key-env NAME): the variable NAME holds 64 hex digits;
//   3. $CREDENTIALS_DIRECTORY/master.key when that file exists (systemd
//      LoadCredential=master.key:/etc/sphere/master.key);
//   4. DIR/pki/master.key (the local cluster's zero-setup default).
// A key file must be a regular file that other users cannot read or write
// (mode 0600 or 0400; 0640 for a service group): anything looser is refused
// with FailedPrecondition saying which chmod fixes it.
struct MasterKeySource {
  std::string file;
  std::string env;
  // For tools that need only the signing keys (os_builder): when false, a
  // master key that cannot be found leaves ClusterPki::master_key empty
  // instead of failing Load. A key that is found is still checked.
  bool required = true;
};

// LoadMasterKey resolves `source` for the cluster in `state_dir` and returns
// the 32-byte key and, in `origin`, a description for messages ("file
// /etc/sphere/master.key", "environment variable SPHERE_MASTER_KEY"). With
// `create`, a missing key *file* (explicit or default) is created with
// 32 random bytes, mode 0600; an unset variable is always an error.
// NotFound when there is no key file and `create` is false.
absl::StatusOr<std::string> LoadMasterKey(const MasterKeySource& source,
                                          const std::string& state_dir,
                                          bool create = false,
                                          std::string* origin = nullptr);

// CheckPrivateFile refuses a secret file that is not a regular file or that
// other users may read or write (world-accessible or group-writable).
absl::Status CheckPrivateFile(const std::string& path);

struct ClusterPki {
  std::string dir;  // DIR/pki
  std::string root_pem;
  crypto::EcPrivateKey root_key;
  std::string manufacturing_pem;
  crypto::EcPrivateKey manufacturing_key;
  crypto::EcPrivateKey image_signing_key;
  std::string master_key;         // 32 bytes
  std::string master_key_origin;  // where it came from, for messages

  std::string Path(absl::string_view name) const;
  // TlsFor returns cert/key/CA of one of the credentials ("server",
  // "operator", "shard").
  absl::StatusOr<rpc::TlsFiles> TlsFor(absl::string_view name) const;
  // SessionTokenKey derives the MAC key for device session tokens.
  std::string SessionTokenKey() const;
};

// Bootstrap creates or loads DIR/pki (0700), and the master key from
// `master_key` (creating a missing key file there).
absl::StatusOr<ClusterPki> Bootstrap(const std::string& state_dir,
                                     const MasterKeySource& master_key = {});
// Load reads an existing DIR/pki (FailedPrecondition if absent) and the
// master key from `master_key` (never creating it).
absl::StatusOr<ClusterPki> Load(const std::string& state_dir,
                                const MasterKeySource& master_key = {});

// IssueClientCredential writes NAME.pem/NAME.key signed by the root with the
// given claims (e.g. tenant operator credentials).
absl::Status IssueClientCredential(const ClusterPki& pki,
                                   absl::string_view name,
                                   absl::string_view common_name,
                                   const crypto::DeviceClaims& claims);

}  // namespace sphere::pki

#endif  // SPHERE_SECURITYSVC_PKI_PKI_H_
