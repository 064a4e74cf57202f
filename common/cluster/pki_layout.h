// PKI layout of a cluster state directory: the one place that knows the PKI
// lives in DIR/pki (securitysvc/pki/pki.h lists the files in it). Server code
// holding a loaded pki::ClusterPki uses ClusterPki::Path, which is built on
// this; code that may not link securitysvc (device side: spherectl, twin,
// loadgen, appsvc) and code that has only a state directory use it directly.
//
//   std::string root = cluster::PkiPath(state_dir, "root.pem");
#ifndef SPHERE_COMMON_CLUSTER_PKI_LAYOUT_H_
#define SPHERE_COMMON_CLUSTER_PKI_LAYOUT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace sphere::cluster {

// PkiDir is DIR/pki for the cluster state directory `state_dir`.
std::string PkiDir(absl::string_view state_dir);
// PkiPath is DIR/pki/NAME ("root.pem", "master.key", "tenants", ...).
std::string PkiPath(absl::string_view state_dir, absl::string_view name);

}  // namespace sphere::cluster

#endif  // SPHERE_COMMON_CLUSTER_PKI_LAYOUT_H_
