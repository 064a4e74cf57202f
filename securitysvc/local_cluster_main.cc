// local_cluster: a whole Sphere cluster on one machine.
//
//   bazel run //:local_cluster -- --state-dir DIR [--shards N]
//
// Bootstraps the PKI into DIR/pki (once), builds and signs the factory OS
// images into DIR/images/os-<v>/ (osbuild::BuildOs, as os_builder does),
// starts management and N shards as child processes (logs in DIR/logs/),
// publishes the OS release on both feeds, writes DIR/cluster.json and prints
// a line starting with "ready". Each child's pid is written to
// DIR/run/<name>.pid as it is spawned (crash tests SIGKILL children by it).
//
// Supervision: a child that dies (management or a shard) is restarted with
// exponential backoff (--restart_backoff doubling up to
// --max_restart_backoff; reset once a child stayed up for a minute) on the
// same gRPC and /metrics ports, so cluster.json stays valid; the rest keep
// serving. Every death and restart is logged. cluster.json lists each
// process's HTTP /metrics address under "metrics" and is rewritten only if
// an address changes. The cluster stops only on Ctrl-C or SIGTERM, which
// stops every child gracefully. With --exit-when-ready it detaches nothing:
// it stops the cluster again right after becoming ready (smoke test).
//
// The cluster master key is DIR/pki/master.key by default (zero setup);
// --master-key-file PATH keeps it elsewhere (created there, 0600, if absent)
// and --master-key-env NAME takes it from an environment variable (64 hex
// digits); children get the same flag. DIR and everything under it that
// holds state is 0700. See docs/threat-model.md.
//
// Logs: each child's stdout and stderr go through a pipe into
// DIR/logs/<name>.log (mode 0640, rotated at --log_max_bytes keeping
// --log_keep files); a line that is not a JSON object is wrapped into one.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "common/util/log.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/contoso_bootstrap.h"
#include "securitysvc/local_cluster_etcd.h"
#include "securitysvc/management/shard_lease_ttl.h"
#include "securitysvc/osbuild/os_build.h"
#include "securitysvc/pki/pki.h"

ABSL_FLAG(std::string, state_dir, "", "Cluster state directory (required)");
ABSL_FLAG(int, shards, 1, "Number of Security Service shards");
ABSL_FLAG(uint32_t, os_version, 1, "Factory/Retail OS version to publish");
ABSL_FLAG(bool, exit_when_ready, false,
          "Stop the cluster right after it became ready");
ABSL_FLAG(absl::Duration, ready_timeout, absl::Seconds(60),
          "How long children may take to become ready");
ABSL_FLAG(std::string, master_key_file, "",
          "Cluster master key file outside the state directory (created "
          "with mode 0600 if absent); default DIR/pki/master.key");
ABSL_FLAG(std::string, master_key_env, "",
          "Environment variable holding the cluster master key (64 hex "
          "digits); children inherit it");
ABSL_FLAG(absl::Duration, shard_heartbeat_interval, absl::Seconds(5),
          "How often shards re-register with management (device counts)");
ABSL_FLAG(absl::Duration, restart_backoff, absl::Milliseconds(200),
          "First delay before restarting a dead child (doubles each time)");
ABSL_FLAG(absl::Duration, max_restart_backoff, absl::Seconds(30),
          "Longest delay between restarts of a child that keeps dying");
ABSL_FLAG(uint64_t, log_max_bytes, 64ull << 20,
          "Rotate a child's log file when it reaches this size");
ABSL_FLAG(int, log_keep, 5, "Rotated log files kept per child");
ABSL_FLAG(std::string, catalog, "embedded",
          "embedded (management's RocksDB) or etcd (a real etcd cluster of "
          "--etcd_members members and --management_replicas management "
          "processes; see docs/etcd.md)");
ABSL_FLAG(std::string, watch_progress_interval, "",
          "Passed to management: progress notifications on idle catalog "
          "watches (e.g. 200ms in tests); empty = management's default");
ABSL_FLAG(std::string, max_catalog_staleness, "",
          "Passed to every shard: refuse attestation after this long "
          "without catalog events or progress; empty = the shard's default");
ABSL_FLAG(int, etcd_members, 3, "etcd members with --catalog etcd");
ABSL_FLAG(int, management_replicas, 2,
          "management processes with --catalog etcd");

ABSL_FLAG(int, twins, 0,
          "Also start the Contoso cloud (appsvc) and this many DW100 twins "
          "(tenant Contoso, product DW100, app v1; see "
          "securitysvc/contoso_bootstrap.h)");
ABSL_FLAG(double, twin_time_scale, 2000,
          "Device time per real time for the DW100 twins (wash cycles every "
          "8 device hours)");

ABSL_FLAG(double, twin_update_check_hours, 24,
          "DW100 twins check for updates every this many device hours (0 = "
          "only when asked)");

ABSL_FLAG(bool, staged_rollout, false,
          "management: new deployments roll out in stages");
ABSL_FLAG(std::string, rollout_soak, "",
          "management: soak per rollout stage (e.g. 1h; empty = its default)");

namespace sphere {
namespace {

// LogPump copies a child's output, line by line, into its rotating log
// file; lines that are not JSON objects (a crash message, a flag error) are
// wrapped into one, so every line of the file is one JSON object.
class LogPump {
 public:
  LogPump(std::string name, std::string path)
      : name_(std::move(name)),
        file_(std::move(path), absl::GetFlag(FLAGS_log_max_bytes),
              absl::GetFlag(FLAGS_log_keep)) {}
  ~LogPump() { Join(); }

  // Follow reads `fd` until EOF on a thread of its own (one at a time).
  void Follow(int fd) {
    Join();
    thread_ = std::thread([this, fd] { Run(fd); });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  static constexpr size_t kMaxLine = 64 << 10;

  void Run(int fd) {
    std::string pending;
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) != 0) {
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      pending.append(buf, n);
      size_t start = 0, nl;
      while ((nl = pending.find('\n', start)) != std::string::npos) {
        Line(absl::string_view(pending).substr(start, nl - start));
        start = nl + 1;
      }
      pending.erase(0, start);
      if (pending.size() > kMaxLine) {  // an endless line is cut
        Line(pending);
        pending.clear();
      }
    }
    if (!pending.empty()) Line(pending);
    close(fd);
  }

  void Line(absl::string_view line) {
    std::string out;
    if (absl::StartsWith(line, "{") && absl::EndsWith(line, "}") &&
        line.size() <= kMaxLine) {
      out = absl::StrCat(line, "\n");
    } else {
      nlohmann::ordered_json j;
      j["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                 absl::UTCTimeZone());
      j["level"] = "info";
      j["component"] = name_;
      j["msg"] = log::Bound(line);
      j["source"] = "output";
      out = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
            "\n";
    }
    absl::MutexLock l(&mu_);
    if (auto s = file_.Append(out); !s.ok()) {
      log::Error("cannot write child log",
                 {{"child", name_}, {"error", s.ToString()}});
    }
  }

  const std::string name_;
  absl::Mutex mu_;
  log::RotatingFile file_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Child is one supervised process.
struct Child {
  enum class State { kStarting, kRunning, kWaitingRestart, kStopped };
  std::string name;
  std::string binary;
  std::vector<std::string> args;  // without the port flags
  pid_t pid = -1;
  State state = State::kStopped;
  std::string port_file;
  std::string metrics_port_file;
  int port = 0;
  int metrics_port = 0;
  absl::Time started;
  absl::Time restart_at;
  absl::Duration backoff;
  int restarts = 0;
  int failed_starts = 0;  // consecutive deaths before becoming ready
  std::unique_ptr<LogPump> pump;

  std::string address() const { return absl::StrCat("127.0.0.1:", port); }
  std::string metrics_address() const {
    return absl::StrCat("127.0.0.1:", metrics_port);
  }
};

std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, n);
  return p.substr(0, p.rfind('/'));
}

// FindBinary locates a sibling Bazel output (runfiles or bazel-bin layout).
std::string FindBinary(const std::string& package, const std::string& name) {
  std::string self = SelfDir();
  std::vector<std::string> candidates = {
      absl::StrCat(self, "/local_cluster.runfiles/sphere/", package, "/", name),
      absl::StrCat(self, "/../", package, "/", name),
      absl::StrCat(self, "/", name),
  };
  if (const char* rf = getenv("RUNFILES_DIR")) {
    candidates.insert(candidates.begin(),
                      absl::StrCat(rf, "/sphere/", package, "/", name));
  }
  for (const auto& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return candidates.back();
}

// Spawn starts `c` (again): on its previous ports when it had them (a
// restarted child keeps its addresses), else on free ones.
absl::Status Spawn(Child& c, const std::string& state_dir) {
  c.port_file = absl::StrCat(state_dir, "/run/", c.name, ".port");
  c.metrics_port_file =
      absl::StrCat(state_dir, "/run/", c.name, ".metrics_port");
  unlink(c.port_file.c_str());
  unlink(c.metrics_port_file.c_str());
  // Keep the ports unless the child keeps dying before it is ready (maybe
  // someone else took the port); management always keeps its port, which
  // every shard was given.
  const bool keep_ports = c.name == "management" || c.failed_starts < 2;
  std::vector<std::string> args = c.args;
  args.push_back(absl::StrCat("--port=", keep_ports ? c.port : 0));
  args.push_back(absl::StrCat("--port_file=", c.port_file));
  args.push_back(absl::StrCat("--metrics_address=127.0.0.1:",
                              keep_ports ? c.metrics_port : 0));
  args.push_back(absl::StrCat("--metrics_port_file=", c.metrics_port_file));
  std::vector<char*> argv;
  argv.push_back(c.binary.data());
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    sigset_t set;
    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  if (!c.pump) {
    c.pump = std::make_unique<LogPump>(
        c.name, absl::StrCat(state_dir, "/logs/", c.name, ".log"));
  }
  c.pump->Follow(fds[0]);
  c.pid = pid;
  c.state = Child::State::kStarting;
  c.started = absl::Now();
  if (auto s = util::WriteFile(absl::StrCat(state_dir, "/run/", c.name, ".pid"),
                               absl::StrCat(pid, "\n"));
      !s.ok()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    c.pid = -1;
    c.state = Child::State::kStopped;
    return s;
  }
  return absl::OkStatus();
}

// ReadPort reads a port file written by the child once it serves.
bool ReadPort(const std::string& file, int* port) {
  auto text = util::ReadFile(file);
  return text.ok() &&
         absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), port) && *port > 0;
}

// CheckReady moves a starting child to running once both ports are known.
bool CheckReady(Child& c) {
  int port = 0, metrics_port = 0;
  if (!ReadPort(c.port_file, &port) ||
      !ReadPort(c.metrics_port_file, &metrics_port)) {
    return false;
  }
  c.port = port;
  c.metrics_port = metrics_port;
  c.state = Child::State::kRunning;
  return true;
}

// WaitReady waits for the child's port files; fails if the child exits.
absl::Status WaitReady(Child& c, absl::Duration timeout,
                       const std::string& state_dir) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status;
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.pid = -1;
      c.state = Child::State::kStopped;
      return absl::UnavailableError(
          absl::StrCat(c.name, " exited during startup; see ", state_dir,
                       "/logs/", c.name, ".log"));
    }
    if (CheckReady(c)) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(20));  // readiness poll, not a test
  }
  return absl::DeadlineExceededError(
      absl::StrCat(c.name, " not ready after ", absl::FormatDuration(timeout)));
}

void StopAll(std::vector<Child>& children) {
  // Shards first, management last.
  for (auto it = children.rbegin(); it != children.rend(); ++it) {
    if (it->pid > 0) kill(it->pid, SIGTERM);
  }
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (auto& c : children) {
    while (c.pid > 0) {
      int status;
      pid_t r = waitpid(c.pid, &status, WNOHANG);
      if (r == c.pid || r < 0) {
        c.pid = -1;
        break;
      }
      if (absl::Now() > deadline) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, &status, 0);
        c.pid = -1;
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    c.state = Child::State::kStopped;
    if (c.pump) c.pump->Join();  // the log is complete
  }
}

std::string ExitDescription(int status) {
  return WIFSIGNALED(status)
             ? absl::StrCat("killed by signal ", WTERMSIG(status))
             : absl::StrCat("exited with status ", WEXITSTATUS(status));
}

// Supervise runs the cluster until SIGINT/SIGTERM: reaps dead children,
// restarts them with exponential backoff, and rewrites cluster.json when an
// address changed. Returns the signal.
int Supervise(std::vector<Child>& children, cluster::ClusterConfig& config,
              const std::string& dir) {
  const absl::Duration first_backoff = absl::GetFlag(FLAGS_restart_backoff);
  const absl::Duration max_backoff = absl::GetFlag(FLAGS_max_restart_backoff);
  const absl::Duration stable_after = absl::Minutes(1);
  for (auto& c : children) c.backoff = first_backoff;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  while (true) {
    // Sleep until a signal, the next restart, or (while a child starts) the
    // next readiness check.
    absl::Duration wait = absl::Seconds(1);
    const absl::Time now = absl::Now();
    for (const auto& c : children) {
      if (c.state == Child::State::kWaitingRestart) {
        wait =
            std::min(wait, std::max(absl::ZeroDuration(), c.restart_at - now));
      } else if (c.state == Child::State::kStarting) {
        wait = std::min(wait, absl::Milliseconds(20));
      }
    }
    timespec ts = absl::ToTimespec(wait);
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM) return sig;
    // Reap every dead child (SIGCHLD may stand for several).
    for (auto& c : children) {
      int status = 0;
      if (c.pid <= 0 || waitpid(c.pid, &status, WNOHANG) != c.pid) continue;
      c.pid = -1;
      if (c.state == Child::State::kStarting) {
        ++c.failed_starts;
      } else if (absl::Now() - c.started >= stable_after) {
        c.backoff = first_backoff;  // it had been healthy for a while
      }
      c.state = Child::State::kWaitingRestart;
      c.restart_at = absl::Now() + c.backoff;
      log::Warning("child died; restarting",
                   {{"child", c.name},
                    {"how", ExitDescription(status)},
                    {"restart_in", absl::FormatDuration(c.backoff)},
                    {"restarts", absl::StrCat(c.restarts)},
                    {"log", absl::StrCat(dir, "/logs/", c.name, ".log")}});
      c.backoff = std::min(c.backoff * 2, max_backoff);
    }
    bool addresses_changed = false;
    for (auto& c : children) {
      if (c.state == Child::State::kWaitingRestart &&
          absl::Now() >= c.restart_at) {
        ++c.restarts;
        if (auto s = Spawn(c, dir); !s.ok()) {
          c.state = Child::State::kWaitingRestart;
          c.restart_at = absl::Now() + c.backoff;
          log::Error("cannot restart child",
                     {{"child", c.name}, {"error", s.ToString()}});
          continue;
        }
        log::Info("child restarted", {{"child", c.name},
                                      {"pid", absl::StrCat(c.pid)},
                                      {"restarts", absl::StrCat(c.restarts)}});
      }
      if (c.state == Child::State::kStarting) {
        const std::string before = c.address(), mbefore = c.metrics_address();
        if (CheckReady(c)) {
          c.failed_starts = 0;
          log::Info("child serving again", {{"child", c.name},
                                            {"address", c.address()},
                                            {"metrics", c.metrics_address()}});
          if (before != c.address() || mbefore != c.metrics_address()) {
            addresses_changed = true;
          }
        }
      }
    }
    if (addresses_changed) {
      for (auto& s : config.shards) {
        for (const auto& c : children) {
          if (c.name == s.id) s.address = c.address();
        }
      }
      for (const auto& c : children) {
        config.metrics[c.name] = c.metrics_address();
        if (c.name == "appsvc") config.appsvc = c.address();
        if (config.twins.count(c.name)) config.twins[c.name] = c.address();
      }
      if (auto s = util::WriteFile(absl::StrCat(dir, "/cluster.json"),
                                   config.ToJson());
          !s.ok()) {
        log::Error("cannot rewrite cluster.json", {{"error", s.ToString()}});
      }
    }
  }
}

absl::Status PublishOs(const pki::ClusterPki& pki, const std::string& mgmt,
                       const std::vector<v1::ImagePackage>& images,
                       uint32_t version) {
  auto tls = pki.TlsFor("operator");
  if (!tls.ok()) return tls.status();
  auto stub = v1::ManagementService::NewStub(rpc::NewChannel(mgmt, *tls));
  std::vector<std::string> ids;
  for (const auto& pkg : images) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::UploadImageRequest req;
    req.set_package(pkg.SerializeAsString());
    v1::Image image;
    grpc::Status st = stub->UploadImage(&ctx, req, &image);
    if (!st.ok()) {
      return absl::UnavailableError(
          absl::StrCat("upload OS image: ", st.error_message()));
    }
    ids.push_back(image.id());
  }
  for (v1::OsFeed feed : {v1::RETAIL, v1::RETAIL_EVAL}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::ReleaseOsRequest req;
    req.set_feed(feed);
    req.set_version(absl::StrCat(version));
    for (const auto& id : ids) req.add_image_ids(id);
    v1::OsRelease rel;
    grpc::Status st = stub->ReleaseOs(&ctx, req, &rel);
    // Restarting on an existing state dir: the release is already there.
    if (st.error_code() == grpc::StatusCode::ALREADY_EXISTS) continue;
    if (!st.ok()) {
      return absl::UnavailableError(
          absl::StrCat("release OS: ", st.error_message()));
    }
  }
  return absl::OkStatus();
}

// StartContoso bootstraps the Contoso scenario (contoso_bootstrap.h), then
// starts appsvc and the DW100 twins as supervised children and records
// their addresses in `config`.
absl::Status StartContoso(const pki::ClusterPki& pki,
                          cluster::ClusterConfig& config,
                          std::vector<Child>& children, const std::string& dir,
                          uint32_t os_version, int twins) {
  const std::string cluster_json = absl::StrCat(dir, "/cluster.json");
  // The factory and the twins read cluster.json: write what we have.
  if (auto s = util::WriteFile(cluster_json, config.ToJson()); !s.ok())
    return s;
  auto boot = contoso_bootstrap::Run(pki, config, os_version, twins);
  if (!boot.ok()) return boot.status();
  config.tenants[contoso_bootstrap::kTenant] = {boot->tenant_cert,
                                                boot->tenant_key};
  const absl::Duration timeout = absl::GetFlag(FLAGS_ready_timeout);
  const std::string appsvc_bin = FindBinary("appsvc", "appsvc");
  if (access(appsvc_bin.c_str(), X_OK) == 0) {
    Child a;
    a.name = "appsvc";
    a.binary = appsvc_bin;
    a.args = {absl::StrCat("--state_dir=", dir),
              absl::StrCat("--management=", config.management),
              absl::StrCat("--seed_file=", boot->seed_file),
              absl::StrCat("--sphere_cert=", boot->tenant_cert),
              absl::StrCat("--sphere_key=", boot->tenant_key),
              absl::StrCat("--web_port_file=", dir, "/run/appsvc.web_port"),
              absl::StrCat("--server_name=", config.server_name),
              absl::StrCat("--management_server_name=",
                           config.ServerName("management"))};
    children.push_back(std::move(a));
    if (auto s = Spawn(children.back(), dir); !s.ok()) return s;
    if (auto s = WaitReady(children.back(), timeout, dir); !s.ok()) return s;
    config.appsvc = children.back().address();
    // appsvc writes its web port file right after the gRPC one.
    int web = 0;
    const absl::Time web_deadline = absl::Now() + timeout;
    while (!ReadPort(absl::StrCat(dir, "/run/appsvc.web_port"), &web)) {
      if (absl::Now() > web_deadline) {
        return absl::DeadlineExceededError(
            "appsvc did not report its web port; see its log");
      }
      absl::SleepFor(absl::Milliseconds(20));  // readiness poll, not a test
    }
    config.appsvc_web = absl::StrCat("https://127.0.0.1:", web, "/");
  } else {
    std::cout << "note: the Contoso cloud is not built (" << appsvc_bin
              << "): the twins run without it" << std::endl;
  }
  if (auto s = util::WriteFile(cluster_json, config.ToJson()); !s.ok())
    return s;
  const size_t first = children.size();
  for (const auto& t : boot->twins) {
    Child c;
    c.name = t.name;
    c.binary = FindBinary("twin", "twin");
    c.args = {
        absl::StrCat("--cluster=", cluster_json),
        absl::StrCat("--name=", t.name),
        absl::StrCat("--time_scale=", absl::GetFlag(FLAGS_twin_time_scale)),
        absl::StrCat("--update_check_hours=",
                     absl::GetFlag(FLAGS_twin_update_check_hours)),
        "run"};
    children.push_back(std::move(c));
    if (auto s = Spawn(children.back(), dir); !s.ok()) return s;
  }
  for (size_t i = first; i < children.size(); ++i) {
    if (auto s = WaitReady(children[i], timeout, dir); !s.ok()) return s;
    config.twins[children[i].name] = children[i].address();
  }
  for (const auto& c : children) config.metrics[c.name] = c.metrics_address();
  std::cout << "contoso tenant=" << boot->tenant_id
            << " twins=" << boot->twins.size()
            << " appsvc=" << (config.appsvc.empty() ? "-" : config.appsvc)
            << " web=" << (config.appsvc_web.empty() ? "-" : config.appsvc_web)
            << std::endl;
  return absl::OkStatus();
}

// RestrictStateDir makes the state directory 0700 when this user owns it
// (it holds keys, databases and logs). A shared directory such as /tmp
// (sticky bit) or one owned by someone else is left alone, with a warning.
void RestrictStateDir(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || (st.st_mode & 0077) == 0) return;
  if (st.st_uid != geteuid() || (st.st_mode & S_ISVTX) != 0) {
    log::Warning("state directory is accessible to other users",
                 {{"dir", dir}, {"hint", "use a private directory (0700)"}});
    return;
  }
  if (chmod(dir.c_str(), 0700) != 0) {
    log::Warning("cannot restrict state directory",
                 {{"dir", dir}, {"error", strerror(errno)}});
  }
}

int Main() {
  std::string dir = absl::GetFlag(FLAGS_state_dir);
  if (dir.empty()) {
    std::cerr << "local_cluster: --state-dir is required\n";
    return 2;
  }
  if (dir[0] != '/') {
    char cwd[4096];
    const char* wd = getenv("BUILD_WORKING_DIRECTORY");
    dir = absl::StrCat(wd ? wd : getcwd(cwd, sizeof(cwd)), "/", dir);
  }
  log::SetComponent("local_cluster");
  for (const char* sub : {"/logs", "/run", "/images"}) {
    if (auto s = util::MakeDirs(absl::StrCat(dir, sub), 0700); !s.ok()) {
      std::cerr << "local_cluster: " << s.message() << "\n";
      return 1;
    }
  }
  RestrictStateDir(dir);
  pki::MasterKeySource master_key{absl::GetFlag(FLAGS_master_key_file),
                                  absl::GetFlag(FLAGS_master_key_env)};
  if (!master_key.file.empty() && master_key.file[0] != '/') {
    char cwd[4096];
    const char* wd = getenv("BUILD_WORKING_DIRECTORY");
    master_key.file =
        absl::StrCat(wd ? wd : getcwd(cwd, sizeof(cwd)), "/", master_key.file);
  }
  std::vector<std::string> key_flags;
  if (!master_key.file.empty()) {
    key_flags.push_back(absl::StrCat("--master_key_file=", master_key.file));
  }
  if (!master_key.env.empty()) {
    key_flags.push_back(absl::StrCat("--master_key_env=", master_key.env));
  }
  auto pki = pki::Bootstrap(dir, master_key);
  if (!pki.ok()) {
    std::cerr << "local_cluster: PKI bootstrap failed: " << pki.status()
              << "\n";
    return 1;
  }
  const uint32_t os_version = absl::GetFlag(FLAGS_os_version);
  auto built = osbuild::BuildOs(pki->image_signing_key, dir, os_version);
  if (!built.ok()) {
    std::cerr << "local_cluster: cannot build OS images: " << built.status()
              << "\n";
    return 1;
  }
  std::vector<v1::ImagePackage> images;
  for (const auto& b : *built) images.push_back(b.package);

  // Children hold threads (log pumps): keep them at stable addresses.
  // --catalog etcd: the etcd members live as long as this process (declared
  // before the children, so they stop after them).
  const bool use_etcd = absl::GetFlag(FLAGS_catalog) == "etcd";
  if (!use_etcd && absl::GetFlag(FLAGS_catalog) != "embedded") {
    std::cerr << "local_cluster: --catalog must be embedded or etcd\n";
    return 1;
  }
  EtcdCatalog etcd;
  if (use_etcd) {
    absl::StatusOr<EtcdCatalog> started = StartEtcdCatalog(
        dir, std::clamp(absl::GetFlag(FLAGS_etcd_members), 1, 7));
    if (!started.ok()) {
      std::cerr << "local_cluster: cannot start etcd: " << started.status()
                << "\n";
      return 1;
    }
    etcd = *std::move(started);
    // A multiple of the heartbeat with a floor (shard_lease_ttl.h).
    etcd.management_flags.push_back(absl::StrCat(
        "--shard_lease_ttl=",
        absl::FormatDuration(management::ShardLeaseTtl(
            absl::GetFlag(FLAGS_shard_heartbeat_interval)))));
  }
  const int replicas =
      use_etcd ? std::clamp(absl::GetFlag(FLAGS_management_replicas), 1, 5) : 1;
  std::vector<Child> children;
  children.reserve(replicas + 64 + 1 + contoso_bootstrap::kMaxTwins);
  auto fail = [&](const absl::Status& s) {
    std::cerr << "local_cluster: " << s.message() << "\n";
    StopAll(children);
    return 1;
  };
  {
    Child mgmt;
    mgmt.name = "management";
    mgmt.binary = FindBinary("securitysvc/management", "management");
    mgmt.args = {absl::StrCat("--state_dir=", dir)};
    if (absl::GetFlag(FLAGS_staged_rollout)) {
      mgmt.args.push_back("--staged_rollout");
    }
    if (!absl::GetFlag(FLAGS_rollout_soak).empty()) {
      mgmt.args.push_back(
          absl::StrCat("--rollout_soak=", absl::GetFlag(FLAGS_rollout_soak)));
    }
    mgmt.args.insert(mgmt.args.end(), key_flags.begin(), key_flags.end());
    if (!absl::GetFlag(FLAGS_watch_progress_interval).empty()) {
      mgmt.args.push_back(
          absl::StrCat("--watch_progress_interval=",
                       absl::GetFlag(FLAGS_watch_progress_interval)));
    }
    mgmt.args.insert(mgmt.args.end(), etcd.management_flags.begin(),
                     etcd.management_flags.end());
    children.push_back(std::move(mgmt));
  }
  if (auto s = Spawn(children.back(), dir); !s.ok()) return fail(s);
  if (auto s =
          WaitReady(children.back(), absl::GetFlag(FLAGS_ready_timeout), dir);
      !s.ok()) {
    return fail(s);
  }
  std::string mgmt_addr = children.back().address();
  if (auto s = PublishOs(*pki, mgmt_addr, images, os_version); !s.ok()) {
    return fail(s);
  }
  // More management replicas (--catalog etcd): clients get all of them as
  // one "ipv4:a,b" target and fail over between them.
  std::vector<std::string> replica_addrs = {mgmt_addr};
  for (int r = 1; r < replicas; ++r) {
    Child m;
    m.name = absl::StrCat("management-", r);
    m.binary = children.front().binary;
    m.args = children.front().args;
    children.push_back(std::move(m));
    if (auto s = Spawn(children.back(), dir); !s.ok()) return fail(s);
    if (auto s =
            WaitReady(children.back(), absl::GetFlag(FLAGS_ready_timeout), dir);
        !s.ok()) {
      return fail(s);
    }
    replica_addrs.push_back(children.back().address());
  }
  if (replicas > 1) {
    mgmt_addr = absl::StrCat("ipv4:", absl::StrJoin(replica_addrs, ","));
  }
  const size_t first_shard = children.size();

  cluster::ClusterConfig config;
  config.state_dir = dir;
  config.management = mgmt_addr;
  if (use_etcd) {
    config.management_replicas = replica_addrs;
    config.etcd = etcd.cluster->client_endpoints();
  }
  config.root_ca = pki->Path("root.pem");
  config.operator_cert = pki->Path("operator.pem");
  config.operator_key = pki->Path("operator.key");
  const std::string shard_bin = FindBinary("securitysvc", "shard");
  // Shards own their devices' records and there is no re-sharding yet: a
  // state dir that already holds more shards keeps running all of them.
  int shards = absl::GetFlag(FLAGS_shards);
  while (access(absl::StrCat(dir, "/shards/shard-", shards).c_str(), F_OK) ==
         0) {
    ++shards;
  }
  if (shards != absl::GetFlag(FLAGS_shards)) {
    std::cout << "note: " << dir << " already holds " << shards
              << " shards; starting all of them (re-sharding is not "
                 "supported)"
              << std::endl;
  }
  if (shards > 64) return fail(absl::InvalidArgumentError("at most 64 shards"));
  for (int i = 0; i < shards; ++i) {
    Child c;
    c.name = absl::StrCat("shard-", i);
    c.binary = shard_bin;
    c.args = {absl::StrCat("--state_dir=", dir),
              absl::StrCat("--shard_id=", c.name),
              absl::StrCat("--management=", mgmt_addr),
              absl::StrCat("--heartbeat_interval=",
                           absl::FormatDuration(
                               absl::GetFlag(FLAGS_shard_heartbeat_interval)))};
    c.args.insert(c.args.end(), key_flags.begin(), key_flags.end());
    if (!absl::GetFlag(FLAGS_max_catalog_staleness).empty()) {
      c.args.push_back(
          absl::StrCat("--max_catalog_staleness=",
                       absl::GetFlag(FLAGS_max_catalog_staleness)));
    }
    children.push_back(std::move(c));
    if (auto s = Spawn(children.back(), dir); !s.ok()) return fail(s);
  }
  for (size_t i = first_shard; i < children.size(); ++i) {
    if (auto s =
            WaitReady(children[i], absl::GetFlag(FLAGS_ready_timeout), dir);
        !s.ok()) {
      return fail(s);
    }
    config.shards.push_back({children[i].name, children[i].address()});
  }
  for (const auto& c : children) config.metrics[c.name] = c.metrics_address();
  // Tenant operator credentials issued earlier ('spherectl tenant
  // credential') survive a cluster restart.
  if (DIR* d = opendir(pki->Path("tenants").c_str())) {
    while (struct dirent* e = readdir(d)) {
      std::string file = e->d_name;
      if (!absl::EndsWith(file, ".pem")) continue;
      std::string name = file.substr(0, file.size() - 4);
      std::string base = absl::StrCat(pki->Path("tenants"), "/", name);
      if (access((base + ".key").c_str(), R_OK) != 0) continue;
      config.tenants[name] = {base + ".pem", base + ".key"};
    }
    closedir(d);
  }
  if (const int twins = absl::GetFlag(FLAGS_twins); twins > 0) {
    if (auto s = StartContoso(*pki, config, children, dir, os_version, twins);
        !s.ok()) {
      return fail(s);
    }
  }
  if (auto s =
          util::WriteFile(absl::StrCat(dir, "/cluster.json"), config.ToJson());
      !s.ok()) {
    return fail(s);
  }
  std::cout << "ready management=" << mgmt_addr
            << " shards=" << config.shards.size() << " cluster=" << dir
            << "/cluster.json" << std::endl;
  if (!absl::GetFlag(FLAGS_exit_when_ready)) {
    int sig = Supervise(children, config, dir);
    log::Info("stopping cluster", {{"signal", absl::StrCat(sig)}});
  }
  StopAll(children);
  unlink(absl::StrCat(dir, "/cluster.json").c_str());
  std::cout << "stopped" << std::endl;
  return 0;
}

}  // namespace
}  // namespace sphere

int main(int argc, char** argv) {
  sphere::rpc::InstallTerminationSignalMask();
  {
    // SIGCHLD stays pending for sigtimedwait (the supervisor reaps and
    // restarts dead children).
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, nullptr);
  }
  absl::SetProgramUsageMessage(
      "local_cluster --state-dir DIR [--shards N]: management + N shards");
  // Accept --state-dir as well as --state_dir.
  std::vector<std::string> fixed;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (absl::StartsWith(a, "--state-dir")) a.replace(0, 11, "--state_dir");
    if (absl::StartsWith(a, "--exit-when-ready")) {
      a.replace(0, 17, "--exit_when_ready");
    }
    if (absl::StartsWith(a, "--master-key-file")) {
      a.replace(0, 17, "--master_key_file");
    }
    if (absl::StartsWith(a, "--master-key-env")) {
      a.replace(0, 16, "--master_key_env");
    }
    if (absl::StartsWith(a, "--etcd-members"))
      a.replace(0, 14, "--etcd_members");
    if (absl::StartsWith(a, "--management-replicas")) {
      a.replace(0, 21, "--management_replicas");
    }
    fixed.push_back(a);
  }
  std::vector<char*> av;
  for (auto& a : fixed) av.push_back(a.data());
  absl::ParseCommandLine(av.size(), av.data());
  return sphere::Main();
}
