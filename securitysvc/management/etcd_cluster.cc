#include "securitysvc/management/etcd_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "securitysvc/management/etcd_revision_log.h"

namespace sphere::management {
namespace {

// FreePort binds 127.0.0.1:0 and returns the port the kernel chose (closed
// again at once: etcd cannot report a port it picked itself).
absl::StatusOr<int> FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::InternalError("bind(127.0.0.1:0) failed");
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

absl::Status WriteFile(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << content;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  chmod(path.c_str(), 0600);
  return absl::OkStatus();
}

}  // namespace

bool EtcdCluster::BinaryAvailable(const std::string& binary) {
  return access(binary.c_str(), X_OK) == 0;
}

EtcdCluster::EtcdCluster(EtcdClusterOptions options)
    : options_(std::move(options)) {}

EtcdCluster::~EtcdCluster() {
  for (size_t i = 0; i < members_.size(); ++i) {
    Kill(static_cast<int>(i)).IgnoreError();
  }
}

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(
    EtcdClusterOptions options) {
  if (options.data_dir.empty() || options.members < 1 || options.members > 7) {
    return absl::InvalidArgumentError(
        "EtcdCluster needs a data directory and 1 to 7 members");
  }
  if (!BinaryAvailable(options.binary)) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.binary, " is missing; install etcd-server (./sphere deps)"));
  }
  mkdir(options.data_dir.c_str(), 0700);
  std::unique_ptr<EtcdCluster> c(new EtcdCluster(std::move(options)));
  const bool tls = !c->options_.ca_pem.empty();
  // A member whose data directory exists rejoins its cluster.
  const bool existing =
      access(absl::StrCat(c->options_.data_dir, "/m0/member").c_str(), F_OK) ==
      0;
  if (tls) {
    c->tls_dir_ = absl::StrCat(c->options_.data_dir, "/tls");
    mkdir(c->tls_dir_.c_str(), 0700);
    for (auto [name, pem] :
         {std::pair{"ca.pem", &c->options_.ca_pem},
          std::pair{"server.pem", &c->options_.server_cert_pem},
          std::pair{"server.key", &c->options_.server_key_pem}}) {
      if (auto s = WriteFile(absl::StrCat(c->tls_dir_, "/", name), *pem);
          !s.ok()) {
        return s;
      }
    }
  }
  std::vector<std::string> peers;
  for (int i = 0; i < c->options_.members; ++i) {
    Member m;
    m.name = absl::StrCat("m", i);
    m.dir = absl::StrCat(c->options_.data_dir, "/", m.name);
    if (static_cast<size_t>(i) < c->options_.ports.size()) {
      m.client_port = c->options_.ports[i].first;
      m.peer_port = c->options_.ports[i].second;
    } else {
      absl::StatusOr<int> cp = FreePort();
      absl::StatusOr<int> pp = FreePort();
      if (!cp.ok()) return cp.status();
      if (!pp.ok()) return pp.status();
      m.client_port = *cp;
      m.peer_port = *pp;
    }
    peers.push_back(
        absl::StrFormat("%s=http://127.0.0.1:%d", m.name, m.peer_port));
    c->members_.push_back(m);
  }
  c->initial_cluster_ = absl::StrJoin(peers, ",");
  for (int i = 0; i < c->options_.members; ++i) {
    if (auto s = c->Launch(i, /*new_cluster=*/!existing); !s.ok()) return s;
  }
  for (int i = 0; i < c->options_.members; ++i) {
    if (auto s = c->WaitReady(i); !s.ok()) return s;
  }
  return c;
}

absl::Status EtcdCluster::Launch(int i, bool new_cluster) {
  Member& m = members_[i];
  const bool tls = !tls_dir_.empty();
  const std::string scheme = tls ? "https" : "http";
  const std::string client_url =
      absl::StrFormat("%s://127.0.0.1:%d", scheme, m.client_port);
  const std::string peer_url =
      absl::StrFormat("http://127.0.0.1:%d", m.peer_port);
  std::vector<std::string> args = {
      options_.binary,
      "--name",
      m.name,
      "--data-dir",
      m.dir,
      "--listen-client-urls",
      client_url,
      "--advertise-client-urls",
      client_url,
      "--listen-peer-urls",
      peer_url,
      "--initial-advertise-peer-urls",
      peer_url,
      "--initial-cluster",
      initial_cluster_,
      "--initial-cluster-state",
      new_cluster ? "new" : "existing",
      "--initial-cluster-token",
      "sphere",
      "--max-txn-ops",
      absl::StrCat(options_.max_txn_ops),
      "--max-request-bytes",
      absl::StrCat(options_.max_request_bytes),
      "--heartbeat-interval",
      "50",
      "--election-timeout",
      "500",
      "--logger",
      "zap",
      "--log-outputs",
      "stderr",
  };
  if (tls) {
    args.insert(args.end(),
                {"--cert-file", tls_dir_ + "/server.pem", "--key-file",
                 tls_dir_ + "/server.key", "--trusted-ca-file",
                 tls_dir_ + "/ca.pem", "--client-cert-auth"});
  }
  // Everything the child needs is prepared before fork (the parent may have
  // threads): the child only dup2s and execs.
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string log_path =
      absl::StrCat(options_.data_dir, "/", m.name, ".log");
  int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return absl::InternalError("cannot open " + log_path);
  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  m.pid = pid;
  return absl::OkStatus();
}

absl::Status EtcdCluster::WaitReady(int i) {
  EtcdOptions o;
  o.endpoints = {absl::StrFormat("127.0.0.1:%d", members_[i].client_port)};
  o.rpc_timeout = options_.start_timeout;
  if (!tls_dir_.empty()) {
    o.ca_pem = options_.ca_pem;
    o.cert_pem = options_.client_cert_pem;
    o.key_pem = options_.client_key_pem;
    o.server_name = "127.0.0.1";
  }
  absl::StatusOr<std::unique_ptr<EtcdRevisionLog>> log =
      EtcdRevisionLog::Connect(o);
  if (!log.ok()) {
    return absl::UnavailableError(absl::StrFormat(
        "etcd member %s did not become ready: %s (see %s/%s.log)",
        members_[i].name, log.status().message(), options_.data_dir,
        members_[i].name));
  }
  return absl::OkStatus();
}

std::vector<std::string> EtcdCluster::client_endpoints() const {
  std::vector<std::string> out;
  for (const Member& m : members_) {
    out.push_back(absl::StrFormat("127.0.0.1:%d", m.client_port));
  }
  return out;
}

std::string EtcdCluster::Url() const {
  return absl::StrCat("etcd://", absl::StrJoin(client_endpoints(), ","));
}

absl::Status EtcdCluster::Kill(int i) {
  if (i < 0 || i >= static_cast<int>(members_.size())) {
    return absl::InvalidArgumentError("no such etcd member");
  }
  Member& m = members_[i];
  if (m.pid <= 0) return absl::OkStatus();
  kill(m.pid, SIGKILL);
  int status = 0;
  while (waitpid(m.pid, &status, 0) < 0 && errno == EINTR) {
  }
  m.pid = -1;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Restart(int i) {
  if (i < 0 || i >= static_cast<int>(members_.size())) {
    return absl::InvalidArgumentError("no such etcd member");
  }
  if (members_[i].pid > 0) return absl::OkStatus();
  if (auto s = Launch(i, /*new_cluster=*/false); !s.ok()) return s;
  return WaitReady(i);
}

bool EtcdCluster::running(int i) const { return members_[i].pid > 0; }

std::vector<std::pair<int, int>> EtcdCluster::ports() const {
  std::vector<std::pair<int, int>> out;
  for (const Member& m : members_) out.push_back({m.client_port, m.peer_port});
  return out;
}
pid_t EtcdCluster::pid(int i) const { return members_[i].pid; }

}  // namespace sphere::management
