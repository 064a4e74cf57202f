// Crash-durability test (in the spirit of RocksDB's db_crashtest): a child
// process writes synced keys and reports each acknowledged key on a pipe; we
// SIGKILL it after N acknowledgements, reopen the DB and check that every
// acknowledged key is present. Runs with and without encryption at rest.

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
#include "common/store/kill_loop.h"
#include "common/store/store.h"
#include "gtest/gtest.h"

namespace sphere::store {
namespace {

struct CrashResult {
  std::set<std::string> acked;
};

// RunWriterAndKill starts crash_writer, reads `n` acknowledged keys, SIGKILLs
// it (the shared kill-loop harness).
CrashResult RunWriterAndKill(const std::string& dir, int threads, int n,
                             const std::string& key) {
  CrashResult result;
  KillChild child{TestBinary("common/store/crash_writer"),
                  {dir, std::to_string(threads)},
                  {}};
  if (!key.empty()) {
    child.extra_env.push_back(
        absl::StrCat("SPHERE_STORE_KEY_HEX=", absl::BytesToHexString(key)));
  }
  absl::StatusOr<int> acked =
      store::RunAndKill(child, n, [&](absl::string_view line) {
        result.acked.insert(std::string(line));
        return true;
      });
  EXPECT_TRUE(acked.ok()) << acked.status();
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
  CrashResult first = RunWriterAndKill(dir, 1, 400, Key());
  CheckSurvivors(dir, Key(), first, 1);
  CrashResult second = RunWriterAndKill(dir, 1, 400, Key());
  CheckSurvivors(dir, Key(), second, 1);
}

TEST_P(CrashTest, ConcurrentWritersKilled) {
  std::string dir = Dir("concurrent");
  CrashResult crash = RunWriterAndKill(dir, 4, 1000, Key());
  CheckSurvivors(dir, Key(), crash, 4);
}

INSTANTIATE_TEST_SUITE_P(PlainAndEncrypted, CrashTest,
                         ::testing::Values(false, true), [](const auto& info) {
                           return info.param ? "Encrypted" : "Plain";
                         });

}  // namespace
}  // namespace sphere::store
