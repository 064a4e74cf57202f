// Durability of error ingest under kill -9 (in the spirit of RocksDB's
// db_crashtest): errors_crash_writer runs the shard's error core (encrypted
// RocksDB, group commit, ErrorStore) under upload load from several devices
// and prints each acknowledged batch; we SIGKILL it after a varying number
// of acknowledgements, reopen, and check that every acknowledged event is
// stored, exactly once, in every index. Repeated for CYCLES cycles on the
// same database (ERRORS_CRASH_CYCLES, default 20; the stress target runs
// 100). No sleeps: the kill point is a count of acknowledgements read.

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
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/store/store.h"
#include "gtest/gtest.h"
#include "securitysvc/errors/error_store.h"

extern char** environ;

namespace sphere::errors {
namespace {

constexpr int kDevices = 6;
constexpr int kBatch = 20;
const std::string kKey = "0123456789abcdef0123456789abcdef";

std::string WriterPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/", ws ? ws : "sphere",
                      "/securitysvc/errors/errors_crash_writer");
}

// Acked: device -> acknowledged (first, last) sequence ranges.
using Acked = std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>>;

// RunAndKill starts the writer, reads `n` acknowledgements, SIGKILLs it.
int RunAndKill(const std::string& dir, uint64_t first_seq, int n,
               Acked* acked) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  env_storage.push_back(
      absl::StrCat("SPHERE_STORE_KEY_HEX=", absl::BytesToHexString(kKey)));
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string path = WriterPath();
  std::string devices = absl::StrCat(kDevices), batch = absl::StrCat(kBatch),
              first = absl::StrCat(first_seq);
  std::vector<char*> argv = {path.data(), const_cast<char*>(dir.c_str()),
                             devices.data(), batch.data(), first.data(),
                             nullptr};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(),
                       envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  EXPECT_EQ(rc, 0) << "spawn " << path;
  if (rc != 0) {
    close(fds[0]);
    return 0;
  }
  FILE* in = fdopen(fds[0], "r");
  char* line = nullptr;
  size_t cap = 0;
  int got = 0;
  while (got < n) {
    ssize_t len = getline(&line, &cap, in);
    if (len <= 0) break;  // writer died: reported below
    std::vector<std::string> p = absl::StrSplit(
        absl::string_view(line, len > 0 && line[len - 1] == '\n' ? len - 1 : len),
        ' ');
    uint64_t a = 0, b = 0;
    if (p.size() == 3 && absl::SimpleAtoi(p[1], &a) &&
        absl::SimpleAtoi(p[2], &b)) {
      (*acked)[p[0]].push_back({a, b});
      ++got;
    }
  }
  free(line);
  kill(pid, SIGKILL);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  fclose(in);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "writer exited early (status " << status << "); see its stderr";
  EXPECT_EQ(got, n);
  return got;
}

// Check: every acknowledged event is in errors_by_device; each index holds
// the same number of events (nothing stored twice).
void Check(const std::string& dir, const Acked& acked, int cycle) {
  store::RocksOptions options;
  options.data_key = kKey;
  auto db = store::OpenRocksStore(dir, ColumnFamilies(), options);
  ASSERT_TRUE(db.ok()) << db.status();
  // Every stored event, counted (a duplicate stored twice would count 2).
  std::map<std::pair<std::string, uint64_t>, int> stored;
  ASSERT_TRUE(ForEachStoredEvent(**db,
                                 [&](absl::string_view device,
                                     absl::string_view,
                                     const v1::ErrorEvent& e) {
                                   ++stored[{std::string(device),
                                             e.sequence()}];
                                 })
                  .ok());
  int64_t checked = 0;
  for (const auto& [device, ranges] : acked) {
    for (const auto& [a, b] : ranges) {
      for (uint64_t s = a; s <= b; ++s) {
        auto it = stored.find({device, s});
        ASSERT_TRUE(it != stored.end())
            << "cycle " << cycle << ": acknowledged event " << device << "/"
            << s << " lost";
        ++checked;
      }
    }
  }
  for (const auto& [event, count] : stored) {
    ASSERT_EQ(count, 1) << "cycle " << cycle << ": event " << event.first
                        << "/" << event.second << " stored " << count
                        << " times";
  }
  // One device index entry per stored batch, at least one issue entry.
  size_t counts[3] = {0, 0, 0};
  const char* cfs[3] = {kByDevice, kByTenant, kByIssue};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*db)->Scan(cfs[i], "",
                            [&](absl::string_view, absl::string_view) {
                              ++counts[i];
                              return true;
                            })
                    .ok());
  }
  EXPECT_EQ(counts[0], counts[1]) << "cycle " << cycle;
  EXPECT_GE(counts[2], counts[1]) << "cycle " << cycle;
  EXPECT_GE(static_cast<int64_t>(stored.size()), checked);
}

TEST(ErrorsCrashTest, Fault_KillNineInALoopLosesNoAcknowledgedEvent) {
  int cycles = 20;
  if (const char* c = std::getenv("ERRORS_CRASH_CYCLES")) {
    ASSERT_TRUE(absl::SimpleAtoi(c, &cycles));
  }
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/errors_crash");
  std::filesystem::remove_all(dir);
  Acked acked;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    // Fresh sequences per cycle; duplicates come from the writer's resends.
    const uint64_t first_seq = 1 + static_cast<uint64_t>(cycle) * 100000;
    const int n = 3 + (cycle * 37) % 30;  // vary the kill point
    RunAndKill(dir, first_seq, n, &acked);
    Check(dir, acked, cycle);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace sphere::errors
