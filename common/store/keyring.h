// Keyring: master-key wrapping for the store's data key, like a key vault at
// cluster bootstrap. The 32-byte master key lives in its own 0600 file; the
// store's data key is only ever written to disk wrapped (AES-256-GCM) under it.
//
// Example:
//   RETURN_IF_ERROR(CreateMasterKeyFile("/etc/sphere/master.key"));  // once
//   ASSIGN_OR_RETURN(std::string key,
//                    LoadOrCreateDataKey("/etc/sphere/master.key",
//                                        "/var/lib/sphere/data.key.wrapped"));
//   RocksOptions options{.data_key = key};
#ifndef SPHERE_COMMON_STORE_KEYRING_H_
#define SPHERE_COMMON_STORE_KEYRING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sphere::store {

// CreateMasterKeyFile writes 32 random bytes to `path` with mode 0600.
// AlreadyExists if the file exists (a master key is never overwritten).
absl::Status CreateMasterKeyFile(const std::string& path);

// LoadOrCreateDataKey returns the 32-byte data key wrapped in
// `wrapped_key_path` under the master key in `master_key_path`, first creating
// (and durably writing) a fresh random data key if the wrapped file does not
// exist. Errors: NotFound / FailedPrecondition for a missing or malformed
// master key, DataLoss for a malformed wrapped file, Unauthenticated when the
// wrapped key fails authentication (tampered, or a different master key).
absl::StatusOr<std::string> LoadOrCreateDataKey(
    const std::string& master_key_path, const std::string& wrapped_key_path);

// LoadOrCreateDataKeyUnder is LoadOrCreateDataKey with the 32-byte master key
// already in hand (it may come from outside the state directory: a
// credentials file or an environment variable); `master_key_origin` names it
// in errors (e.g. "environment variable SPHERE_MASTER_KEY").
absl::StatusOr<std::string> LoadOrCreateDataKeyUnder(
    const std::string& master_key, absl::string_view master_key_origin,
    const std::string& wrapped_key_path);

}  // namespace sphere::store

#endif  // SPHERE_COMMON_STORE_KEYRING_H_
