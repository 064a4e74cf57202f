#include "securitysvc/catalog/device_table.h"

#include <cstring>

#include "absl/hash/hash.h"

namespace sphere::catalog {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

constexpr char kHexDigits[] = "0123456789abcdef";

bool FitsCompact(const v1::Device& d) {
  return d.public_key().size() == 65 && d.pending_tenant_id().empty() &&
         d.os_version().empty() && d.app_version().empty() &&
         d.last_attested_unix_ms() == 0 && d.revocation_reason().empty() &&
         d.last_attestation_outcome().empty() &&
         d.GetReflection()->GetUnknownFields(d).empty();
}

}  // namespace

DeviceTable::DeviceTable() : index_(0, RowHash{this}, RowEq{this}) {}

size_t DeviceTable::RowHash::operator()(const Key& key) const {
  return absl::HashOf(
      absl::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
}

DeviceTable::Row* DeviceTable::Find(const Key& key) {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &At(*it);
}

const DeviceTable::Row* DeviceTable::Find(const Key& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &At(*it);
}

void DeviceTable::PutCompact(const Key& key, Entry entry) {
  if (Row* row = Find(key); row != nullptr) {
    row->entry = std::move(entry);
    return;
  }
  if (rows_ % kChunkRows == 0) {
    chunks_.push_back(std::make_unique<Row[]>(kChunkRows));
  }
  const uint32_t row = rows_++;
  At(row) = Row{key, std::move(entry)};
  index_.insert(row);
}

std::optional<DeviceTable::Key> DeviceTable::CompactKey(absl::string_view id) {
  if (id.size() != 64) return std::nullopt;
  Key key;
  for (size_t i = 0; i < 32; ++i) {
    const int hi = HexValue(id[2 * i]);
    const int lo = HexValue(id[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    key[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return key;
}

uint32_t DeviceTable::Intern(const std::string& s) {
  auto [it, inserted] =
      string_index_.emplace(s, static_cast<uint32_t>(strings_.size()));
  if (inserted) strings_.push_back(s);
  return it->second;
}

DeviceTable::Entry DeviceTable::MakeEntry(const v1::Device& d) {
  Entry e;
  if (!FitsCompact(d)) {
    e.public_key.fill(0);
    e.full = std::make_unique<v1::Device>(d);
    return e;
  }
  std::memcpy(e.public_key.data(), d.public_key().data(), 65);
  e.tenant = Intern(d.tenant_id());
  e.product = Intern(d.product_id());
  e.group = Intern(d.device_group_id());
  e.device_type = Intern(d.device_type());
  e.ownership_epoch = d.ownership_epoch();
  e.state = static_cast<uint8_t>(d.state());
  return e;
}

void DeviceTable::Put(const v1::Device& device) {
  std::optional<Key> key = CompactKey(device.id());
  if (!key.has_value()) {
    other_[device.id()] = device;
    return;
  }
  // A v1::DeviceState outside uint8 would not round-trip: keep it whole.
  if (device.state() < 0 || device.state() > 255) {
    Entry e;
    e.public_key.fill(0);
    e.full = std::make_unique<v1::Device>(device);
    PutCompact(*key, std::move(e));
    return;
  }
  PutCompact(*key, MakeEntry(device));
}

v1::Device DeviceTable::Expand(const Key& key, const Entry& e) const {
  if (e.full != nullptr) return *e.full;
  v1::Device d;
  std::string id(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    id[2 * i] = kHexDigits[key[i] >> 4];
    id[2 * i + 1] = kHexDigits[key[i] & 0xf];
  }
  d.set_id(std::move(id));
  d.set_public_key(reinterpret_cast<const char*>(e.public_key.data()), 65);
  d.set_tenant_id(strings_[e.tenant]);
  d.set_product_id(strings_[e.product]);
  d.set_device_group_id(strings_[e.group]);
  d.set_device_type(strings_[e.device_type]);
  d.set_state(static_cast<v1::DeviceState>(e.state));
  d.set_ownership_epoch(e.ownership_epoch);
  return d;
}

std::vector<std::string> DeviceTable::IdsInGroup(
    absl::string_view group_id) const {
  std::vector<std::string> out;
  if (group_id.empty()) return out;
  for (const auto& [id, d] : other_) {
    if (d.device_group_id() == group_id) out.push_back(id);
  }
  auto idx = string_index_.find(group_id);
  if (idx == string_index_.end()) {
    // Only devices kept whole (full) can name a group never interned.
    for (uint32_t r = 0; r < rows_; ++r) {
      const Entry& e = At(r).entry;
      if (e.full != nullptr && e.full->device_group_id() == group_id) {
        out.push_back(e.full->id());
      }
    }
    return out;
  }
  for (uint32_t r = 0; r < rows_; ++r) {
    const Key& key = At(r).key;
    const Entry& e = At(r).entry;
    const bool in = e.full != nullptr ? e.full->device_group_id() == group_id
                                      : e.group == idx->second;
    if (!in) continue;
    std::string id(64, '0');
    for (size_t i = 0; i < 32; ++i) {
      id[2 * i] = kHexDigits[key[i] >> 4];
      id[2 * i + 1] = kHexDigits[key[i] & 0xf];
    }
    out.push_back(std::move(id));
  }
  return out;
}

std::optional<v1::Device> DeviceTable::Get(absl::string_view id) const {
  std::optional<Key> key = CompactKey(id);
  if (!key.has_value()) {
    auto it = other_.find(id);
    if (it == other_.end()) return std::nullopt;
    return it->second;
  }
  const Row* row = Find(*key);
  if (row == nullptr) return std::nullopt;
  return Expand(row->key, row->entry);
}

bool DeviceTable::SetState(absl::string_view id, v1::DeviceState state) {
  std::optional<Key> key = CompactKey(id);
  if (!key.has_value()) {
    auto it = other_.find(id);
    if (it == other_.end()) return false;
    it->second.set_state(state);
    return true;
  }
  Row* row = Find(*key);
  if (row == nullptr) return false;
  if (row->entry.full != nullptr) {
    row->entry.full->set_state(state);
  } else if (state < 0 || state > 255) {
    v1::Device d = Expand(row->key, row->entry);
    d.set_state(state);
    row->entry.full = std::make_unique<v1::Device>(std::move(d));
  } else {
    row->entry.state = static_cast<uint8_t>(state);
  }
  return true;
}

}  // namespace sphere::catalog
