// Internal helpers shared by the common/crypto sources. Not part of the API.
#ifndef SPHERE_COMMON_CRYPTO_INTERNAL_H_
#define SPHERE_COMMON_CRYPTO_INTERNAL_H_

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sphere::crypto::internal {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
template <typename T, void (*F)(T*)>
using Ptr = std::unique_ptr<T, Deleter<T, F>>;

inline void BioFree(BIO* b) { BIO_free(b); }
using BioPtr = Ptr<BIO, BioFree>;
using BnPtr = Ptr<BIGNUM, BN_free>;
using BnCtxPtr = Ptr<BN_CTX, BN_CTX_free>;
using EcKeyPtr = Ptr<EC_KEY, EC_KEY_free>;
using EcPointPtr = Ptr<EC_POINT, EC_POINT_free>;
using EvpPkeyPtr = Ptr<EVP_PKEY, EVP_PKEY_free>;
using CipherCtxPtr = Ptr<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;

// Returns `status` after clearing this thread's OpenSSL error queue.
absl::Status Fail(absl::Status status);

inline const uint8_t* U8(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

// A read-only memory BIO over `data` (which must outlive the BIO).
BioPtr MemBio(absl::string_view data);
// Contents of a memory BIO.
std::string BioContents(BIO* bio);

// Digest / cipher handles. On OpenSSL 3 these are fetched once (immutable,
// thread-safe) to avoid an implicit provider fetch on every call.
const EVP_MD* Sha256Md();
const EVP_MD* Sha1Md();
const EVP_CIPHER* Aes256Ctr();
const EVP_CIPHER* Aes256Gcm();  // OpenSSL backend only.

const EC_GROUP* P256();

// An empty EC_KEY on P-256 (cheap: shares the cached group).
EcKeyPtr NewP256Key();
// EC_KEY from a 65-byte SEC1 point (validated to lie on P-256).
absl::StatusOr<EcKeyPtr> EcKeyFromPoint(absl::string_view point);
// EC_KEY holding the private scalar (and its public point if `with_public`).
absl::StatusOr<EcKeyPtr> EcKeyFromScalar(absl::string_view scalar,
                                         bool with_public);
// 65-byte uncompressed point of `key`'s public key ("" on error).
std::string PointOf(const EC_KEY* key);
// The 65-byte point of an EVP_PKEY holding a P-256 key.
absl::StatusOr<std::string> PointOfPkey(EVP_PKEY* pkey);
// An EVP_PKEY wrapping `key` (takes a reference).
EvpPkeyPtr PkeyFromEcKey(EC_KEY* key);

}  // namespace sphere::crypto::internal

#endif  // SPHERE_COMMON_CRYPTO_INTERNAL_H_
