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

namespace sphere::testing {

TwinRun::~TwinRun() {
  if (pid_ > 0) Stop();
}

absl::Status TwinRun::Start(const std::vector<std::string>& argv) {
  auto child = SpawnPiped(argv);
  if (!child.ok()) return child.status();
  pid_ = child->pid;
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
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](TwinRun* t) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                             return t->eof_ ||
                                    absl::StrContains(t->out_,
                                                      "twin control serving");
                           },
                           this),
                       absl::Seconds(60));
  if (!absl::StrContains(out_, "twin control serving")) {
    return absl::UnavailableError(absl::StrCat("twin run: ", out_));
  }
  return absl::OkStatus();
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

int TwinRun::Stop() {
  if (pid_ <= 0) return -1;
  int status = reaped_status_;
  if (status == -1) {
    kill(pid_, SIGTERM);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
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
