#include "tests/cluster_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/cluster/pki_layout.h"
#include "common/util/file.h"
#include "protos/ops.grpc.pb.h"

namespace sphere::testing {

std::string BinaryPath(const std::string& relative) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* ws = getenv("TEST_WORKSPACE");
  if (srcdir && ws) return absl::StrCat(srcdir, "/", ws, "/", relative);
  return relative;
}

std::string TestTmpDir(const std::string& name) {
  const char* tmp = getenv("TEST_TMPDIR");
  return absl::StrCat(tmp ? tmp : "/tmp", "/", name);
}

absl::StatusOr<PipedChild> SpawnPiped(const std::vector<std::string>& argv) {
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  close(fds[1]);
  return PipedChild{pid, fds[0]};
}

std::pair<int, std::string> RunCommand(const std::vector<std::string>& argv) {
  auto child = SpawnPiped(argv);
  if (!child.ok()) return {-1, std::string(child.status().message())};
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(child->out_fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(child->out_fd);
  int status = 0;
  waitpid(child->pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Restart(
    const std::string& name, int shards) {
  return Launch(name, shards, {}, /*wipe=*/false);
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(
    const std::string& name, int shards,
    const std::vector<std::string>& extra_flags) {
  return Launch(name, shards, extra_flags, /*wipe=*/true);
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Launch(
    const std::string& name, int shards,
    const std::vector<std::string>& extra_flags, bool wipe) {
  auto c = std::unique_ptr<LocalCluster>(new LocalCluster());
  c->dir_ = TestTmpDir(name);
  std::string rm = absl::StrCat("rm -rf '", c->dir_, "'");
  if (wipe && system(rm.c_str()) != 0) return absl::InternalError("rm failed");
  std::vector<std::string> args = {BinaryPath("securitysvc/local_cluster"),
                                   absl::StrCat("--state_dir=", c->dir_),
                                   absl::StrCat("--shards=", shards)};
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  auto child = SpawnPiped(args);
  if (!child.ok()) return child.status();
  c->pid_ = child->pid;
  c->out_fd_ = child->out_fd;
  // Block on the child's stdout until the "ready" line (or EOF on failure).
  std::string out;
  char ch;
  while (read(c->out_fd_, &ch, 1) == 1) {
    out.push_back(ch);
    if (ch == '\n') {
      if (absl::StartsWith(out.substr(out.rfind('\n', out.size() - 2) + 1),
                           "ready")) {
        break;
      }
    }
  }
  if (out.find("ready") == std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat("local_cluster did not become ready: ", out, " (logs in ",
                     c->dir_, "/logs)"));
  }
  auto config = cluster::LoadClusterConfig(c->dir_ + "/cluster.json");
  if (!config.ok()) return config.status();
  c->config_ = *config;
  c->mgmt_ = v1::ManagementService::NewStub(
      rpc::NewChannel(c->config_.management, c->OperatorTls()));
  return c;
}

LocalCluster::~LocalCluster() { Stop().IgnoreError(); }

absl::Status LocalCluster::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  if (out_fd_ >= 0) close(out_fd_);
  out_fd_ = -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError("local_cluster did not stop cleanly");
  }
  return absl::OkStatus();
}

rpc::TlsFiles LocalCluster::TlsFor(const std::string& name) const {
  rpc::TlsFiles t;
  t.cert_pem =
      *util::ReadFile(cluster::PkiPath(dir_, absl::StrCat(name, ".pem")));
  t.key_pem =
      *util::ReadFile(cluster::PkiPath(dir_, absl::StrCat(name, ".key")));
  t.ca_pem = *util::ReadFile(cluster::PkiPath(dir_, "root.pem"));
  return t;
}

rpc::TlsFiles LocalCluster::OperatorTls() const { return TlsFor("operator"); }

rpc::TlsFiles LocalCluster::GatewayTls() const { return TlsFor("gateway"); }

std::unique_ptr<v1::AttestationService::Stub> LocalCluster::ShardStub(
    int index, const rpc::TlsFiles& tls) const {
  return v1::AttestationService::NewStub(
      rpc::NewChannel(config_.shards[index].address, tls));
}

std::string LocalCluster::ShardAddress(int index) const {
  return config_.shards[index].address;
}

absl::StatusOr<std::pair<int, std::string>> LocalCluster::WaitForExit() {
  if (pid_ <= 0) return absl::FailedPreconditionError("cluster not running");
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(out_fd_, buf, sizeof(buf))) > 0) out.append(buf, n);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  close(out_fd_);
  out_fd_ = -1;
  return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
}

absl::StatusOr<pid_t> LocalCluster::ChildPid(const std::string& name) const {
  auto text = util::ReadFile(absl::StrCat(dir_, "/run/", name, ".pid"));
  if (!text.ok()) return text.status();
  int pid = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &pid) || pid <= 0) {
    return absl::DataLossError(
        absl::StrCat("malformed pid file for ", name, ": \"", *text, "\""));
  }
  return static_cast<pid_t>(pid);
}

absl::StatusOr<std::string> LocalCluster::Metrics(
    const std::string& address) const {
  auto stub = v1::Metrics::NewStub(rpc::NewChannel(address, OperatorTls()));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(kCallDeadline));
  v1::GetMetricsResponse resp;
  auto st = stub->GetMetrics(&ctx, v1::GetMetricsRequest(), &resp);
  if (!st.ok()) return rpc::FromGrpcStatus(st);
  return resp.text();
}

absl::StatusOr<v1::Tenant> LocalCluster::CreateTenant(const std::string& name) {
  v1::CreateTenantRequest req;
  req.set_name(name);
  return UnaryCall<v1::Tenant>(
      [&](auto* c, auto& r, auto* o) { return mgmt_->CreateTenant(c, r, o); },
      req);
}

absl::StatusOr<v1::Product> LocalCluster::CreateProduct(
    const std::string& tenant_id, const std::string& name) {
  v1::CreateProductRequest req;
  req.set_tenant_id(tenant_id);
  req.set_name(name);
  return UnaryCall<v1::Product>(
      [&](auto* c, auto& r, auto* o) { return mgmt_->CreateProduct(c, r, o); },
      req);
}

absl::Status LocalCluster::ImportDevice(const std::string& public_key) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(kCallDeadline));
  v1::ImportDevicesResponse resp;
  auto writer = mgmt_->ImportDevices(&ctx, &resp);
  v1::ImportDevicesRequest req;
  req.add_devices()->set_public_key(public_key);
  writer->Write(req);
  writer->WritesDone();
  return rpc::FromGrpcStatus(writer->Finish());
}

absl::StatusOr<v1::Device> LocalCluster::Claim(const std::string& tenant_id,
                                               const std::string& device_id) {
  v1::ClaimDeviceRequest req;
  req.set_tenant_id(tenant_id);
  req.set_device_id(device_id);
  return UnaryCall<v1::Device>(
      [&](auto* c, auto& r, auto* o) { return mgmt_->ClaimDevice(c, r, o); },
      req);
}

absl::StatusOr<v1::Device> LocalCluster::Revoke(const std::string& tenant_id,
                                                const std::string& device_id) {
  v1::RevokeDeviceRequest req;
  req.set_tenant_id(tenant_id);
  req.set_device_id(device_id);
  req.set_reason("test");
  return UnaryCall<v1::Device>(
      [&](auto* c, auto& r, auto* o) { return mgmt_->RevokeDevice(c, r, o); },
      req);
}

absl::StatusOr<v1::Device> LocalCluster::GetDevice(
    const std::string& tenant_id, const std::string& device_id) {
  v1::GetDeviceRequest req;
  req.set_tenant_id(tenant_id);
  req.set_device_id(device_id);
  return UnaryCall<v1::Device>(
      [&](auto* c, auto& r, auto* o) { return mgmt_->GetDevice(c, r, o); },
      req);
}

absl::StatusOr<int64_t> LocalCluster::ManagementRevision() {
  auto r = UnaryCall<v1::CatalogRevision>(
      [&](auto* c, auto& r, auto* o) {
        return mgmt_->GetCatalogRevision(c, r, o);
      },
      v1::GetCatalogRevisionRequest());
  if (!r.ok()) return r.status();
  return r->revision();
}

}  // namespace sphere::testing
