// AES-256-GCM. This is the one place where the two backends differ: OpenSSL
// exposes GCM as an EVP_CIPHER driven by EVP_CIPHER_CTX_ctrl, BoringSSL
// through the one-shot EVP_AEAD interface.
#include <openssl/evp.h>

#ifdef OPENSSL_IS_BORINGSSL
#include <openssl/aead.h>
#endif

#include <string>

#include "common/crypto/crypto.h"
#include "common/crypto/internal.h"

namespace sphere::crypto {
namespace {

constexpr size_t kTagLen = 16;

absl::Status CheckKeyNonce(absl::string_view key32, absl::string_view nonce12) {
  if (key32.size() != 32)
    return absl::InvalidArgumentError("key must be 32 bytes");
  if (nonce12.size() != 12) {
    return absl::InvalidArgumentError("nonce must be 12 bytes");
  }
  return absl::OkStatus();
}

uint8_t* Out(std::string& s) { return reinterpret_cast<uint8_t*>(&s[0]); }

}  // namespace

#ifdef OPENSSL_IS_BORINGSSL

namespace {
using AeadCtxPtr = internal::Ptr<EVP_AEAD_CTX, EVP_AEAD_CTX_free>;

absl::StatusOr<AeadCtxPtr> NewAead(absl::string_view key32) {
  AeadCtxPtr ctx(EVP_AEAD_CTX_new(EVP_aead_aes_256_gcm(), internal::U8(key32),
                                  key32.size(), kTagLen));
  if (!ctx) return internal::Fail(absl::InternalError("EVP_AEAD_CTX_new"));
  return ctx;
}
}  // namespace

absl::StatusOr<std::string> AesGcmSeal(absl::string_view key32,
                                       absl::string_view nonce12,
                                       absl::string_view plaintext,
                                       absl::string_view aad) {
  if (auto s = CheckKeyNonce(key32, nonce12); !s.ok()) return s;
  auto ctx = NewAead(key32);
  if (!ctx.ok()) return ctx.status();
  std::string out(plaintext.size() + kTagLen, '\0');
  size_t out_len = 0;
  if (EVP_AEAD_CTX_seal(ctx->get(), Out(out), &out_len, out.size(),
                        internal::U8(nonce12), nonce12.size(),
                        internal::U8(plaintext), plaintext.size(),
                        internal::U8(aad), aad.size()) != 1) {
    return internal::Fail(absl::InternalError("AES-GCM seal failed"));
  }
  out.resize(out_len);
  return out;
}

absl::StatusOr<std::string> AesGcmOpen(absl::string_view key32,
                                       absl::string_view nonce12,
                                       absl::string_view sealed,
                                       absl::string_view aad) {
  if (auto s = CheckKeyNonce(key32, nonce12); !s.ok()) return s;
  if (sealed.size() < kTagLen) {
    return absl::UnauthenticatedError("sealed message shorter than GCM tag");
  }
  auto ctx = NewAead(key32);
  if (!ctx.ok()) return ctx.status();
  std::string out(sealed.size() - kTagLen, '\0');
  size_t out_len = 0;
  if (EVP_AEAD_CTX_open(ctx->get(), Out(out), &out_len, out.size(),
                        internal::U8(nonce12), nonce12.size(),
                        internal::U8(sealed), sealed.size(), internal::U8(aad),
                        aad.size()) != 1) {
    return internal::Fail(absl::UnauthenticatedError("AES-GCM open failed"));
  }
  out.resize(out_len);
  return out;
}

#else  // OpenSSL

namespace {
constexpr size_t kChunk = size_t{1} << 30;

// Feeds `in` through EVP_CipherUpdate in int-sized chunks; `out` may be null
// (AAD).
bool Update(EVP_CIPHER_CTX* ctx, uint8_t* out, absl::string_view in) {
  const uint8_t* p = internal::U8(in);
  size_t n = in.size();
  while (n > 0) {
    size_t len = n < kChunk ? n : kChunk;
    int out_len = 0;
    if (EVP_CipherUpdate(ctx, out, &out_len, p, static_cast<int>(len)) != 1) {
      return false;
    }
    if (out != nullptr) out += out_len;
    p += len;
    n -= len;
  }
  return true;
}
}  // namespace

absl::StatusOr<std::string> AesGcmSeal(absl::string_view key32,
                                       absl::string_view nonce12,
                                       absl::string_view plaintext,
                                       absl::string_view aad) {
  if (auto s = CheckKeyNonce(key32, nonce12); !s.ok()) return s;
  internal::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  std::string out(plaintext.size() + kTagLen, '\0');
  int final_len = 0;
  // The default GCM IV length is 12 bytes.
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), internal::Aes256Gcm(), nullptr,
                         internal::U8(key32), internal::U8(nonce12)) != 1 ||
      !Update(ctx.get(), nullptr, aad) ||
      !Update(ctx.get(), Out(out), plaintext) ||
      EVP_EncryptFinal_ex(ctx.get(), Out(out) + plaintext.size(), &final_len) !=
          1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagLen,
                          Out(out) + plaintext.size()) != 1) {
    return internal::Fail(absl::InternalError("AES-GCM seal failed"));
  }
  return out;
}

absl::StatusOr<std::string> AesGcmOpen(absl::string_view key32,
                                       absl::string_view nonce12,
                                       absl::string_view sealed,
                                       absl::string_view aad) {
  if (auto s = CheckKeyNonce(key32, nonce12); !s.ok()) return s;
  if (sealed.size() < kTagLen) {
    return absl::UnauthenticatedError("sealed message shorter than GCM tag");
  }
  absl::string_view ciphertext = sealed.substr(0, sealed.size() - kTagLen);
  std::string tag(sealed.substr(ciphertext.size()));
  internal::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), internal::Aes256Gcm(), nullptr,
                         internal::U8(key32), internal::U8(nonce12)) != 1) {
    return internal::Fail(absl::InternalError("AES-GCM init failed"));
  }
  std::string out(ciphertext.size() + kTagLen, '\0');  // slack for Final
  int final_len = 0;
  if (!Update(ctx.get(), nullptr, aad) ||
      !Update(ctx.get(), Out(out), ciphertext) ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagLen, Out(tag)) !=
          1 ||
      EVP_DecryptFinal_ex(ctx.get(), Out(out) + ciphertext.size(),
                          &final_len) != 1) {
    return internal::Fail(absl::UnauthenticatedError("AES-GCM open failed"));
  }
  out.resize(ciphertext.size());
  return out;
}

#endif  // OPENSSL_IS_BORINGSSL

}  // namespace sphere::crypto
