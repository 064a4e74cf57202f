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
// Thread-safety: none (the catalog guards it with its mutex).
#ifndef SPHERE_SECURITYSVC_CATALOG_DEVICE_TABLE_H_
#define SPHERE_SECURITYSVC_CATALOG_DEVICE_TABLE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "protos/management.pb.h"

namespace sphere::catalog {

class DeviceTable {
 public:
  // Put inserts or replaces the device with `device.id()`.
  void Put(const v1::Device& device);
  // Get returns the device, or nullopt.
  std::optional<v1::Device> Get(absl::string_view id) const;
  // SetState changes a known device's state; false when unknown.
  bool SetState(absl::string_view id, v1::DeviceState state);
  size_t size() const { return compact_.size() + other_.size(); }
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
  static std::optional<Key> CompactKey(absl::string_view id);
  uint32_t Intern(const std::string& s);
  Entry MakeEntry(const v1::Device& device);
  v1::Device Expand(const Key& key, const Entry& e) const;

  absl::flat_hash_map<Key, Entry> compact_;
  // Devices whose id is not 64 lowercase hex characters (full messages).
  absl::flat_hash_map<std::string, v1::Device> other_;
  // Distinct tenant/product/group/type strings; index 0 is "".
  std::vector<std::string> strings_{""};
  absl::flat_hash_map<std::string, uint32_t> string_index_{{"", 0}};
};

}  // namespace sphere::catalog

#endif  // SPHERE_SECURITYSVC_CATALOG_DEVICE_TABLE_H_
