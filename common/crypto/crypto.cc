// Digests, MACs, hex, randomness, P-256 ECDSA and AES-256-CTR. Written to the
// API subset shared by OpenSSL 3 and BoringSSL.
#include "common/crypto/crypto.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <pthread.h>

#include <atomic>
#include <climits>
#include <cstring>

#include "common/crypto/internal.h"

namespace sphere::crypto {
namespace internal {

absl::Status Fail(absl::Status status) {
  ERR_clear_error();
  return status;
}

BioPtr MemBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;  // BoringSSL's BIO_get_mem_data takes char**
  long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return "";
  return std::string(data, static_cast<size_t>(len));
}

#if !defined(OPENSSL_IS_BORINGSSL) && OPENSSL_VERSION_NUMBER >= 0x30000000L
const EVP_MD* Sha256Md() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}
const EVP_MD* Sha1Md() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  return md;
}
const EVP_CIPHER* Aes256Ctr() {
  static const EVP_CIPHER* c =
      EVP_CIPHER_fetch(nullptr, "AES-256-CTR", nullptr);
  return c;
}
const EVP_CIPHER* Aes256Gcm() {
  static const EVP_CIPHER* c =
      EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return c;
}
#else
const EVP_MD* Sha256Md() { return EVP_sha256(); }
const EVP_MD* Sha1Md() { return EVP_sha1(); }
const EVP_CIPHER* Aes256Ctr() { return EVP_aes_256_ctr(); }
const EVP_CIPHER* Aes256Gcm() { return EVP_aes_256_gcm(); }
#endif

const EC_GROUP* P256() {
  // EC_GROUP_new_by_curve_name returns a static group in BoringSSL and a new
  // object in OpenSSL; either way it is immutable once built.
  static const EC_GROUP* group =
      EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  return group;
}

EcKeyPtr NewP256Key() {
  // EC_KEY_new_by_curve_name builds a fresh EC_GROUP in OpenSSL 3 (~50 us,
  // more than an ECDSA signature); copying the cached group costs ~3 us. In
  // BoringSSL both are cheap (the group is static).
  EcKeyPtr key(EC_KEY_new());
  if (!key || EC_KEY_set_group(key.get(), P256()) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return key;
}

absl::StatusOr<EcKeyPtr> EcKeyFromPoint(absl::string_view point) {
  if (point.size() != 65 || point[0] != 0x04) {
    return absl::InvalidArgumentError(
        "public key must be a 65-byte uncompressed SEC1 point");
  }
  EcKeyPtr key = NewP256Key();
  if (!key) return Fail(absl::InternalError("EC_KEY_new"));
  const EC_GROUP* group = EC_KEY_get0_group(key.get());
  EcPointPtr pt(EC_POINT_new(group));
  if (!pt ||
      EC_POINT_oct2point(group, pt.get(), U8(point), point.size(), nullptr) !=
          1 ||
      EC_KEY_set_public_key(key.get(), pt.get()) != 1) {
    return Fail(absl::InvalidArgumentError("public key is not on P-256"));
  }
  return key;
}

absl::StatusOr<EcKeyPtr> EcKeyFromScalar(absl::string_view scalar,
                                         bool with_public) {
  if (scalar.size() != 32) {
    return absl::InvalidArgumentError("private key must be a 32-byte scalar");
  }
  EcKeyPtr key = NewP256Key();
  BnPtr d(BN_bin2bn(U8(scalar), 32, nullptr));
  if (!key || !d) return Fail(absl::InternalError("out of memory"));
  if (EC_KEY_set_private_key(key.get(), d.get()) != 1) {
    return Fail(absl::InvalidArgumentError("invalid private scalar"));
  }
  if (with_public) {
    const EC_GROUP* group = EC_KEY_get0_group(key.get());
    EcPointPtr pub(EC_POINT_new(group));
    if (!pub ||
        EC_POINT_mul(group, pub.get(), d.get(), nullptr, nullptr, nullptr) !=
            1 ||
        EC_KEY_set_public_key(key.get(), pub.get()) != 1) {
      return Fail(absl::InternalError("computing public key failed"));
    }
  }
  return key;
}

std::string PointOf(const EC_KEY* key) {
  const EC_POINT* pub = EC_KEY_get0_public_key(key);
  if (pub == nullptr) return "";
  std::string out(65, '\0');
  size_t n = EC_POINT_point2oct(
      EC_KEY_get0_group(key), pub, POINT_CONVERSION_UNCOMPRESSED,
      reinterpret_cast<uint8_t*>(&out[0]), out.size(), nullptr);
  if (n != 65) {
    ERR_clear_error();
    return "";
  }
  return out;
}

absl::StatusOr<std::string> PointOfPkey(EVP_PKEY* pkey) {
  if (pkey == nullptr || EVP_PKEY_id(pkey) != EVP_PKEY_EC) {
    return Fail(absl::InvalidArgumentError("not an EC key"));
  }
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(pkey);
  if (ec == nullptr ||
      EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) != NID_X9_62_prime256v1) {
    return Fail(absl::InvalidArgumentError("not a P-256 key"));
  }
  std::string point = PointOf(ec);
  if (point.empty()) return Fail(absl::InvalidArgumentError("no public key"));
  return point;
}

EvpPkeyPtr PkeyFromEcKey(EC_KEY* key) {
  EvpPkeyPtr pkey(EVP_PKEY_new());
  if (!pkey || EVP_PKEY_set1_EC_KEY(pkey.get(), key) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return pkey;
}

}  // namespace internal

using internal::Fail;
using internal::U8;

// ---- Digests, MACs, encoding, randomness -------------------------------

// Sha256 uses the SHA-256 block functions directly (SHA256_Init/Update/
// Final, the same assembly EVP uses, in both OpenSSL 3 and BoringSSL): EVP's
// one-shot EVP_Digest allocates, initialises and frees a digest context on
// every call, about 3x the work of hashing a short message (issue 14: an
// attestation hashes ~20 short messages on the shard and as many on the
// device: event digests, register extends, the quote, the certificate).
std::string Sha256(absl::string_view data) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256_CTX c;
  SHA256_Init(&c);
  SHA256_Update(&c, data.data(), data.size());
  SHA256_Final(reinterpret_cast<uint8_t*>(&out[0]), &c);
  return out;
}

// HmacSha256 is RFC 2104 over the SHA-256 block functions (as Sha256).
// OpenSSL 3's one-shot HMAC() fetches the MAC implementation and builds a
// context on every call: ~15 us against ~1 us here (issue 14: a session
// token is issued per attestation and checked on every later gateway call).
// Same result as HMAC() (HmacSha256Test).
std::string HmacSha256(absl::string_view key, absl::string_view data) {
  constexpr size_t kBlock = SHA256_CBLOCK;
  uint8_t k[kBlock] = {0};
  if (key.size() > kBlock) {  // long keys are hashed first
    SHA256(U8(key), key.size(), k);
  } else if (!key.empty()) {
    std::memcpy(k, key.data(), key.size());
  }
  uint8_t pad[kBlock];
  uint8_t inner[SHA256_DIGEST_LENGTH];
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256_CTX c;
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x36;
  SHA256_Init(&c);
  SHA256_Update(&c, pad, kBlock);
  SHA256_Update(&c, data.data(), data.size());
  SHA256_Final(inner, &c);
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x5c;
  SHA256_Init(&c);
  SHA256_Update(&c, pad, kBlock);
  SHA256_Update(&c, inner, sizeof(inner));
  SHA256_Final(reinterpret_cast<uint8_t*>(&out[0]), &c);
  OPENSSL_cleanse(k, sizeof(k));
  OPENSSL_cleanse(pad, sizeof(pad));
  OPENSSL_cleanse(inner, sizeof(inner));
  OPENSSL_cleanse(&c, sizeof(c));
  return out;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string HexEncode(absl::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    uint8_t b = static_cast<uint8_t>(bytes[i]);
    out[2 * i] = kDigits[b >> 4];
    out[2 * i + 1] = kDigits[b & 0xf];
  }
  return out;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

absl::StatusOr<std::string> HexDecode(absl::string_view hex) {
  if (hex.size() % 2 != 0) {
    return absl::InvalidArgumentError("hex string has odd length");
  }
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError("hex string has a non-hex character");
    }
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

namespace {

// RAND_bytes only fails if the OS CSPRNG is unavailable; continuing with
// predictable bytes would be worse than crashing.
void RandBytesOrDie(uint8_t* out, size_t n) {
  if (n > 0 && RAND_bytes(out, static_cast<int>(n)) != 1) abort();
}

// Bumped in a child process right after fork(): the child's copy of a
// thread's RandomPool (bytes its parent may still hand out) is discarded,
// never used.
std::atomic<uint64_t> g_fork_generation{0};
void BumpForkGeneration() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}

// RandomPool: one thread's DRBG output not yet handed out. Each RAND_bytes
// call costs a getpid() system call in OpenSSL 3.0 (the DRBG's fork check),
// which a PVM guest makes expensive (issue 14: ~1.3 us of CPU, three per
// attestation on a shard); small requests are served from one 512-byte draw
// instead. Bytes are wiped as they are handed out and when the thread ends,
// so each byte is handed out once and only the unused rest stays in memory.
struct RandomPool {
  static constexpr size_t kSize = 512;
  static constexpr size_t kMaxRequest = 64;  // larger: straight from RAND
  uint8_t bytes[kSize];
  size_t next = kSize;  // bytes[next, kSize) not handed out yet
  uint64_t generation = 0;
  ~RandomPool() { OPENSSL_cleanse(bytes, sizeof(bytes)); }
};

}  // namespace

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  uint8_t* dst = reinterpret_cast<uint8_t*>(&out[0]);
  if (n > RandomPool::kMaxRequest) {
    RandBytesOrDie(dst, n);
    return out;
  }
  if (n == 0) return out;
  static const bool fork_handler_installed =
      pthread_atfork(nullptr, nullptr, BumpForkGeneration) == 0;
  if (!fork_handler_installed) {  // cannot tell a fork: no pooling
    RandBytesOrDie(dst, n);
    return out;
  }
  thread_local RandomPool pool;
  const uint64_t generation = g_fork_generation.load(std::memory_order_relaxed);
  if (pool.generation != generation || RandomPool::kSize - pool.next < n) {
    RandBytesOrDie(pool.bytes, RandomPool::kSize);
    pool.next = 0;
    pool.generation = generation;
  }
  memcpy(dst, pool.bytes + pool.next, n);
  OPENSSL_cleanse(pool.bytes + pool.next, n);
  pool.next += n;
  return out;
}

// ---- P-256 ECDSA --------------------------------------------------------

namespace {
// True if the 32-byte big-endian `scalar` is in [1, n-1].
bool ScalarInRange(absl::string_view scalar) {
  if (scalar.size() != 32) return false;
  internal::BnPtr d(BN_bin2bn(U8(scalar), 32, nullptr));
  if (!d) return false;
  return !BN_is_zero(d.get()) &&
         BN_cmp(d.get(), EC_GROUP_get0_order(internal::P256())) < 0;
}
}  // namespace

EcPrivateKey EcPrivateKey::Generate() {
  for (;;) {
    std::string scalar = RandomBytes(32);
    if (ScalarInRange(scalar)) return EcPrivateKey(std::move(scalar));
  }
}

absl::StatusOr<EcPrivateKey> EcPrivateKey::FromScalar(
    absl::string_view scalar) {
  if (scalar.size() != 32) {
    return absl::InvalidArgumentError("P-256 scalar must be 32 bytes");
  }
  if (!ScalarInRange(scalar)) {
    return absl::InvalidArgumentError("P-256 scalar out of range [1, n-1]");
  }
  return EcPrivateKey(std::string(scalar));
}

absl::StatusOr<EcPrivateKey> EcPrivateKey::FromPem(absl::string_view pem) {
  internal::BioPtr bio = internal::MemBio(pem);
  // A non-null empty passphrase prevents a terminal prompt for encrypted keys.
  static char kNoPassphrase[] = "";
  internal::EvpPkeyPtr pkey(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, kNoPassphrase));
  if (!pkey) return Fail(absl::InvalidArgumentError("unparseable key PEM"));
  if (EVP_PKEY_id(pkey.get()) != EVP_PKEY_EC) {
    return Fail(absl::InvalidArgumentError("PEM key is not an EC key"));
  }
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(pkey.get());
  if (ec == nullptr ||
      EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) != NID_X9_62_prime256v1 ||
      EC_KEY_get0_private_key(ec) == nullptr) {
    return Fail(absl::InvalidArgumentError("PEM key is not a P-256 key"));
  }
  std::string scalar(32, '\0');
  if (BN_bn2binpad(EC_KEY_get0_private_key(ec),
                   reinterpret_cast<uint8_t*>(&scalar[0]), 32) != 32) {
    return Fail(absl::InvalidArgumentError("P-256 scalar too large"));
  }
  return FromScalar(scalar);
}

std::string EcPrivateKey::ToPem() const {
  if (!valid()) return "";
  auto key = internal::EcKeyFromScalar(scalar_, /*with_public=*/true);
  if (!key.ok()) return "";
  internal::EvpPkeyPtr pkey = internal::PkeyFromEcKey(key->get());
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!pkey || !bio ||
      PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey.get(), nullptr, nullptr, 0,
                                    nullptr, nullptr) != 1) {
    ERR_clear_error();
    return "";
  }
  return internal::BioContents(bio.get());
}

std::string EcPrivateKey::PublicKey() const {
  if (!valid()) return "";
  auto key = internal::EcKeyFromScalar(scalar_, /*with_public=*/true);
  if (!key.ok()) return "";
  return internal::PointOf(key->get());
}

absl::StatusOr<std::string> EcPrivateKey::Sign(
    absl::string_view message) const {
  return SignDigest(Sha256(message));
}

absl::StatusOr<std::string> EcPrivateKey::SignDigest(
    absl::string_view digest) const {
  if (!valid()) return absl::FailedPreconditionError("empty private key");
  if (digest.size() != 32) {
    return absl::InvalidArgumentError("digest must be 32 bytes");
  }
  auto key = internal::EcKeyFromScalar(scalar_, /*with_public=*/false);
  if (!key.ok()) return key.status();
  std::string sig(ECDSA_size(key->get()), '\0');
  unsigned int sig_len = 0;
  if (ECDSA_sign(0, U8(digest), 32, reinterpret_cast<uint8_t*>(&sig[0]),
                 &sig_len, key->get()) != 1) {
    return Fail(absl::InternalError("ECDSA_sign failed"));
  }
  sig.resize(sig_len);
  return sig;
}

absl::Status EcdsaVerify(absl::string_view public_key,
                         absl::string_view message,
                         absl::string_view signature) {
  return EcdsaVerifyDigest(public_key, Sha256(message), signature);
}

absl::Status EcdsaVerifyDigest(absl::string_view public_key,
                               absl::string_view digest,
                               absl::string_view signature) {
  if (digest.size() != 32) {
    return absl::InvalidArgumentError("digest must be 32 bytes");
  }
  auto key = internal::EcKeyFromPoint(public_key);
  if (!key.ok()) return key.status();
  // Parse strictly: the signature must be exactly one DER ECDSA-Sig-Value.
  const uint8_t* p = U8(signature);
  ECDSA_SIG* raw =
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signature.size()));
  std::unique_ptr<ECDSA_SIG, internal::Deleter<ECDSA_SIG, ECDSA_SIG_free>> sig(
      raw);
  if (!sig || p != U8(signature) + signature.size()) {
    return Fail(absl::InvalidArgumentError("malformed DER ECDSA signature"));
  }
  uint8_t* der = nullptr;
  int der_len = i2d_ECDSA_SIG(sig.get(), &der);
  bool canonical = der_len == static_cast<int>(signature.size()) &&
                   memcmp(der, signature.data(), signature.size()) == 0;
  OPENSSL_free(der);
  if (!canonical) {
    return Fail(absl::InvalidArgumentError("non-canonical DER signature"));
  }
  if (ECDSA_do_verify(U8(digest), 32, sig.get(), key->get()) != 1) {
    return Fail(absl::UnauthenticatedError("ECDSA signature does not verify"));
  }
  return absl::OkStatus();
}

std::string PublicKeyToPem(absl::string_view public_key) {
  auto key = internal::EcKeyFromPoint(public_key);
  if (!key.ok()) return "";
  internal::EvpPkeyPtr pkey = internal::PkeyFromEcKey(key->get());
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!pkey || !bio || PEM_write_bio_PUBKEY(bio.get(), pkey.get()) != 1) {
    ERR_clear_error();
    return "";
  }
  return internal::BioContents(bio.get());
}

absl::StatusOr<std::string> PublicKeyFromPem(absl::string_view pem) {
  internal::BioPtr bio = internal::MemBio(pem);
  internal::EvpPkeyPtr pkey(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) return Fail(absl::InvalidArgumentError("unparseable public key"));
  return internal::PointOfPkey(pkey.get());
}

std::string BackendName() {
#ifdef OPENSSL_IS_BORINGSSL
  return "BoringSSL";
#else
  return OpenSSL_version(OPENSSL_VERSION);
#endif
}

// ---- AES-256-CTR --------------------------------------------------------

absl::Status AesCtrXor(absl::string_view key32, absl::string_view iv16,
                       uint64_t offset, char* data, size_t n) {
  if (key32.size() != 32)
    return absl::InvalidArgumentError("key must be 32 bytes");
  if (iv16.size() != 16)
    return absl::InvalidArgumentError("iv must be 16 bytes");
  if (n == 0) return absl::OkStatus();
  if (data == nullptr) return absl::InvalidArgumentError("null data");

  // counter = iv + offset / 16 (128-bit big-endian add).
  uint8_t counter[16];
  memcpy(counter, iv16.data(), 16);
  uint64_t add = offset / 16;
  unsigned carry = 0;
  for (int i = 15; i >= 0; --i) {
    unsigned sum = counter[i] + static_cast<unsigned>(add & 0xff) + carry;
    counter[i] = static_cast<uint8_t>(sum);
    carry = sum >> 8;
    add >>= 8;
    if (add == 0 && carry == 0) break;
  }

  internal::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), internal::Aes256Ctr(), nullptr,
                                 U8(key32), counter) != 1) {
    return Fail(absl::InternalError("AES-CTR init failed"));
  }
  int out_len = 0;
  // Discard the first offset % 16 key-stream bytes of the first block.
  size_t skip = offset % 16;
  if (skip > 0) {
    uint8_t scratch[16] = {0};
    if (EVP_EncryptUpdate(ctx.get(), scratch, &out_len, scratch,
                          static_cast<int>(skip)) != 1) {
      return Fail(absl::InternalError("AES-CTR failed"));
    }
  }
  uint8_t* p = reinterpret_cast<uint8_t*>(data);
  constexpr size_t kChunk = size_t{1} << 30;
  while (n > 0) {
    size_t len = n < kChunk ? n : kChunk;
    if (EVP_EncryptUpdate(ctx.get(), p, &out_len, p, static_cast<int>(len)) !=
        1) {
      return Fail(absl::InternalError("AES-CTR failed"));
    }
    p += len;
    n -= len;
  }
  return absl::OkStatus();
}

}  // namespace sphere::crypto
