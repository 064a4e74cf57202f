#include "appsvc/password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace contoso::appsvc {
namespace {

constexpr char kScheme[] = "pbkdf2-sha256";
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;

struct Parsed {
  int iterations = 0;
  std::string salt;
  std::string hash;
};

absl::StatusOr<Parsed> Parse(absl::string_view encoded) {
  if (encoded.size() > 256) {
    return absl::InvalidArgumentError("password hash is over 256 bytes");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(encoded, '$');
  Parsed p;
  if (parts.size() != 4 || parts[0] != kScheme ||
      !absl::SimpleAtoi(parts[1], &p.iterations) ||
      p.iterations < kMinIterations || p.iterations > kMaxIterations ||
      !absl::Base64Unescape(parts[2], &p.salt) ||
      !absl::Base64Unescape(parts[3], &p.hash) || p.salt.size() < 8 ||
      p.salt.size() > 64 || p.hash.size() != kHashBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "password hash must be ", kScheme, "$<iterations ", kMinIterations,
        "..", kMaxIterations, ">$<base64 salt>$<base64 32-byte hash>"));
  }
  return p;
}

std::string Derive(absl::string_view password, absl::string_view salt,
                   int iterations) {
  std::string out(kHashBytes, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(out.size()),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    std::abort();  // only on allocation failure inside OpenSSL
  }
  return out;
}

}  // namespace

std::string RandomToken(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()),
                 static_cast<int>(raw.size())) != 1) {
    std::abort();  // no randomness: never hand out a guessable token
  }
  return absl::BytesToHexString(raw);
}

absl::StatusOr<std::string> HashPassword(absl::string_view password,
                                         int iterations) {
  if (password.empty() || password.size() > kMaxPasswordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a password must be 1..", kMaxPasswordBytes, " bytes"));
  }
  if (iterations < kMinIterations || iterations > kMaxIterations) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PBKDF2 iterations must be ", kMinIterations, "..", kMaxIterations));
  }
  std::string salt(kSaltBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()),
                 static_cast<int>(salt.size())) != 1) {
    return absl::InternalError("no randomness for a password salt");
  }
  return absl::StrCat(kScheme, "$", iterations, "$", absl::Base64Escape(salt),
                      "$",
                      absl::Base64Escape(Derive(password, salt, iterations)));
}

absl::Status ValidatePasswordHash(absl::string_view encoded) {
  return Parse(encoded).status();
}

absl::StatusOr<int> HashIterations(absl::string_view encoded) {
  auto p = Parse(encoded);
  if (!p.ok()) return p.status();
  return p->iterations;
}

bool VerifyPassword(absl::string_view password, absl::string_view encoded) {
  auto p = Parse(encoded);
  const bool usable =
      p.ok() && !password.empty() && password.size() <= kMaxPasswordBytes;
  // Same work for a malformed hash or refused password: a dummy derivation.
  const std::string salt = p.ok() ? p->salt : std::string(kSaltBytes, 's');
  const int iterations = p.ok() ? p->iterations : kDefaultIterations;
  const std::string got =
      Derive(password.substr(0, kMaxPasswordBytes), salt, iterations);
  if (!usable) return false;
  return CRYPTO_memcmp(got.data(), p->hash.data(), kHashBytes) == 0;
}

}  // namespace contoso::appsvc
