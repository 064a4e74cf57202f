// ClusterConfig is DIR/cluster.json, written by local_cluster once every
// process is ready, and read by spherectl, twins, loadgen and appsvc:
//
//   {
//     "state_dir": "/abs/DIR",
//     "management": "127.0.0.1:PORT",
//     "shards": [{"id": "shard-0", "address": "127.0.0.1:PORT"}, ...],
//     "root_ca": "/abs/DIR/pki/root.pem",
//     "operator_cert": "/abs/DIR/pki/operator.pem",
//     "operator_key": "/abs/DIR/pki/operator.key",
//     "tenants": {"Contoso": {"cert": "...", "key": "..."}},  (optional)
//     "appsvc": "127.0.0.1:PORT", "appsvc_web": "https://127.0.0.1:PORT/",
//     "twins": {"dw100-1": "127.0.0.1:PORT", ...},        (optional)
//     "metrics": {"management": "127.0.0.1:PORT",
//                 "shard-0": "127.0.0.1:PORT", ...}
//   }
//
// "metrics" maps each process to the host:port of its Prometheus text
// endpoint (plain HTTP, path /metrics).
#ifndef SPHERE_COMMON_CLUSTER_CLUSTER_CONFIG_H_
#define SPHERE_COMMON_CLUSTER_CLUSTER_CONFIG_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sphere::cluster {

struct ShardEndpoint {
  std::string id;
  std::string address;
};

struct ClusterConfig {
  std::string state_dir;
  std::string management;
  std::vector<ShardEndpoint> shards;
  std::string root_ca;
  std::string operator_cert;
  std::string operator_key;
  std::string appsvc;  // Contoso cloud address, when running
  // https://host:port/ of the Contoso web pages (support + owner), when
  // running (JSON "appsvc_web").
  std::string appsvc_web;
  // twin name -> loopback host:port of its TwinControl API, for the DW100
  // twins local_cluster --twins K runs (JSON "twins").
  std::map<std::string, std::string> twins;
  // tenant name -> (cert path, key path) of that tenant's operator credential
  std::map<std::string, std::pair<std::string, std::string>> tenants;
  // process name ("management", "shard-0", ...) -> host:port of its HTTP
  // /metrics endpoint
  std::map<std::string, std::string> metrics;
  // local_cluster --catalog etcd: every management replica (host:port; the
  // "management" target then names them all as "ipv4:a,b" so clients fail
  // over) and the etcd members' client endpoints. Empty otherwise.
  std::vector<std::string> management_replicas;
  std::vector<std::string> etcd;

  std::string ToJson() const;
};

absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& json);
absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path);

}  // namespace sphere::cluster

#endif  // SPHERE_COMMON_CLUSTER_CLUSTER_CONFIG_H_
