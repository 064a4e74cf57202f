// Password hashing for appsvc's web accounts: salted PBKDF2-HMAC-SHA256
// (OpenSSL PKCS5_PBKDF2_HMAC), stored as one self-describing string
//
//   pbkdf2-sha256$<iterations>$<salt, base64>$<32-byte hash, base64>
//
// so the work factor can be raised later without breaking stored hashes.
// A salt is 16 random bytes (RAND_bytes); verification recomputes the hash
// with the stored salt and iterations and compares in constant time
// (CRYPTO_memcmp). Plaintext passwords are never stored or logged.
//
// Limits: passwords at most kMaxPasswordBytes (longer ones are refused, not
// truncated); iterations between kMinIterations and kMaxIterations (a stored
// hash outside that range is refused as malformed, so a crafted seed cannot
// make verification free or make one login burn minutes of CPU).
//
// Example:
//   auto h = HashPassword("correct horse");           // once, at bootstrap
//   bool ok = VerifyPassword("correct horse", *h);    // at each login
//
// Thread-safe (no shared state).
#ifndef SPHERE_APPSVC_PASSWORD_H_
#define SPHERE_APPSVC_PASSWORD_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace contoso::appsvc {

inline constexpr size_t kMaxPasswordBytes = 256;
inline constexpr int kMinIterations = 1000;
inline constexpr int kMaxIterations = 10'000'000;
// OWASP's 2023 figure for PBKDF2-HMAC-SHA256 is 600,000; appsvc's default
// is that. Tests pass a smaller count (kMinIterations at least).
inline constexpr int kDefaultIterations = 600'000;

// HashPassword: the encoded salted hash of `password`; InvalidArgument for an
// empty or over-long password or an iteration count out of range.
absl::StatusOr<std::string> HashPassword(absl::string_view password,
                                         int iterations = kDefaultIterations);

// ValidatePasswordHash: OK when `encoded` is a well-formed hash string in the
// format above (used when a seed file is loaded); InvalidArgument otherwise.
absl::Status ValidatePasswordHash(absl::string_view encoded);

// HashIterations: the PBKDF2 iteration count of a well-formed hash string.
absl::StatusOr<int> HashIterations(absl::string_view encoded);

// VerifyPassword: true only when `encoded` is well formed and `password`
// hashes to it. Runs the full PBKDF2 even for a malformed hash (so callers
// that pass a dummy hash for an unknown user take the same time).
bool VerifyPassword(absl::string_view password, absl::string_view encoded);

// RandomToken: `bytes` random bytes from RAND_bytes as lowercase hex.
std::string RandomToken(size_t bytes = 32);

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_PASSWORD_H_
