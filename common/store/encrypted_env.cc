#include "common/store/encrypted_env.h"

#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"

namespace sphere::store {
namespace {

constexpr const char* kMagic = kEncryptionMagic.data();
constexpr size_t kMagicSize = kEncryptionMagic.size();
constexpr size_t kIvOffset = kMagicSize;
constexpr size_t kIvSize = 16;
constexpr size_t kCheckOffset = kIvOffset + kIvSize;
constexpr size_t kCheckSize = 32;
constexpr char kCheckLabel[] = "sphere-store-key-check";
static_assert(kCheckOffset + kCheckSize <= kEncryptionPrefixSize);

rocksdb::Status ToRocks(const absl::Status& s, const std::string& fname) {
  if (s.ok()) return rocksdb::Status::OK();
  return rocksdb::Status::IOError(
      absl::StrCat("AES-CTR failed for ", fname, ": ", s.ToString()));
}

std::string KeyCheck(const std::string& key, absl::string_view iv) {
  return crypto::HmacSha256(key, absl::StrCat(kCheckLabel, iv));
}

// Cipher stream for one file: the whole buffer is transformed with a single
// AesCtrXor call at its file offset (offsets count the prefix too; any
// consistent origin works for CTR).
class AesCtrCipherStream : public rocksdb::BlockAccessCipherStream {
 public:
  AesCtrCipherStream(std::string fname, std::string key, std::string iv)
      : fname_(std::move(fname)), key_(std::move(key)), iv_(std::move(iv)) {}

  size_t BlockSize() override { return 16; }

  rocksdb::Status Encrypt(uint64_t file_offset, char* data,
                          size_t size) override {
    return Xor(file_offset, data, size);
  }
  rocksdb::Status Decrypt(uint64_t file_offset, char* data,
                          size_t size) override {
    return Xor(file_offset, data, size);
  }

 protected:
  // Only reachable through the base class's per-block path, which the
  // overrides above bypass; kept correct anyway.
  void AllocateScratch(std::string& scratch) override { scratch.clear(); }
  rocksdb::Status EncryptBlock(uint64_t block_index, char* data,
                               char* /*scratch*/) override {
    return Xor(block_index * BlockSize(), data, BlockSize());
  }
  rocksdb::Status DecryptBlock(uint64_t block_index, char* data,
                               char* /*scratch*/) override {
    return Xor(block_index * BlockSize(), data, BlockSize());
  }

 private:
  rocksdb::Status Xor(uint64_t offset, char* data, size_t size) {
    return ToRocks(crypto::AesCtrXor(key_, iv_, offset, data, size), fname_);
  }

  const std::string fname_;
  const std::string key_;
  const std::string iv_;
};

class AesCtrEncryptionProvider : public rocksdb::EncryptionProvider {
 public:
  explicit AesCtrEncryptionProvider(std::string key) : key_(std::move(key)) {}

  static const char* kClassName() { return "SphereAesCtrEncryptionProvider"; }
  const char* Name() const override { return kClassName(); }

  size_t GetPrefixLength() const override { return kEncryptionPrefixSize; }

  rocksdb::Status CreateNewPrefix(const std::string& fname, char* prefix,
                                  size_t prefix_length) const override {
    if (prefix_length < kEncryptionPrefixSize) {
      return rocksdb::Status::InvalidArgument(
          absl::StrCat("encryption prefix too short for ", fname));
    }
    std::string iv = crypto::RandomBytes(kIvSize);
    std::string check = KeyCheck(Key(), iv);
    std::memset(prefix, 0, prefix_length);
    std::memcpy(prefix, kMagic, kMagicSize);
    std::memcpy(prefix + kIvOffset, iv.data(), kIvSize);
    std::memcpy(prefix + kCheckOffset, check.data(), kCheckSize);
    return rocksdb::Status::OK();
  }

  // AddCipher replaces the data key (32 bytes). Call before opening the DB.
  rocksdb::Status AddCipher(const std::string& /*descriptor*/,
                            const char* cipher, size_t len,
                            bool /*for_write*/) override {
    if (len != 32) {
      return rocksdb::Status::InvalidArgument(
          "sphere AES-CTR provider needs a 32-byte key");
    }
    std::lock_guard<std::mutex> lock(mu_);
    key_.assign(cipher, len);
    return rocksdb::Status::OK();
  }

  rocksdb::Status CreateCipherStream(
      const std::string& fname, const rocksdb::EnvOptions& /*options*/,
      rocksdb::Slice& prefix,
      std::unique_ptr<rocksdb::BlockAccessCipherStream>* result) override {
    if (prefix.size() < kEncryptionPrefixSize ||
        std::memcmp(prefix.data(), kMagic, kMagicSize) != 0) {
      return rocksdb::Status::Corruption(absl::StrCat(
          fname,
          ": not encrypted by the sphere store (missing or bad encryption "
          "prefix; plaintext DB or truncated file?)"));
    }
    std::string key = Key();
    std::string iv(prefix.data() + kIvOffset, kIvSize);
    absl::string_view check(prefix.data() + kCheckOffset, kCheckSize);
    if (!crypto::ConstantTimeEquals(check, KeyCheck(key, iv))) {
      return rocksdb::Status::InvalidArgument(absl::StrCat(
          fname,
          ": wrong data key (file was encrypted under a different key), or "
          "its encryption prefix was altered on disk"));
    }
    *result = std::make_unique<AesCtrCipherStream>(fname, std::move(key),
                                                   std::move(iv));
    return rocksdb::Status::OK();
  }

  std::string GetMarker() const override {
    return std::string(kMagic, kMagicSize);
  }

 private:
  std::string Key() const {
    std::lock_guard<std::mutex> lock(mu_);
    return key_;
  }

  mutable std::mutex mu_;
  std::string key_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<rocksdb::EncryptionProvider>>
NewAesCtrEncryptionProvider(absl::string_view data_key) {
  if (data_key.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("store data key must be 32 bytes, got ", data_key.size()));
  }
  return std::shared_ptr<rocksdb::EncryptionProvider>(
      std::make_shared<AesCtrEncryptionProvider>(std::string(data_key)));
}

}  // namespace sphere::store
