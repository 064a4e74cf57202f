#include "tests/kill_under_load.h"

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"

namespace sphere::testing {

int RandomKillPoint(int lo, int hi) {
  static std::mt19937* rng = [] {
    uint32_t seed = std::random_device()();
    if (const char* s = std::getenv("SPHERE_CRASH_SEED")) {
      (void)absl::SimpleAtoi(s, &seed);
    }
    std::cout << "kill -9 seed " << seed
              << " (reproduce with SPHERE_CRASH_SEED=" << seed << ")"
              << std::endl;
    return new std::mt19937(seed);
  }();
  static absl::Mutex mu(absl::kConstInit);
  absl::MutexLock lock(&mu);
  return std::uniform_int_distribution<int>(lo, hi)(*rng);
}

void KillUnderLoad::Run(const std::function<void(int thread)>& worker,
                        const std::function<void()>& kill) {
  {
    absl::MutexLock lock(&mu_);
    active_ = threads_;
  }
  std::cout << "killing after " << kill_after_ << " acknowledgements"
            << std::endl;
  std::vector<std::thread> workers;
  workers.reserve(threads_);
  for (int t = 0; t < threads_; ++t) {
    workers.emplace_back([this, &worker, t] {
      worker(t);
      absl::MutexLock lock(&mu_);
      --active_;
    });
  }
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &KillUnderLoad::Done));
  }
  killed_.store(true);
  kill();
  for (std::thread& w : workers) w.join();
}

void KillUnderLoad::Ack(const std::function<void()>& record) {
  absl::MutexLock lock(&mu_);
  if (record) record();
  ++acks_;
}

void KillUnderLoad::WithLock(const std::function<void()>& f) {
  absl::MutexLock lock(&mu_);
  f();
}

int KillUnderLoad::acks() const {
  absl::MutexLock lock(&mu_);
  return acks_;
}

}  // namespace sphere::testing
