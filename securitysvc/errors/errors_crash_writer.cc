// errors_crash_writer: child process of errors_crash_test. Runs the error
// reporting core as a shard does (encrypted RocksStore, GroupCommitWriter,
// ErrorStore) under upload load: `devices` threads, each one device
// uploading batches of `batch` events with rising sequences from `first_seq`,
// every third batch sent twice (the retry of a lost answer). After a batch is
// acknowledged it prints "<device> <first seq> <last seq>" on stdout (one
// write(2) per line). The test SIGKILLs it and checks every acknowledged
// event survived, stored once.
//
// Usage: errors_crash_writer <db path> <devices> <batch> <first_seq>
// (data key hex in SPHERE_STORE_KEY_HEX)

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/store/group_commit.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "securitysvc/errors/error_store.h"

int main(int argc, char** argv) {
  using namespace sphere;
  if (argc != 5) {
    std::fprintf(stderr,
                 "usage: errors_crash_writer <db> <devices> <batch> "
                 "<first_seq>\n");
    return 2;
  }
  store::RocksOptions options;
  if (const char* hex = std::getenv("SPHERE_STORE_KEY_HEX")) {
    options.data_key = absl::HexStringToBytes(hex);
  }
  auto db = store::OpenRocksStore(argv[1], errors::ColumnFamilies(), options);
  if (!db.ok()) {
    std::fprintf(stderr, "errors_crash_writer: %s\n",
                 db.status().ToString().c_str());
    return 1;
  }
  const int devices = std::atoi(argv[2]);
  const int batch = std::atoi(argv[3]);
  const uint64_t first_seq = std::strtoull(argv[4], nullptr, 10);
  // Two group-commit writers (ErrorReportingPlugin::Options::writers > 1):
  // the kill loop covers the multi-writer path; one writer is its special
  // case.
  store::GroupCommitWriter writer_a(db->get()), writer_b(db->get());
  // No per-device quota: each thread is one device uploading as fast as the
  // store acknowledges (this is a durability test, not a quota test).
  errors::ErrorStoreOptions unlimited;
  unlimited.device_events_per_second = 0;
  unlimited.device_bytes_per_second = 0;
  errors::ErrorStore errors(db->get(), {&writer_a, &writer_b}, Clock::Real(),
                            unlimited);
  std::vector<std::thread> threads;
  for (int d = 0; d < devices; ++d) {
    threads.emplace_back([&, d] {
      const std::string device = absl::StrFormat("%064x", d + 1);
      const std::string tenant = absl::StrCat("tenant-", d % 2);
      uint64_t seq = first_seq;
      for (int64_t n = 0;; ++n) {
        v1::UploadErrorsRequest req;
        for (int i = 0; i < batch; ++i) {
          v1::ErrorEvent* e = req.add_events();
          e->set_sequence(seq + i);
          e->set_kind(v1::ErrorEvent::APP_CRASH);
          e->set_component("dw100-app");
          e->set_component_version("1.0");
          e->set_exit_code(static_cast<int>((seq + i) % 4));
          e->set_detail("crash under load");
          e->set_time_unix_ms(1767225600000 + static_cast<int64_t>(seq + i));
        }
        for (int attempt = 0; attempt < (n % 3 == 0 ? 2 : 1); ++attempt) {
          absl::Notification done;
          absl::Status status;
          errors.Ingest(device, tenant, req,
                        [&](absl::StatusOr<v1::UploadErrorsResponse> r) {
                          status = r.status();
                          done.Notify();
                        });
          done.WaitForNotification();
          if (absl::IsResourceExhausted(status)) {
            --attempt;  // queue full: retry (bounded by the queue draining)
            continue;
          }
          if (!status.ok()) {
            std::fprintf(stderr, "errors_crash_writer: %s\n",
                         status.ToString().c_str());
            std::_Exit(1);
          }
        }
        std::string line =
            absl::StrCat(device, " ", seq, " ", seq + batch - 1, "\n");
        if (write(STDOUT_FILENO, line.data(), line.size()) !=
            static_cast<ssize_t>(line.size())) {
          std::_Exit(1);  // the reader went away
        }
        seq += batch;
      }
    });
  }
  for (auto& t : threads) t.join();
  return 0;
}
