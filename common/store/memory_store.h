// MemoryStore: the in-memory Store used by tests, with fault injection so tests
// of other components can simulate storage errors.
//
// Example:
//   auto store = *MemoryStore::Create({"devices"});
//   store->FailNextWrites(1, absl::UnavailableError("disk gone"));
//   EXPECT_FALSE(store->Put("devices", "d1", "x").ok());  // not applied
//   EXPECT_TRUE(store->Put("devices", "d1", "x").ok());
#ifndef SPHERE_COMMON_STORE_MEMORY_STORE_H_
#define SPHERE_COMMON_STORE_MEMORY_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/store/store.h"

namespace sphere::store {

class MemoryStore : public Store {
 public:
  // Create returns a store with the given column families (InvalidArgument for
  // an empty or duplicate name).
  static absl::StatusOr<std::unique_ptr<MemoryStore>> Create(
      const std::vector<std::string>& column_families);

  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override;
  absl::Status Write(const WriteBatch& batch) override;
  // Scan iterates over a snapshot taken when it starts, so `fn` may call back
  // into the store (including Write) without deadlocking.
  absl::Status Scan(absl::string_view cf, absl::string_view prefix,
                    const std::function<bool(absl::string_view key,
                                             absl::string_view value)>& fn,
                    absl::string_view start = "") override;
  // NewSnapshot shares the current tables; the first Write to a shared table
  // copies it (copy-on-write), so a snapshot costs nothing until then.
  // Injected read faults apply to snapshot reads too.
  std::unique_ptr<Snapshot> NewSnapshot() override;

  // ---- Fault injection (tests) ----------------------------------------
  // The next `n` calls to Write fail with `status` and apply nothing.
  void FailNextWrites(int n, absl::Status status);
  // The next `n` calls to Get or Scan fail with `status`.
  void FailNextReads(int n, absl::Status status);
  // Clears any pending injected failures.
  void ClearFaults();

  // Counters (successful operations only).
  int64_t writes() const;
  // Number of keys currently stored in `cf` (0 for an unknown cf).
  size_t Size(absl::string_view cf) const;

 private:
  class MemorySnapshot;
  using Table = std::map<std::string, std::string, std::less<>>;
  // Tables are immutable once shared with a scan or snapshot (use_count > 1);
  // Write copies a shared table before changing it.
  using Tables = absl::flat_hash_map<std::string, std::shared_ptr<Table>>;
  MemoryStore() = default;

  // TableFor returns the table of `cf` to read (nullptr for an unknown cf),
  // or the read fault to report.
  absl::StatusOr<std::shared_ptr<const Table>> TableFor(absl::string_view cf);
  static absl::Status ScanTable(
      const Table& table, absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn,
      absl::string_view start);

  mutable absl::Mutex mu_;
  Tables tables_ ABSL_GUARDED_BY(mu_);
  int fail_writes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status write_error_ ABSL_GUARDED_BY(mu_);
  int fail_reads_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status read_error_ ABSL_GUARDED_BY(mu_);
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::store

#endif  // SPHERE_COMMON_STORE_MEMORY_STORE_H_
