// Seed data for appsvc: customers (owner, warranty end, local repair shop)
// and repair shops with their parts inventory, from a JSON file:
//
//   {"customers": [{"device_id": "<64 hex>", "name": "Ada", "email":
//                   "ada@example.com", "shop": "shop-redmond",
//                   "warranty_until": "2027-06-01T00:00:00Z"}],
//    "shops": [{"id": "shop-redmond", "name": "Redmond Appliance Repair",
//               "inventory": {"DW100-HTR-220": 2}}]}
//
// and web accounts (web_auth.h), passwords as salted hashes only:
//
//    "accounts": [{"user": "support", "role": "support",
//                  "password_hash": "pbkdf2-sha256$600000$...$..."},
//                 {"user": "ada", "role": "owner", "device_id": "<64 hex>",
//                  "password_hash": "..."}]
//
// warranty_until is RFC 3339 ("" or absent: no warranty). Limits: the file
// is at most 4 MiB, names and emails at most 256 bytes, ids 64.
#ifndef SPHERE_APPSVC_SEED_H_
#define SPHERE_APPSVC_SEED_H_

#include <string>

#include "absl/status/statusor.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/web_auth.h"

namespace contoso::appsvc {

inline constexpr size_t kMaxSeedBytes = 4 << 20;

// ParseSeed: InvalidArgument naming the bad entry.
absl::StatusOr<SeedData> ParseSeed(const std::string& json);

// ParseSeedAccounts: the "accounts" list (empty when absent);
// InvalidArgument naming the bad entry (a plaintext "password" is refused).
absl::StatusOr<std::vector<WebAccount>> ParseSeedAccounts(
    const std::string& json);

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_SEED_H_
