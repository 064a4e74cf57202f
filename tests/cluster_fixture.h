// ClusterFixture: starts a real local cluster (the local_cluster binary:
// management + N shard processes, all on port 0) in a fresh state directory
// under TEST_TMPDIR, waits for its "ready" line (a blocking pipe read, no
// sleeps), and gives tests operator-authenticated stubs. Stop() sends SIGTERM
// and waits; the destructor does too.
#ifndef SPHERE_TESTS_CLUSTER_FIXTURE_H_
#define SPHERE_TESTS_CLUSTER_FIXTURE_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/management.grpc.pb.h"

namespace sphere::testing {

class LocalCluster {
 public:
  ~LocalCluster();
  // Start launches local_cluster with `shards` shards in TEST_TMPDIR/<name>;
  // `extra_flags` go to local_cluster as given (e.g.
  // "--shard_heartbeat_interval=100ms").
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(
      const std::string& name, int shards,
      const std::vector<std::string>& extra_flags = {});
  // Restart starts a cluster on the state directory an earlier (stopped)
  // cluster of the same name left behind.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Restart(
      const std::string& name, int shards);
  absl::Status Stop();

  const cluster::ClusterConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  // cluster_file is DIR/cluster.json, what spherectl and twin read.
  std::string cluster_file() const { return dir_ + "/cluster.json"; }
  rpc::TlsFiles OperatorTls() const;
  // GatewayTls: the gateway credential (scope "gateway") that may attest on
  // behalf of any device, as loadgen does; tests drive in-process devices
  // through it.
  rpc::TlsFiles GatewayTls() const;
  // TlsFor reads DIR/pki/NAME.pem/.key with the root as CA.
  rpc::TlsFiles TlsFor(const std::string& name) const;
  v1::ManagementService::Stub* management() { return mgmt_.get(); }
  std::unique_ptr<v1::AttestationService::Stub> ShardStub(
      int index, const rpc::TlsFiles& tls) const;
  // ShardAddress: host:port of shard `index` (for other services' stubs).
  std::string ShardAddress(int index) const;
  // ChildPid returns the pid of the cluster's child process `name`
  // ("management", "shard-0", ...) from DIR/run/<name>.pid, which
  // local_cluster writes when it spawns the child. Crash tests SIGKILL it.
  absl::StatusOr<pid_t> ChildPid(const std::string& name) const;
  // WaitForExit waits for local_cluster to exit by itself and returns its
  // exit code and remaining output.
  absl::StatusOr<std::pair<int, std::string>> WaitForExit();
  // Scrape returns the Prometheus text of the process at `address`.
  absl::StatusOr<std::string> Metrics(const std::string& address) const;

  // Helpers over the management API (platform operator).
  absl::StatusOr<v1::Tenant> CreateTenant(const std::string& name);
  absl::StatusOr<v1::Product> CreateProduct(const std::string& tenant_id,
                                            const std::string& name);
  absl::Status ImportDevice(const std::string& public_key);
  absl::StatusOr<v1::Device> Claim(const std::string& tenant_id,
                                   const std::string& device_id);
  absl::StatusOr<v1::Device> Revoke(const std::string& tenant_id,
                                    const std::string& device_id);
  // GetDevice reads a device record (tenant_id may be empty: any tenant).
  absl::StatusOr<v1::Device> GetDevice(const std::string& tenant_id,
                                       const std::string& device_id);
  // ManagementRevision: the catalog revision, passed to shards as
  // min_catalog_revision so they answer from a catalog that has our writes.
  absl::StatusOr<int64_t> ManagementRevision();

 private:
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Launch(
      const std::string& name, int shards,
      const std::vector<std::string>& extra_flags, bool wipe);

  std::string dir_;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  cluster::ClusterConfig config_;
  std::unique_ptr<v1::ManagementService::Stub> mgmt_;
};

// UnaryCall runs one unary RPC with a 30 s deadline (kCallDeadline), e.g.
//   auto t = UnaryCall<v1::Tenant>(
//       [&](auto* c, auto& r, auto* o) { return stub->GetTenant(c, r, o); },
//       req);
// kCallDeadline: one RPC to a cluster process. Generous: on a loaded 2-core
// machine a management write (an fsync behind five builds) or an Attest
// (verify + group-committed record) can take seconds; only a hung process
// reaches it.
inline constexpr absl::Duration kCallDeadline = absl::Seconds(30);

template <typename Resp, typename Req, typename Fn>
absl::StatusOr<Resp> UnaryCall(Fn fn, const Req& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(kCallDeadline));
  Resp resp;
  grpc::Status st = fn(&ctx, req, &resp);
  if (!st.ok()) return rpc::FromGrpcStatus(st);
  return resp;
}

// TestTmpDir is TEST_TMPDIR/name (/tmp/name outside Bazel).
std::string TestTmpDir(const std::string& name);

// PipedChild is a child process whose stdout and stderr both go to the
// pipe `out_fd` (the parent's read end; the parent closes it).
struct PipedChild {
  pid_t pid = -1;
  int out_fd = -1;
};
// SpawnPiped forks and execs argv[0] (a path) with argv. Everything the
// child needs is prepared before fork, so the child makes only
// async-signal-safe calls (test processes have gRPC threads); the pipe is
// O_CLOEXEC, so no other child inherits it.
absl::StatusOr<PipedChild> SpawnPiped(const std::vector<std::string>& argv);

// RunCommand runs argv, returns (exit code, combined stdout+stderr).
std::pair<int, std::string> RunCommand(const std::vector<std::string>& argv);

// BinaryPath resolves a Bazel label-ish path ("twin/twin") in runfiles.
std::string BinaryPath(const std::string& relative);

}  // namespace sphere::testing

#endif  // SPHERE_TESTS_CLUSTER_FIXTURE_H_
