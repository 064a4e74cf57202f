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
//                 "shard-0": "127.0.0.1:PORT", ...},
//     "server_name": "localhost",                          (optional)
//     "server_names": {"shard-1": "shard-1.example"}       (optional)
//   }
//
// "metrics" maps each process to the host:port of its Prometheus text
// endpoint (plain HTTP, path /metrics).
//
// This file is the one owner of cluster.json's location and path rules:
// ClusterConfigPath says which file a tool reads, LoadClusterConfig resolves
// the relative paths in it (against the file's directory) and
// CredentialFor picks the operator credential for a tenant; EndpointOf (and
// each ShardEndpoint's server_name) is the one rule for the (address, TLS
// server name) pair a client dials, so no caller restates it.
#ifndef SPHERE_COMMON_CLUSTER_CLUSTER_CONFIG_H_
#define SPHERE_COMMON_CLUSTER_CLUSTER_CONFIG_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sphere::cluster {

// Longest TLS server name accepted from cluster.json (a DNS name's limit).
inline constexpr size_t kMaxServerNameBytes = 253;

// kDefaultServerName is cluster.json's "server_name" when absent: the name
// on a local cluster's server certificates (rpc::kLocalServerName).
inline constexpr char kDefaultServerName[] = "localhost";

// Endpoint is what a client dials: the process's host:port (or gRPC target)
// and the TLS server name its certificate must carry. Pass both to
// rpc::NewChannel(address, tls, server_name).
struct Endpoint {
  std::string address;
  std::string server_name;
};

struct ShardEndpoint {
  std::string id;
  std::string address;
  // The name to check on this shard's certificate: ParseClusterConfig fills
  // it from "server_names"[id], else "server_name".
  std::string server_name = kDefaultServerName;
};

// ServerNameAt is the server name to check when dialling `address` (a shard
// address from the cluster file or a shard's redirect): the listed shard's
// name; for an address the list does not name, the name every listed shard
// shares when they all agree (a cluster-wide "server_name"), else "" (then
// rpc::NewChannel checks the host in the address itself). Clients given a
// shard list use it for every channel they open.
std::string ServerNameAt(const std::vector<ShardEndpoint>& shards,
                         const std::string& address);

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
  // TLS server name every process's certificate carries (JSON
  // "server_name"; "localhost" when absent, as on a local cluster), and
  // per-process overrides (JSON "server_names": {"shard-1": "..."}). Each at
  // most kMaxServerNameBytes.
  std::string server_name = kDefaultServerName;
  std::map<std::string, std::string> server_names;

  // ServerName is the name to check on `process`'s certificate
  // ("management", "shard-0", "appsvc", ...): its override, else
  // server_name. Pass it to rpc::NewChannel.
  std::string ServerName(const std::string& process) const;

  // EndpointOf is the (address, server name) of `process`: "management",
  // "appsvc" or a shard id. NotFound when the file lists no address for it.
  absl::StatusOr<Endpoint> EndpointOf(const std::string& process) const;

  std::string ToJson() const;

  // CredentialPaths: the cert/key files of an operator credential, and
  // whether they are a tenant's own (from "tenants") rather than the
  // platform operator's.
  struct CredentialPaths {
    std::string cert;
    std::string key;
    bool tenant_credential = false;
  };
  // CredentialFor returns `tenant`'s own operator credential when the file
  // lists one under "tenants", else (and for tenant "") the platform
  // operator's ("operator_cert"/"operator_key").
  CredentialPaths CredentialFor(const std::string& tenant) const;
};

// ClusterConfigPath is the cluster file a tool reads: `flag` when given,
// else $SPHERE_CLUSTER, else ./cluster.json.
std::string ClusterConfigPath(const std::string& flag);

// ParseClusterConfig parses the JSON text; paths are kept as written.
absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& json);
// LoadClusterConfig reads and parses `path`, then resolves every relative
// file path in it (root_ca, operator and tenant credentials) against the
// file's directory; a missing "state_dir" defaults to that directory.
// NotFound when the file cannot be read (the message says how to start a
// cluster), InvalidArgument when it is not a cluster file.
absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path);

// RecordTenantCredential sets "tenants"[tenant] = {"cert": cert_path, "key":
// key_path} in the cluster file at `path` (spherectl tenant credential),
// keeping every other entry, including keys this build does not know, as
// written. The file must parse as a cluster file (ParseClusterConfig); it is
// replaced atomically (temp + fsync + rename), and concurrent recorders are
// serialised by an advisory lock on PATH.lock, so none loses another's
// entry. InvalidArgument (file unchanged) for a file that is not a cluster
// file or a tenant name or path over kMaxTenantEntryBytes.
inline constexpr size_t kMaxTenantEntryBytes = 4096;
absl::Status RecordTenantCredential(const std::string& path,
                                    const std::string& tenant,
                                    const std::string& cert_path,
                                    const std::string& key_path);

}  // namespace sphere::cluster

#endif  // SPHERE_COMMON_CLUSTER_CLUSTER_CONFIG_H_
