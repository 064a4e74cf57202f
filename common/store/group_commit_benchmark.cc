// Group commit vs single synced writes, same batches, same run.
//
//   bazel run -c opt //common/store:group_commit_benchmark
//
// Every thread writes batches of `range(0)` puts of 200-byte values and
// waits for each to be acknowledged (durable). BM_SyncedWrite calls
// Store::Write (sync=true) directly: the floor (RocksDB's own writer queue
// already merges concurrent writers). BM_GroupCommit submits to a
// GroupCommitWriter and waits for the callback. BM_GroupCommitPipelined keeps
// 64 batches in flight from one thread, as a gRPC server's callback threads
// do. DBs live under $STORE_BENCH_DIR, else $TEST_TMPDIR, else /tmp.

#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "benchmark/benchmark.h"
#include "common/store/group_commit.h"
#include "common/store/store.h"

namespace sphere::store {
namespace {

constexpr int kValueSize = 200;

struct Fixture {
  std::string root;
  std::unique_ptr<Store> store;
  std::unique_ptr<GroupCommitWriter> writer;
};

Fixture& Get() {
  static Fixture* f = [] {
    auto* f = new Fixture();
    const char* base = std::getenv("STORE_BENCH_DIR");
    if (base == nullptr) base = std::getenv("TEST_TMPDIR");
    std::string tmpl =
        absl::StrCat(base ? base : "/tmp", "/group_commit_bench.XXXXXX");
    f->root = mkdtemp(tmpl.data());
    auto s = OpenRocksStore(f->root + "/db", {"bench"});
    if (!s.ok()) {
      std::fprintf(stderr, "open: %s\n", s.status().ToString().c_str());
      std::abort();
    }
    f->store = std::move(*s);
    f->writer = std::make_unique<GroupCommitWriter>(f->store.get());
    std::atexit([] {
      Fixture& x = Get();
      x.writer.reset();
      x.store.reset();
      std::filesystem::remove_all(x.root);
    });
    return f;
  }();
  return *f;
}

std::atomic<int64_t> next_key{0};

WriteBatch MakeBatch(int puts) {
  static const std::string value(kValueSize, 'v');
  WriteBatch b;
  for (int i = 0; i < puts; ++i) {
    b.Put("bench", absl::StrFormat("k/%014d", next_key.fetch_add(1)), value);
  }
  return b;
}

void BM_SyncedWrite(benchmark::State& state) {
  Store* store = Get().store.get();
  for (auto _ : state) {
    absl::Status s = store->Write(MakeBatch(state.range(0)));
    if (!s.ok()) state.SkipWithError(s.ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_GroupCommit(benchmark::State& state) {
  GroupCommitWriter* writer = Get().writer.get();
  for (auto _ : state) {
    absl::Notification done;
    absl::Status got;
    absl::Status q =
        writer->Submit(MakeBatch(state.range(0)), [&](const absl::Status& s) {
          got = s;
          done.Notify();
        });
    if (!q.ok()) {
      state.SkipWithError(q.ToString().c_str());
      break;
    }
    done.WaitForNotification();
    if (!got.ok()) state.SkipWithError(got.ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

// One thread, a window of 64 batches in flight; each iteration is one batch.
void BM_GroupCommitPipelined(benchmark::State& state) {
  GroupCommitWriter* writer = Get().writer.get();
  constexpr int kWindow = 64;
  absl::Mutex mu;
  int in_flight = 0;
  int64_t errors = 0;
  for (auto _ : state) {
    {
      absl::MutexLock l(&mu);
      mu.Await(absl::Condition(
          +[](int* n) { return *n < kWindow; }, &in_flight));
      ++in_flight;
    }
    absl::Status q =
        writer->Submit(MakeBatch(state.range(0)), [&](const absl::Status& s) {
          absl::MutexLock l(&mu);
          --in_flight;
          if (!s.ok()) ++errors;
        });
    if (!q.ok()) {
      absl::MutexLock l(&mu);
      --in_flight;
      ++errors;
    }
  }
  absl::MutexLock l(&mu);
  mu.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &in_flight));
  if (errors > 0) state.SkipWithError("writes failed");
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

BENCHMARK(BM_SyncedWrite)
    ->Arg(1)
    ->Arg(100)
    ->Threads(1)
    ->Threads(16)
    ->UseRealTime();
BENCHMARK(BM_GroupCommit)
    ->Arg(1)
    ->Arg(100)
    ->Threads(1)
    ->Threads(16)
    ->UseRealTime();
BENCHMARK(BM_GroupCommitPipelined)->Arg(1)->Arg(100)->UseRealTime();

}  // namespace
}  // namespace sphere::store

BENCHMARK_MAIN();
