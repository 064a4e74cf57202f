// Durability of error ingest under kill -9 (in the spirit of RocksDB's
// db_crashtest): errors_crash_writer runs the shard's error core (encrypted
// RocksDB, group commit, ErrorStore) under upload load from several devices
// and prints each acknowledged batch; we SIGKILL it after a varying number
// of acknowledgements, reopen, and check that every acknowledged event is
// stored, exactly once, in every index. Repeated for CYCLES cycles on the
// same database (ERRORS_CRASH_CYCLES, default 20; the stress target runs
// 100). No sleeps: the kill point is a count of acknowledgements read.

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
#include "common/store/kill_loop.h"
#include "common/store/store.h"
#include "gtest/gtest.h"
#include "securitysvc/errors/error_store.h"

namespace sphere::errors {
namespace {

constexpr int kDevices = 6;
constexpr int kBatch = 20;
const std::string kKey = "0123456789abcdef0123456789abcdef";

// Acked: device -> acknowledged (first, last) sequence ranges.
using Acked = std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>>;

// RunWriterAndKill starts the writer, reads `n` acknowledgements ("<device>
// <first> <last>"), SIGKILLs it (the shared kill-loop harness).
int RunWriterAndKill(const std::string& dir, uint64_t first_seq, int n,
                     Acked* acked) {
  const store::KillChild child{
      store::TestBinary("securitysvc/errors/errors_crash_writer"),
      {dir, absl::StrCat(kDevices), absl::StrCat(kBatch),
       absl::StrCat(first_seq)},
      {absl::StrCat("SPHERE_STORE_KEY_HEX=", absl::BytesToHexString(kKey))}};
  absl::StatusOr<int> got =
      store::RunAndKill(child, n, [&](absl::string_view line) {
        std::vector<std::string> p = absl::StrSplit(line, ' ');
        uint64_t a = 0, b = 0;
        if (p.size() != 3 || !absl::SimpleAtoi(p[1], &a) ||
            !absl::SimpleAtoi(p[2], &b)) {
          return false;
        }
        (*acked)[p[0]].push_back({a, b});
        return true;
      });
  EXPECT_TRUE(got.ok()) << got.status();
  return got.ok() ? *got : 0;
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
  ASSERT_TRUE(
      ForEachStoredEvent(**db, [&](absl::string_view device, absl::string_view,
                                   const v1::ErrorEvent& e) {
        ++stored[{std::string(device), e.sequence()}];
      }).ok());
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
    ASSERT_EQ(count, 1) << "cycle " << cycle << ": event " << event.first << "/"
                        << event.second << " stored " << count << " times";
  }
  // One device index entry per stored batch, at least one issue entry.
  size_t counts[3] = {0, 0, 0};
  const char* cfs[3] = {kByDevice, kByTenant, kByIssue};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE((*db)
                    ->Scan(cfs[i], "",
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
    RunWriterAndKill(dir, first_seq, n, &acked);
    Check(dir, acked, cycle);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace sphere::errors
