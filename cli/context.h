// Context: what every spherectl verb shares: the global options, the cluster
// file and credential, the selected tenant, the management stub, and the
// printer. A verb registers itself with Verb() (commands.h); its action runs
// only after the whole command line parsed, with a connected Context.
//
// Which tenant a command acts on, strongest first: --tenant, the
// SPHERE_TENANT environment variable, the tenant chosen with
// 'spherectl tenant select' (stored in ConfigPath()). Platform-only verbs
// (tenant create|credential|select, os release, device import) ignore the
// selected tenant but not --tenant or SPHERE_TENANT.
//
// The credential: the tenant's own operator credential when the cluster
// file records one under "tenants" (written by 'tenant credential'), else
// the platform operator credential acting on that tenant.
#ifndef SPHERE_CLI_CONTEXT_H_
#define SPHERE_CLI_CONTEXT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/output.h"
#include "cli/retry.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "protos/management.grpc.pb.h"

namespace CLI {
class App;
}

namespace sphere::cli {

// Cluster is what the cluster file (written by local_cluster) says.
struct Cluster {
  std::string path;       // the cluster file
  std::string state_dir;  // "state_dir", else the file's directory
  std::string management;
  std::string management_server_name;  // TLS name on management's cert
  // id, address and TLS server name of each shard (cluster::ServerNameAt
  // gives the name for any other shard address, e.g. from the shard map)
  std::vector<cluster::ShardEndpoint> shards;
  rpc::TlsFiles credential;  // the credential used for this run
  bool tenant_credential = false;
};

// LoadCluster reads `path` and the credential for `tenant` (empty: the
// platform operator's).
absl::StatusOr<Cluster> LoadCluster(const std::string& path,
                                    const std::string& tenant);

// ConfigPath is where 'tenant select' stores the selected tenant:
// $SPHERECTL_CONFIG if set, else $XDG_CONFIG_HOME/sphere/spherectl.json,
// else $HOME/.config/sphere/spherectl.json.
std::string ConfigPath();
// SelectedTenant reads the selected tenant ("" if none or no file).
std::string SelectedTenant();
// SaveSelectedTenant writes it ("" clears it), creating the directory.
absl::Status SaveSelectedTenant(const std::string& tenant);

// GlobalOptions are the flags given before (or after) NOUN VERB.
struct GlobalOptions {
  std::string cluster;  // --cluster; default $SPHERE_CLUSTER, ./cluster.json
  std::string tenant;   // --tenant
  std::string output = "table";
  int timeout_seconds = 30;
};

// Access says which tenant a verb acts on.
enum class Access {
  kTenant,    // the effective tenant (flag, env or selected)
  kPlatform,  // only an explicit --tenant / SPHERE_TENANT
};

class Context {
 public:
  using Action = std::function<absl::Status(Context&)>;

  GlobalOptions& options() { return options_; }

  // SetAction records the verb to run once parsing finished.
  void SetAction(Access access, Action action);
  // Run connects and runs the recorded action; FailedPrecondition if none
  // was recorded.
  absl::Status Run();

  // Connected state (valid inside an action).
  const Cluster& cluster() const { return cluster_; }
  const std::string& tenant() const { return tenant_; }
  const Printer& printer() const { return *printer_; }
  absl::Duration timeout() const { return timeout_; }
  v1::ManagementService::Stub* stub() { return stub_.get(); }

  // TenantField is what goes in requests' tenant_id: empty for a tenant
  // credential (the server scopes it), else the tenant name.
  std::string TenantField() const {
    return cluster_.tenant_credential ? "" : tenant_;
  }

  // Call runs one unary RPC with the deadline and maps the status; an
  // unreachable cluster says so. A write that lost a compare race with
  // another management replica (ABORTED, nothing changed) is sent again
  // with bounded jittered backoff (cli/retry.h); each attempt gets the
  // whole deadline.
  template <typename Stub, typename Req, typename Resp>
  absl::Status Call(grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                 const Req&, Resp*),
                    const Req& req, Resp* resp) {
    return CallWithRetry(
        [&] {
          grpc::ClientContext ctx;
          ctx.set_deadline(rpc::Deadline(timeout_));
          return MapStatus((stub_.get()->*method)(&ctx, req, resp));
        },
        retry_, [](absl::Duration d) { absl::SleepFor(d); });
  }

  // MapStatus turns a gRPC status into the one spherectl reports.
  absl::Status MapStatus(const grpc::Status& s) const;

 private:
  absl::Status Connect();

  GlobalOptions options_;
  Access access_ = Access::kTenant;
  Action action_;

  Cluster cluster_;
  std::string tenant_;
  absl::Duration timeout_ = absl::Seconds(30);
  std::unique_ptr<Printer> printer_;
  std::unique_ptr<v1::ManagementService::Stub> stub_;
  RetryOptions retry_;  // jitter seeded per process in Connect
};

// Verb adds subcommand `name` to `noun`; when the command line selects it,
// `action` runs (after parsing) with `access`. Returns the subcommand for
// adding options.
CLI::App* Verb(CLI::App* noun, Context* ctx, const std::string& name,
               const std::string& help, Access access, Context::Action action);

// Noun adds a noun (a subcommand that needs a verb) to the app.
CLI::App* Noun(CLI::App* app, const std::string& name, const std::string& help);

}  // namespace sphere::cli

#endif  // SPHERE_CLI_CONTEXT_H_
