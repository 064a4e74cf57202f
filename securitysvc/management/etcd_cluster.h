// EtcdCluster starts and stops real etcd members (Debian's etcd-server
// binary) on loopback: for tests, benchmarks and local_cluster. Free ports
// are chosen by binding port 0; data lives under options.data_dir; every
// member is killed (SIGKILL) and reaped when the EtcdCluster is destroyed, so
// nothing outlives it. With TLS PEMs the client URLs are https with client
// certificate authentication (mTLS); peers talk plaintext on loopback.
//
// Thread-safety: not thread-safe; one owner.
//
// Example:
//   if (!EtcdCluster::BinaryAvailable()) GTEST_SKIP() << "no etcd binary";
//   auto etcd = *EtcdCluster::Start({.members = 3, .data_dir = dir});
//   EtcdOptions o; o.endpoints = etcd->client_endpoints();
//   etcd->Kill(0);  // kill -9 one member
#ifndef SPHERE_SECURITYSVC_MANAGEMENT_ETCD_CLUSTER_H_
#define SPHERE_SECURITYSVC_MANAGEMENT_ETCD_CLUSTER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sphere::management {

struct EtcdClusterOptions {
  int members = 1;
  std::string data_dir;  // required; one subdirectory per member
  std::string binary = "/usr/bin/etcd";
  // mTLS for clients: all three PEMs (the server certificate must name
  // 127.0.0.1 / localhost); empty means plaintext.
  std::string ca_pem;
  std::string server_cert_pem;
  std::string server_key_pem;
  // A client certificate and key (signed by ca_pem) the launcher uses to
  // check that each member answers; required with TLS.
  std::string client_cert_pem;
  std::string client_key_pem;
  // (client, peer) port of each member; empty picks free ports. A cluster
  // restarted on its data directory must reuse its ports (etcd stores its
  // members' peer URLs): see ports().
  std::vector<std::pair<int, int>> ports;
  size_t max_txn_ops = 1024;               // --max-txn-ops
  size_t max_request_bytes = 1536 * 1024;  // --max-request-bytes
  absl::Duration start_timeout = absl::Seconds(30);
};

class EtcdCluster {
 public:
  // BinaryAvailable: the etcd binary exists and is executable.
  static bool BinaryAvailable(const std::string& binary = "/usr/bin/etcd");
  // Start launches every member and waits until each answers a Range.
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(
      EtcdClusterOptions options);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // client_endpoints: "127.0.0.1:port" of every member, in member order.
  std::vector<std::string> client_endpoints() const;
  // Url: "etcd://127.0.0.1:p1,127.0.0.1:p2,...".
  std::string Url() const;
  // Kill sends SIGKILL to a member and reaps it.
  absl::Status Kill(int member);
  // Restart starts a killed member again with its data directory.
  absl::Status Restart(int member);
  bool running(int member) const;
  std::vector<std::pair<int, int>> ports() const;
  pid_t pid(int member) const;

 private:
  struct Member {
    std::string name;
    std::string dir;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };
  explicit EtcdCluster(EtcdClusterOptions options);
  absl::Status Launch(int member, bool new_cluster);
  absl::Status WaitReady(int member);

  EtcdClusterOptions options_;
  std::vector<Member> members_;
  std::string initial_cluster_;
  std::string tls_dir_;
};

}  // namespace sphere::management

#endif  // SPHERE_SECURITYSVC_MANAGEMENT_ETCD_CLUSTER_H_
