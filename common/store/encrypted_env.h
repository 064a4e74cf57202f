// Encryption at rest for RocksStore: a RocksDB EncryptionProvider that
// encrypts every file with AES-256-CTR under the store's data key, with a
// fresh random IV per file. Each whole read/write buffer is one
// crypto::AesCtrXor call (not one BlockCipher call per 16-byte block as with
// RocksDB's stock CTR provider).
//
// File layout: a kEncryptionPrefixSize-byte plaintext prefix, then the
// encrypted contents. The prefix holds
//   [0, 8)    magic "SPHRAES1"
//   [8, 24)   per-file random IV (the CTR counter starts at IV + offset/16)
//   [24, 56)  key check: HMAC-SHA256(data key, "sphere-store-key-check" || IV)
//   rest      zero
// The key check lets a wrong data key fail with a clear error instead of
// decrypting garbage.
//
// Not encrypted: RocksDB's info LOG (FileSystem::NewLogger bypasses the
// encrypted file system, as upstream). It holds options, file numbers and
// statistics, not keys or values.
//
// Example:
//   rocksdb::Env* env = rocksdb::NewEncryptedEnv(
//       rocksdb::Env::Default(), *NewAesCtrEncryptionProvider(key32));
#ifndef SPHERE_COMMON_STORE_ENCRYPTED_ENV_H_
#define SPHERE_COMMON_STORE_ENCRYPTED_ENV_H_

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rocksdb/env_encryption.h"

namespace sphere::store {

inline constexpr size_t kEncryptionPrefixSize = 4096;
inline constexpr absl::string_view kEncryptionMagic = "SPHRAES1";

// NewAesCtrEncryptionProvider returns a provider for a 32-byte data key
// (InvalidArgument otherwise).
absl::StatusOr<std::shared_ptr<rocksdb::EncryptionProvider>>
NewAesCtrEncryptionProvider(absl::string_view data_key);

}  // namespace sphere::store

#endif  // SPHERE_COMMON_STORE_ENCRYPTED_ENV_H_
