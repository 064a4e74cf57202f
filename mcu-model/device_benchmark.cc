// Device model benchmarks: full secure boot + quote, quote only, and the
// per-device memory footprint (a counter), for the million-twin load
// generator. Run: bazel run -c opt //mcu-model:device_benchmark
// (testonly: it signs its images with the tests' key from device_fixture, so
// no production target can link that key).
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "common/crypto/crypto.h"
#include "mcu-model/device.h"
#include "mcu-model/device_fixture.h"
#include "mcu-model/image.h"

namespace sphere::mcu {
namespace {

// The tests' platform signing key and factory images (device_fixture.h).
using device_testing::Factory;
using device_testing::SigningKey;

const std::vector<v1::StoredImage>& StoredFactory() {
  static const auto* f = [] {
    auto* v = new std::vector<v1::StoredImage>();
    for (const auto& p : Factory()) v->push_back(ToStoredImage(p));
    return v;
  }();
  return *f;
}

std::unique_ptr<Device> MakeDevice(int i) {
  Device::Options o;
  o.seed = absl::StrCat("bench-device-", i);
  auto d = Device::Manufacture(DeviceType::Mt3620(), SigningKey().PublicKey(),
                               std::move(o));
  if (!d.ok() || !(*d)->InstallFactoryImages(StoredFactory()).ok()) abort();
  return *std::move(d);
}

void BM_FullBootAndQuote(benchmark::State& state) {
  auto d = MakeDevice(0);
  for (auto _ : state) {
    if (!d->Boot().ok()) state.SkipWithError("boot failed");
    auto q = d->Quote("nonce-0123456789abcdef0123456789");
    benchmark::DoNotOptimize(q);
  }
  state.counters["boots_per_s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FullBootAndQuote);

void BM_QuoteOnly(benchmark::State& state) {
  auto d = MakeDevice(1);
  if (!d->Boot().ok()) abort();
  for (auto _ : state) {
    auto q = d->Quote("nonce-0123456789abcdef0123456789");
    benchmark::DoNotOptimize(q);
  }
  state.counters["quotes_per_s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_QuoteOnly);

void BM_ManufactureDevice(benchmark::State& state) {
  int i = 100;
  for (auto _ : state) benchmark::DoNotOptimize(MakeDevice(i++));
}
BENCHMARK(BM_ManufactureDevice);

// Bytes per device: mean FootprintBytes() over a fleet of booted devices,
// excluding shared DeviceType constants and shared image records.
void BM_BytesPerDevice(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  double bytes = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<Device>> fleet;
    fleet.reserve(n);
    size_t total = 0;
    for (int i = 0; i < n; ++i) {
      fleet.push_back(MakeDevice(i));
      if (!fleet.back()->Boot().ok()) abort();
      total += fleet.back()->FootprintBytes();
    }
    bytes = static_cast<double>(total) / n;
  }
  state.counters["bytes_per_device"] = bytes;
}
BENCHMARK(BM_BytesPerDevice)
    ->Arg(1000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sphere::mcu
