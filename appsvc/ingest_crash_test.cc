// Durability of telemetry ingest (issue 13, "acknowledged once durable"): a
// child runs appsvc's core on RocksDB with concurrent devices and prints each
// batch only after ReportTelemetry acknowledged it; we SIGKILL it after N
// acknowledgements (several rounds), reopen the DB and check that every
// acknowledged sample is there, that each device record agrees with its
// samples (record and samples commit atomically), and that re-sending an
// acknowledged batch stores nothing twice.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "appsvc/contoso_cloud.h"
#include "appsvc/durable_writer.h"
#include "common/store/store.h"
#include "common/util/clock.h"

extern char** environ;

namespace contoso::appsvc {
std::string CrashDeviceId(int i);  // ingest_crash_writer.cc's scheme
namespace {

constexpr int kThreads = 4;
constexpr int kBatch = 50;

std::string WriterPath() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/", ws ? ws : "sphere",
                      "/appsvc/ingest_crash_writer");
}

// RunAndKill: start the writer on `db`, read `acks` acknowledgements, SIGKILL
// it; returns device index -> highest acknowledged sequence.
std::map<int, uint64_t> RunAndKill(const std::string& db, int acks) {
  std::map<int, uint64_t> acked;
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  std::string path = WriterPath();
  std::string threads = absl::StrCat(kThreads), batch = absl::StrCat(kBatch);
  std::string db_arg = db;
  char* argv[] = {path.data(), db_arg.data(), threads.data(), batch.data(),
                  nullptr};
  pid_t pid;
  EXPECT_EQ(posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  FILE* in = fdopen(fds[0], "r");
  char line[128];
  int seen = 0;
  // Record parses one "<device> <sequence>" acknowledgement line.
  auto record = [&acked](const char* text) {
    std::vector<std::string> parts = absl::StrSplit(text, ' ');
    int dev = 0;
    uint64_t seq = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &dev) ||
        !absl::SimpleAtoi(absl::StripAsciiWhitespace(parts[1]), &seq)) {
      return false;
    }
    acked[dev] = std::max(acked[dev], seq);
    return true;
  };
  while (seen < acks && fgets(line, sizeof line, in) != nullptr) {
    if (record(line)) ++seen;
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  // Acknowledgements printed before the kill but not yet read count too.
  while (fgets(line, sizeof line, in) != nullptr) record(line);
  fclose(in);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "writer exited by itself: " << status;
  EXPECT_EQ(seen, acks) << "writer stopped early";
  return acked;
}

TEST(IngestCrashTest, Fault_KillDuringIngestLosesNoAcknowledgedSample) {
  const std::string db = absl::StrCat(
      std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp",
      "/ingest-crash-db");
  std::map<int, uint64_t> total;
  for (int round = 0; round < 3; ++round) {
    std::map<int, uint64_t> acked = RunAndKill(db, 40 + 30 * round);
    auto store = sphere::store::OpenRocksStore(db, ColumnFamilies());
    ASSERT_TRUE(store.ok()) << store.status();
    sphere::store::GroupCommitWriter group(store->get(), {"appsvc"});
    SharedGroupCommit writer(&group);
    ContosoCloud cloud(store->get(), &writer, sphere::Clock::Real());
    for (int d = 0; d < kThreads; ++d) {
      const std::string dev = CrashDeviceId(d);
      auto rec = cloud.GetDeviceRecord(dev);
      ASSERT_TRUE(rec.ok()) << rec.status();
      auto count = cloud.CountSamples(dev);
      ASSERT_TRUE(count.ok());
      // The writer restarts at sequence 1 each round (re-sending what is
      // stored): the device's samples are 1..max_sequence, no gaps, and the
      // record agrees with them.
      EXPECT_GE(rec->max_sequence(), acked[d]) << "round " << round;
      EXPECT_EQ(*count, rec->max_sequence()) << "round " << round;
      EXPECT_EQ(rec->samples_stored(), *count) << "round " << round;
      total[d] = std::max(total[d], acked[d]);
      // Re-sending the last acknowledged batch stores nothing new.
      if (acked[d] >= kBatch) {
        v1::ReportTelemetryRequest req;
        for (uint64_t s = acked[d] - kBatch + 1; s <= acked[d]; ++s) {
          auto* t = req.add_samples();
          t->set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
          t->set_cycle_state(v1::Telemetry::DRYING);
          t->set_sequence(s);
        }
        auto r = cloud.ReportTelemetry(dev, req);
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(r->accepted(), 0u);
        EXPECT_EQ(r->duplicates(), static_cast<uint32_t>(kBatch));
      }
    }
  }
  for (int d = 0; d < kThreads; ++d) EXPECT_GT(total[d], 0u) << d;
}

}  // namespace
}  // namespace contoso::appsvc
