#include "tests/twin_run.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "tests/cluster_fixture.h"
#include "tests/twin_helpers.h"

namespace sphere::testing {

std::vector<std::string> TwinArgv(LocalCluster* cluster,
                                  const std::string& name,
                                  const std::vector<std::string>& flags,
                                  const std::string& command) {
  std::vector<std::string> argv = {BinaryPath("twin/twin"),
                                   "--cluster",
                                   cluster->cluster_file(),
                                   "--name",
                                   name,
                                   "--min_catalog_revision",
                                   absl::StrCat(CatalogRevision(cluster))};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.push_back(command);
  return argv;
}

TwinRun::~TwinRun() {
  if (pid_ > 0) Stop();
}

absl::Status TwinRun::Spawn(const std::vector<std::string>& argv) {
  if (pid_ > 0) return absl::FailedPreconditionError("a child is running");
  if (reader_.joinable()) reader_.join();
  auto child = SpawnPiped(argv);
  if (!child.ok()) return child.status();
  pid_ = child->pid;
  reaped_status_ = -1;
  {
    absl::MutexLock l(&mu_);
    out_.clear();
    eof_ = false;
  }
  reader_ = std::thread([this, fd = child->out_fd] {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
      absl::MutexLock l(&mu_);
      out_.append(buf, n);
    }
    close(fd);
    absl::MutexLock l(&mu_);
    eof_ = true;
  });
  return absl::OkStatus();
}

absl::Status TwinRun::Start(const std::vector<std::string>& argv) {
  if (auto s = Spawn(argv); !s.ok()) return s;
  if (!AwaitOutput("twin control serving", absl::Seconds(60))) {
    return absl::UnavailableError(absl::StrCat("twin run: ", output()));
  }
  return absl::OkStatus();
}

bool TwinRun::AwaitOutput(absl::string_view text, absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto ready = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return eof_ || absl::StrContains(out_, text);
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  return absl::StrContains(out_, text);
}

absl::StatusOr<std::unique_ptr<v1::TwinControl::Stub>> TwinRun::Control(
    const std::string& twin_dir) {
  auto port = util::ReadFile(twin_dir + "/control.port");
  if (!port.ok()) return port.status();
  auto cert = util::ReadFile(twin_dir + "/control.crt");
  if (!cert.ok()) return cert.status();
  rpc::TlsFiles tls;
  tls.ca_pem = *cert;
  return v1::TwinControl::NewStub(rpc::NewChannel(
      absl::StrCat("127.0.0.1:", absl::StripAsciiWhitespace(*port)), tls));
}

int TwinRun::End(int signal) {
  int status = reaped_status_;
  if (status == -1) {
    kill(pid_, signal);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return status;
}

int TwinRun::Stop() {
  if (pid_ <= 0) return -1;
  const int status = End(SIGTERM);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int TwinRun::Kill() {
  if (pid_ <= 0) return -1;
  const int status = End(SIGKILL);
  return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

bool TwinRun::Alive() {
  if (pid_ <= 0 || reaped_status_ != -1) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == 0) return true;
  reaped_status_ = status;
  return false;
}

std::string TwinRun::output() {
  absl::MutexLock l(&mu_);
  return out_;
}

}  // namespace sphere::testing
