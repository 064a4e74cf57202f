// ContosoBootstrap: what `local_cluster --twins K` sets up so the seed's
// scenario runs on a fresh cluster, through the same APIs spherectl and the
// factory use (nothing is written into a database behind their back):
//
//  1. tenant Contoso and its operator credential (DIR/pki/tenants/Contoso.*,
//     as `spherectl tenant credential` writes it);
//  2. product DW100 (which comes with its device groups, among them Field
//     Test and Production);
//  3. DW100 app v1 (the high-level app and its real-time sensor app) built
//     by Contoso, uploaded (the platform re-signs it) and deployed to Field
//     Test and Production; the platform-signed packages are also written to
//     DIR/images/apps/v1/<component>.pkg (what the factory line installs);
//     Contoso's build of app v2 is left, not uploaded, in
//     DIR/contoso/build/app-v2/<component>.pkg;
//  4. K twins dw100-1..dw100-K: manufactured by the factory, claimed by
//     Contoso, dw100-1 in Field Test and the rest in Production, with app v1
//     installed at the factory;
//  5. DIR/appsvc/seed.json for the Contoso cloud: one customer per twin and
//     two repair shops (see Dw100Customer for who has a warranty and which
//     shop has the heater in stock), and the web accounts "support" and
//     "owner-dw100-<i>" (first 16 twins) as salted PBKDF2 hashes; their
//     random passwords go to DIR/appsvc/web-accounts.txt (0600).
// Idempotent: on a state directory that already has them, each step keeps
// what exists (a restarted cluster keeps its twins).
//
// Thread-safety: call from one thread.
#ifndef SPHERE_SECURITYSVC_CONTOSO_BOOTSTRAP_H_
#define SPHERE_SECURITYSVC_CONTOSO_BOOTSTRAP_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/cluster/cluster_config.h"
#include "securitysvc/pki/pki.h"

namespace sphere::contoso_bootstrap {

inline constexpr char kTenant[] = "Contoso";
inline constexpr char kProduct[] = "DW100";
inline constexpr int kMaxTwins = 256;

struct BootstrappedTwin {
  std::string name;       // dw100-<i>
  std::string device_id;  // hex SHA-256 of the device key
  std::string group;      // "DW100/Field Test" or "DW100/Production"
};

// Dw100Customer describes twin i's owner in seed.json (1-based):
//   i = 1: under warranty, shop-redmond (heater in stock: 1)
//   i = 2: under warranty, shop-bellevue (heater backordered: 0 in stock)
//   i = 3: warranty expired, shop-redmond
//   i > 3: under warranty, shop-redmond
struct Dw100Customer {
  std::string name;
  std::string email;
  std::string shop;
  bool under_warranty = true;
};
Dw100Customer CustomerFor(int i);

struct Result {
  std::string tenant_id;
  std::string tenant_cert;  // DIR/pki/tenants/Contoso.pem
  std::string tenant_key;
  std::string seed_file;  // DIR/appsvc/seed.json
  std::vector<BootstrappedTwin> twins;
};

// Run performs the steps above against the running management at
// `config.management` (platform operator credential from `config`).
absl::StatusOr<Result> Run(const pki::ClusterPki& pki,
                           const cluster::ClusterConfig& config,
                           uint32_t os_version, int twins);

}  // namespace sphere::contoso_bootstrap

#endif  // SPHERE_SECURITYSVC_CONTOSO_BOOTSTRAP_H_
