// Crash-durability test (in the spirit of RocksDB's db_crashtest): a child
// process writes synced keys and reports each acknowledged key on a pipe; we
// SIGKILL it after N acknowledgements, reopen the DB and check that every
// acknowledged key is present. Runs with and without encryption at rest.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/store/store.h"
#include "gtest/gtest.h"

extern char** environ;

namespace sphere::store {
namespace {

std::string WriterPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/", ws ? ws : "sphere",
                      "/common/store/crash_writer");
}

struct CrashResult {
  std::set<std::string> acked;
};

// RunAndKill starts crash_writer, reads `n` acknowledged keys, SIGKILLs it.
CrashResult RunAndKill(const std::string& dir, int threads, int n,
                       const std::string& key) {
  CrashResult result;
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);

  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  if (!key.empty()) {
    env_storage.push_back(
        absl::StrCat("SPHERE_STORE_KEY_HEX=", absl::BytesToHexString(key)));
  }
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  std::string path = WriterPath();
  std::string threads_arg = std::to_string(threads);
  std::vector<char*> argv = {path.data(), const_cast<char*>(dir.c_str()),
                             threads_arg.data(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(),
                       envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  EXPECT_EQ(rc, 0) << "spawn " << path;
  if (rc != 0) {
    close(fds[0]);
    return result;
  }

  FILE* in = fdopen(fds[0], "r");
  char* line = nullptr;
  size_t cap = 0;
  while (static_cast<int>(result.acked.size()) < n) {
    ssize_t len = getline(&line, &cap, in);
    if (len <= 0) break;  // writer died: reported below
    if (line[len - 1] == '\n') line[len - 1] = '\0';
    result.acked.insert(line);
  }
  free(line);
  kill(pid, SIGKILL);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  fclose(in);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "writer exited early (status " << status << "); see its stderr";
  EXPECT_EQ(static_cast<int>(result.acked.size()), n);
  return result;
}

void CheckSurvivors(const std::string& dir, const std::string& key,
                    const CrashResult& crash, int threads) {
  RocksOptions options;
  options.data_key = key;
  auto store = OpenRocksStore(dir, {"acks"}, options);
  ASSERT_TRUE(store.ok()) << store.status();
  for (const std::string& k : crash.acked) {
    auto v = (*store)->Get("acks", k);
    ASSERT_TRUE(v.ok()) << "acknowledged key " << k << " lost: " << v.status();
    EXPECT_EQ(*v, "value-of-" + k);
  }
  // Each writer's recovered keys are a gap-free prefix of its sequence
  // (point-in-time recovery never leaves holes).
  std::map<std::string, int64_t> next;
  int64_t recovered = 0;
  ASSERT_TRUE((*store)
                  ->Scan("acks", "",
                         [&](absl::string_view k, absl::string_view) {
                           std::vector<std::string> parts =
                               absl::StrSplit(k, '/');
                           int64_t seq = -1;
                           EXPECT_EQ(parts.size(), 2u);
                           EXPECT_TRUE(absl::SimpleAtoi(parts[1], &seq));
                           EXPECT_EQ(seq, next[parts[0]]) << k;
                           next[parts[0]] = seq + 1;
                           ++recovered;
                           return true;
                         })
                  .ok());
  EXPECT_GE(recovered, static_cast<int64_t>(crash.acked.size()));
  EXPECT_LE(static_cast<int>(next.size()), threads);
}

class CrashTest : public ::testing::TestWithParam<bool> {
 protected:
  std::string Key() const {
    return GetParam() ? std::string("0123456789abcdef0123456789abcdef") : "";
  }
  std::string Dir(absl::string_view name) const {
    const char* tmp = std::getenv("TEST_TMPDIR");
    std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/crash_", name, "_",
                                   GetParam() ? "enc" : "plain");
    std::filesystem::remove_all(dir);
    return dir;
  }
};

TEST_P(CrashTest, SequentialWriterKilled) {
  std::string dir = Dir("seq");
  // Two rounds: the second crash happens on top of recovered state.
  CrashResult first = RunAndKill(dir, 1, 400, Key());
  CheckSurvivors(dir, Key(), first, 1);
  CrashResult second = RunAndKill(dir, 1, 400, Key());
  CheckSurvivors(dir, Key(), second, 1);
}

TEST_P(CrashTest, ConcurrentWritersKilled) {
  std::string dir = Dir("concurrent");
  CrashResult crash = RunAndKill(dir, 4, 1000, Key());
  CheckSurvivors(dir, Key(), crash, 4);
}

INSTANTIATE_TEST_SUITE_P(PlainAndEncrypted, CrashTest,
                         ::testing::Values(false, true), [](const auto& info) {
                           return info.param ? "Encrypted" : "Plain";
                         });

}  // namespace
}  // namespace sphere::store
