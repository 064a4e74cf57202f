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
// Ctrl-C or SIGTERM stops every child gracefully. With --exit-when-ready it detaches nothing:
// it stops the cluster again right after becoming ready (smoke test).
//
// The cluster master key is DIR/pki/master.key by default (zero setup);
// --master-key-file PATH keeps it elsewhere (created there, 0600, if absent)
// and --master-key-env NAME takes it from an environment variable (64 hex
// digits); children get the same flag. DIR and everything under it that
// holds state is 0700. See docs/threat-model.md.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/cluster/cluster_config.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "protos/management.grpc.pb.h"
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

namespace sphere {
namespace {

struct Child {
  std::string name;
  pid_t pid = -1;
  std::string port_file;
  int port = 0;
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

absl::StatusOr<Child> Spawn(const std::string& name, const std::string& binary,
                            std::vector<std::string> args,
                            const std::string& state_dir) {
  Child c;
  c.name = name;
  c.port_file = absl::StrCat(state_dir, "/run/", name, ".port");
  unlink(c.port_file.c_str());
  args.push_back(absl::StrCat("--port_file=", c.port_file));
  std::string log_path = absl::StrCat(state_dir, "/logs/", name, ".log");
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    sigset_t set;
    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, nullptr);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  c.pid = pid;
  if (auto s = rpc::WriteFile(absl::StrCat(state_dir, "/run/", name, ".pid"),
                              absl::StrCat(pid, "\n"));
      !s.ok()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return s;
  }
  return c;
}

// WaitReady waits for the child's port file; fails if the child exits.
absl::Status WaitReady(Child& c, absl::Duration timeout,
                       const std::string& state_dir) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status;
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.pid = -1;
      return absl::UnavailableError(absl::StrCat(
          c.name, " exited during startup; see ", state_dir, "/logs/", c.name,
          ".log"));
    }
    auto text = rpc::ReadFile(c.port_file);
    if (text.ok() &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &c.port)) {
      return absl::OkStatus();
    }
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
    if (auto s = rpc::MakeDirs(absl::StrCat(dir, sub), 0700); !s.ok()) {
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
    std::cerr << "local_cluster: PKI bootstrap failed: " << pki.status() << "\n";
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

  std::vector<Child> children;
  auto fail = [&](const absl::Status& s) {
    std::cerr << "local_cluster: " << s.message() << "\n";
    StopAll(children);
    return 1;
  };
  // WithKeyFlags: the children find the master key where we did.
  auto WithKeyFlags = [&key_flags](std::vector<std::string> args) {
    args.insert(args.end(), key_flags.begin(), key_flags.end());
    return args;
  };
  auto mgmt = Spawn(
      "management", FindBinary("securitysvc/management", "management"),
      WithKeyFlags({absl::StrCat("--state_dir=", dir), "--port=0"}), dir);
  if (!mgmt.ok()) return fail(mgmt.status());
  children.push_back(*mgmt);
  if (auto s = WaitReady(children.back(), absl::GetFlag(FLAGS_ready_timeout),
                         dir);
      !s.ok()) {
    return fail(s);
  }
  std::string mgmt_addr = absl::StrCat("127.0.0.1:", children.back().port);
  if (auto s = PublishOs(*pki, mgmt_addr, images, os_version); !s.ok()) {
    return fail(s);
  }

  cluster::ClusterConfig config;
  config.state_dir = dir;
  config.management = mgmt_addr;
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
  for (int i = 0; i < shards; ++i) {
    std::string id = absl::StrCat("shard-", i);
    auto c = Spawn(id, shard_bin,
                   WithKeyFlags({absl::StrCat("--state_dir=", dir),
                    absl::StrCat("--shard_id=", id),
                    absl::StrCat("--management=", mgmt_addr),
                    absl::StrCat("--heartbeat_interval=",
                                 absl::FormatDuration(absl::GetFlag(
                                     FLAGS_shard_heartbeat_interval))),
                    "--port=0"}),
                   dir);
    if (!c.ok()) return fail(c.status());
    children.push_back(*c);
  }
  for (size_t i = 1; i < children.size(); ++i) {
    if (auto s = WaitReady(children[i], absl::GetFlag(FLAGS_ready_timeout),
                           dir);
        !s.ok()) {
      return fail(s);
    }
    config.shards.push_back({children[i].name,
                             absl::StrCat("127.0.0.1:", children[i].port)});
  }
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
  if (auto s = rpc::WriteFile(absl::StrCat(dir, "/cluster.json"),
                              config.ToJson());
      !s.ok()) {
    return fail(s);
  }
  std::cout << "ready management=" << mgmt_addr
            << " shards=" << config.shards.size() << " cluster=" << dir
            << "/cluster.json" << std::endl;
  int exit_code = 0;
  if (!absl::GetFlag(FLAGS_exit_when_ready)) {
    // Run until Ctrl-C/SIGTERM, or until a child dies unexpectedly (then
    // stop the rest and fail: a cluster with a dead shard is not healthy).
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    bool running = true;
    while (running) {
      int sig = 0;
      sigwait(&set, &sig);
      if (sig != SIGCHLD) {
        log::Info("stopping cluster", {{"signal", absl::StrCat(sig)}});
        break;
      }
      for (auto& c : children) {
        int status = 0;
        if (c.pid > 0 && waitpid(c.pid, &status, WNOHANG) == c.pid) {
          c.pid = -1;
          std::string how =
              WIFSIGNALED(status)
                  ? absl::StrCat("killed by signal ", WTERMSIG(status))
                  : absl::StrCat("exited with status ", WEXITSTATUS(status));
          std::cerr << "local_cluster: " << c.name << " " << how
                    << " unexpectedly; stopping the cluster (see " << dir
                    << "/logs/" << c.name << ".log)" << std::endl;
          exit_code = 1;
          running = false;
        }
      }
    }
  }
  StopAll(children);
  unlink(absl::StrCat(dir, "/cluster.json").c_str());
  std::cout << "stopped" << std::endl;
  return exit_code;
}

}  // namespace
}  // namespace sphere

int main(int argc, char** argv) {
  sphere::rpc::InstallTerminationSignalMask();
  {
    // SIGCHLD stays pending for sigwait (a dead child stops the cluster).
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
    fixed.push_back(a);
  }
  std::vector<char*> av;
  for (auto& a : fixed) av.push_back(a.data());
  absl::ParseCommandLine(av.size(), av.data());
  return sphere::Main();
}
