// crash_writer: child process for crash_test. Opens a RocksStore at argv[1]
// and, from argv[2] threads, writes sequential keys "w<thread>/<seq>" with
// synced writes forever, printing each key to stdout only after Write has
// acknowledged it. The test SIGKILLs it and checks every printed key survived.
//
// Usage: crash_writer <db path> <threads> [data key hex via
// SPHERE_STORE_KEY_HEX]

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/store/store.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: crash_writer <db path> <threads>\n");
    return 2;
  }
  sphere::store::RocksOptions options;
  if (const char* hex = std::getenv("SPHERE_STORE_KEY_HEX")) {
    options.data_key = absl::HexStringToBytes(hex);
  }
  auto store = sphere::store::OpenRocksStore(argv[1], {"acks"}, options);
  if (!store.ok()) {
    std::fprintf(stderr, "crash_writer: %s\n",
                 store.status().ToString().c_str());
    return 1;
  }
  int threads = std::atoi(argv[2]);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int64_t i = 0;; ++i) {
        std::string key = absl::StrFormat("w%d/%08d", t, i);
        absl::Status s =
            (*store)->Put("acks", key, absl::StrCat("value-of-", key));
        if (!s.ok()) {
          std::fprintf(stderr, "crash_writer: %s\n", s.ToString().c_str());
          std::_Exit(1);
        }
        // One write(2) per line: lines shorter than PIPE_BUF are atomic.
        std::string line = key + "\n";
        if (write(STDOUT_FILENO, line.data(), line.size()) !=
            static_cast<ssize_t>(line.size())) {
          std::_Exit(1);  // the reader went away
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  return 0;
}
