// DeviceFilter: an approximate set of device ids (their 32 bytes) that can
// only err on the side of "maybe": MayContain is false only for a device
// never Added. ErrorStore keeps one of the devices that have stored error
// batches, so a device's first upload ever (every device of a new fleet)
// needs no read of the store to learn that nothing of it is stored.
//
// A Bloom filter that grows: parts of 10 bits per device (7 probes inside
// one 64-byte block, ~1 % false positives at a part's capacity); when the
// newest part is full a part of twice its capacity is added. Memory is
// bounded by Options::max_bytes: a device that would need more makes the
// filter saturated, and then MayContain is true for every device (a
// saturated filter answers nothing; its owner reads the store as without
// a filter). Deleting is not supported (a deleted device stays "maybe").
//
// Example:
//   DeviceFilter f({.initial_devices = 1 << 16});
//   f.Add(device_bin);
//   f.MayContain(device_bin);  // true
//   f.MayContain(other_bin);   // false, or true for ~1 % of others
//
// Thread-safety: none; the owner serialises calls (ErrorStore: its mu_).
#ifndef SPHERE_SECURITYSVC_ERRORS_DEVICE_FILTER_H_
#define SPHERE_SECURITYSVC_ERRORS_DEVICE_FILTER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"

namespace sphere::errors {

class DeviceFilter {
 public:
  struct Options {
    // Devices the first part holds at ~1 % false positives (its memory:
    // 10 bits each, rounded up to whole 64-byte blocks).
    size_t initial_devices = size_t{1} << 18;
    // Every part together; beyond it the filter is saturated.
    size_t max_bytes = size_t{64} << 20;
  };

  explicit DeviceFilter(Options options);
  DeviceFilter() : DeviceFilter(Options{}) {}

  // MayContain: false only if `device` was never Added (and the filter is
  // not saturated).
  bool MayContain(absl::string_view device) const;
  // Add records `device` (any length; ErrorStore's are 32 bytes). A device
  // the filter may already hold costs nothing.
  void Add(absl::string_view device);

  bool saturated() const { return saturated_; }
  size_t bytes() const;
  // Devices added (those found already "maybe" present are not counted).
  size_t devices() const;

 private:
  static constexpr size_t kBitsPerDevice = 10;
  static constexpr int kProbes = 7;
  static constexpr size_t kWordsPerBlock = 8;  // 512 bits, one cache line

  struct Part {
    std::vector<uint64_t> words;  // blocks x kWordsPerBlock
    size_t blocks = 0;
    size_t capacity = 0;
    size_t count = 0;
  };

  static uint64_t Hash(absl::string_view device);
  static bool PartContains(const Part& part, uint64_t h);
  // AddPart: a part for `capacity` devices; false (saturated) if it would
  // take the filter beyond max_bytes.
  bool AddPart(size_t capacity);

  const Options options_;
  std::vector<Part> parts_;
  size_t bytes_ = 0;
  bool saturated_ = false;
};

}  // namespace sphere::errors

#endif  // SPHERE_SECURITYSVC_ERRORS_DEVICE_FILTER_H_
