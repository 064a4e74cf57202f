#include "securitysvc/errors/device_filter.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace sphere::errors {
namespace {

// Mix: a 64-bit finaliser (MurmurHash3's fmix64): every input bit affects
// every output bit. Deterministic, so tests see the same false positives
// on every run.
uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace

DeviceFilter::DeviceFilter(Options options) : options_(options) {
  AddPart(std::max<size_t>(options_.initial_devices, 1));
}

uint64_t DeviceFilter::Hash(absl::string_view device) {
  uint64_t h = Mix(0x9e3779b97f4a7c15ULL ^ device.size());
  size_t i = 0;
  for (; i + 8 <= device.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, device.data() + i, 8);
    h = Mix(h ^ w);
  }
  if (i < device.size()) {
    uint64_t w = 0;
    std::memcpy(&w, device.data() + i, device.size() - i);
    h = Mix(h ^ w ^ 0xa0761d6478bd642fULL);
  }
  return h;
}

bool DeviceFilter::PartContains(const Part& part, uint64_t h) {
  const size_t block = static_cast<size_t>(
      (static_cast<unsigned __int128>(h) * part.blocks) >> 64);
  const uint64_t* words = part.words.data() + block * kWordsPerBlock;
  uint64_t bits = Mix(h ^ 0xe7037ed1a0b428dbULL);
  for (int p = 0; p < kProbes; ++p, bits >>= 9) {
    const unsigned bit = static_cast<unsigned>(bits & 511);
    if ((words[bit >> 6] & (uint64_t{1} << (bit & 63))) == 0) return false;
  }
  return true;
}

bool DeviceFilter::MayContain(absl::string_view device) const {
  if (saturated_) return true;
  const uint64_t h = Hash(device);
  for (const Part& part : parts_) {
    if (PartContains(part, h)) return true;
  }
  return false;
}

void DeviceFilter::Add(absl::string_view device) {
  if (saturated_) return;
  const uint64_t h = Hash(device);
  for (const Part& part : parts_) {
    if (PartContains(part, h)) return;
  }
  if (parts_.back().count >= parts_.back().capacity &&
      !AddPart(parts_.back().capacity * 2)) {
    return;  // saturated: every device is "maybe" from now on
  }
  Part& part = parts_.back();
  const size_t block = static_cast<size_t>(
      (static_cast<unsigned __int128>(h) * part.blocks) >> 64);
  uint64_t* words = part.words.data() + block * kWordsPerBlock;
  uint64_t bits = Mix(h ^ 0xe7037ed1a0b428dbULL);
  for (int p = 0; p < kProbes; ++p, bits >>= 9) {
    const unsigned bit = static_cast<unsigned>(bits & 511);
    words[bit >> 6] |= uint64_t{1} << (bit & 63);
  }
  ++part.count;
}

bool DeviceFilter::AddPart(size_t capacity) {
  const size_t blocks =
      std::max<size_t>((capacity * kBitsPerDevice + 511) / 512, 1);
  const size_t bytes = blocks * kWordsPerBlock * sizeof(uint64_t);
  if (bytes_ + bytes > options_.max_bytes) {
    saturated_ = true;
    parts_.clear();
    parts_.shrink_to_fit();
    bytes_ = 0;
    return false;
  }
  Part part;
  part.words.assign(blocks * kWordsPerBlock, 0);
  part.blocks = blocks;
  part.capacity = capacity;
  parts_.push_back(std::move(part));
  bytes_ += bytes;
  return true;
}

size_t DeviceFilter::bytes() const { return bytes_; }

size_t DeviceFilter::devices() const {
  size_t n = 0;
  for (const Part& part : parts_) n += part.count;
  return n;
}

}  // namespace sphere::errors
