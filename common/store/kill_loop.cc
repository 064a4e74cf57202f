#include "common/store/kill_loop.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace sphere::store {

std::string TestBinary(absl::string_view workspace_path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) return std::string(workspace_path);
  return absl::StrCat(srcdir, "/", ws ? ws : "sphere", "/", workspace_path);
}

absl::StatusOr<int> RunAndKill(
    const KillChild& child, int kill_after,
    const std::function<bool(absl::string_view line)>& on_line) {
  int fds[2];
  if (pipe(fds) != 0) {
    return absl::InternalError(
        absl::StrCat("kill loop: pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);

  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (const std::string& e : child.extra_env) env_storage.push_back(e);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string path = child.path;
  std::vector<std::string> arg_storage = child.args;
  std::vector<char*> argv = {path.data()};
  for (std::string& a : arg_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = 0;
  const int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(),
                             envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return absl::InternalError(absl::StrCat("kill loop: cannot spawn ", path,
                                            ": ", std::strerror(rc)));
  }

  FILE* in = fdopen(fds[0], "r");
  char* line = nullptr;
  size_t cap = 0;
  int counted = 0;
  while (counted < kill_after) {
    ssize_t len = getline(&line, &cap, in);
    if (len <= 0) break;  // the child died or closed stdout: reported below
    if (line[len - 1] == '\n') --len;
    if (on_line(absl::string_view(line, static_cast<size_t>(len)))) ++counted;
  }
  free(line);
  kill(pid, SIGKILL);
  int status = 0;
  const pid_t reaped = waitpid(pid, &status, 0);
  fclose(in);
  if (reaped != pid) {
    return absl::InternalError(
        absl::StrCat("kill loop: waitpid(", pid, "): ", std::strerror(errno)));
  }
  if (counted < kill_after || !WIFSIGNALED(status) ||
      WTERMSIG(status) != SIGKILL) {
    return absl::AbortedError(absl::StrCat(
        "kill loop: ", path, " ended before it was killed (wait status ",
        status, ") after ", counted, " of ", kill_after,
        " acknowledgements; see its stderr"));
  }
  return counted;
}

}  // namespace sphere::store
