// local_cluster_etcd: local_cluster's --catalog etcd mode. StartEtcdCatalog
// starts a real etcd cluster (Debian's etcd binary) of `members` members on
// loopback with client mTLS (a dedicated etcd CA, server and management
// client certificates under DIR/pki/etcd/, keys 0600), data under DIR/etcd/
// (ports kept in DIR/etcd/ports so a restarted local_cluster rejoins its
// data), and returns the flags that point management replicas at it.
#ifndef SPHERE_SECURITYSVC_LOCAL_CLUSTER_ETCD_H_
#define SPHERE_SECURITYSVC_LOCAL_CLUSTER_ETCD_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "securitysvc/management/etcd_cluster.h"

namespace sphere {

struct EtcdCatalog {
  std::unique_ptr<management::EtcdCluster> cluster;  // kills members when reset
  std::vector<std::string> management_flags;  // --catalog=etcd://... etc.
};

absl::StatusOr<EtcdCatalog> StartEtcdCatalog(const std::string& dir,
                                             int members);

}  // namespace sphere

#endif  // SPHERE_SECURITYSVC_LOCAL_CLUSTER_ETCD_H_
