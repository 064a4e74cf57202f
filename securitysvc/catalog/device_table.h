// DeviceTable: the catalog view's devices, held compactly (issue 14: a
// shard's memory per device). A shard follows every claimed device of the
// fleet, so this table is most of a shard's memory per device: a v1::Device
// kept as a protobuf costs ~700 bytes (a 64-character hex id string as key,
// a 65-byte key string, three id strings repeated on every device, the
// message overhead). Here the common device is one ~120-byte slot:
//
//   - the id as 32 raw bytes (ids are hex SHA-256; any other id, as some
//     tests use, is kept in a side map);
//   - the 65-byte SEC1 public key inline;
//   - tenant, product, group and device type as indexes into a table of the
//     distinct strings (a fleet has few of them);
//   - state and ownership epoch.
//
// A device with anything else set (a transfer pending, a revocation reason,
// shard-reported fields, a public key of another length) keeps its full
// message out of line. Get rebuilds an equal v1::Device.
//
// Layout: the slots (id + entry, 128 bytes) sit in fixed chunks of
// kChunkRows, appended in arrival order (the view never removes a device),
// and the hash index holds only a 4-byte row number per device. A hash
// table of whole slots would hold between 1.14 and 2.3 slots of 128 bytes
// per device (a power-of-two capacity at most 7/8 full: at 1,000,000
// devices it holds 2,097,151 slots, ~270 MB); here the chunk slack is at
// most one chunk and the index costs 4-9 bytes per device (~137 B per
// device at a million).
//
// Thread-safety: none (the catalog guards it with its mutex). Not copyable
// or movable (the index's hash and equality point at this table).
#ifndef SPHERE_SECURITYSVC_CATALOG_DEVICE_TABLE_H_
#define SPHERE_SECURITYSVC_CATALOG_DEVICE_TABLE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "protos/management.pb.h"

namespace sphere::catalog {

class DeviceTable {
 public:
  DeviceTable();
  DeviceTable(const DeviceTable&) = delete;
  DeviceTable& operator=(const DeviceTable&) = delete;

  // Put inserts or replaces the device with `device.id()`.
  void Put(const v1::Device& device);
  // Get returns the device, or nullopt.
  std::optional<v1::Device> Get(absl::string_view id) const;
  // SetState changes a known device's state; false when unknown.
  bool SetState(absl::string_view id, v1::DeviceState state);
  size_t size() const { return index_.size() + other_.size(); }
  // CompactBytes: the heap the compact devices hold (chunks and index;
  // not the out-of-line messages), for tests and metrics.
  size_t CompactBytes() const {
    return chunks_.size() * kChunkRows * sizeof(Row) +
           index_.capacity() * (sizeof(uint32_t) + 1);
  }
  // IdsInGroup: the ids of every device in group `group_id` (staged
  // rollouts count the devices of a stage).
  std::vector<std::string> IdsInGroup(absl::string_view group_id) const;

 private:
  using Key = std::array<uint8_t, 32>;
  struct Entry {
    std::array<uint8_t, 65> public_key;
    uint32_t tenant = 0, product = 0, group = 0, device_type = 0;
    uint32_t ownership_epoch = 0;
    uint8_t state = 0;
    // Set when the device does not fit the compact form: the whole device.
    std::unique_ptr<v1::Device> full;
  };
  struct Row {
    Key key;
    Entry entry;
  };
  static constexpr size_t kChunkRows = 4096;
  // RowHash and RowEq let the index (row numbers) be searched by Key.
  struct RowHash {
    using is_transparent = void;
    const DeviceTable* table;
    size_t operator()(uint32_t row) const {
      return (*this)(table->At(row).key);
    }
    size_t operator()(const Key& key) const;
  };
  struct RowEq {
    using is_transparent = void;
    const DeviceTable* table;
    const Key& KeyOf(uint32_t row) const { return table->At(row).key; }
    const Key& KeyOf(const Key& key) const { return key; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return KeyOf(a) == KeyOf(b);
    }
  };
  const Row& At(uint32_t row) const {
    return chunks_[row / kChunkRows][row % kChunkRows];
  }
  Row& At(uint32_t row) { return chunks_[row / kChunkRows][row % kChunkRows]; }
  // Find returns the row of `key`, or nullptr.
  Row* Find(const Key& key);
  const Row* Find(const Key& key) const;
  static std::optional<Key> CompactKey(absl::string_view id);
  uint32_t Intern(const std::string& s);
  Entry MakeEntry(const v1::Device& device);
  v1::Device Expand(const Key& key, const Entry& e) const;
  void PutCompact(const Key& key, Entry entry);

  std::vector<std::unique_ptr<Row[]>> chunks_;  // kChunkRows rows each
  uint32_t rows_ = 0;                           // rows in use
  absl::flat_hash_set<uint32_t, RowHash, RowEq> index_;
  // Devices whose id is not 64 lowercase hex characters (full messages).
  absl::flat_hash_map<std::string, v1::Device> other_;
  // Distinct tenant/product/group/type strings; index 0 is "".
  std::vector<std::string> strings_{""};
  absl::flat_hash_map<std::string, uint32_t> string_index_{{"", 0}};
};

}  // namespace sphere::catalog

#endif  // SPHERE_SECURITYSVC_CATALOG_DEVICE_TABLE_H_
