// ForwardingStore: a test double (testonly) that owns a MemoryStore and
// forwards every call to it, with hooks a test overrides to observe reads,
// hold them, or run another request between a read and what follows it.
//
// Example (run `race` right after the third read of "devices"):
//   class RacingStore : public store::ForwardingStore {
//    public:
//     using ForwardingStore::ForwardingStore;
//    protected:
//     void AfterGet(absl::string_view cf, absl::string_view) override {
//       if (cf == "devices" && ++reads_ == 3) race_();
//     }
//   };
//
// Thread-safety: as the MemoryStore's; the hooks run on the caller's thread
// and must do their own locking.
#ifndef SPHERE_COMMON_STORE_FORWARDING_STORE_H_
#define SPHERE_COMMON_STORE_FORWARDING_STORE_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/store/memory_store.h"
#include "common/store/store.h"

namespace sphere::store {

class ForwardingStore : public Store {
 public:
  explicit ForwardingStore(std::unique_ptr<MemoryStore> inner)
      : inner_(std::move(inner)) {}
  MemoryStore* inner() { return inner_.get(); }

  absl::StatusOr<std::string> Get(absl::string_view cf,
                                  absl::string_view key) override {
    BeforeGet(cf, key);
    absl::StatusOr<std::string> out = inner_->Get(cf, key);
    AfterGet(cf, key);
    return out;
  }
  absl::Status Scan(absl::string_view cf, absl::string_view prefix,
                    const std::function<bool(absl::string_view key,
                                             absl::string_view value)>& fn,
                    absl::string_view start) override {
    BeforeScan(cf, prefix);
    return inner_->Scan(cf, prefix, fn, start);
  }
  std::unique_ptr<Snapshot> NewSnapshot() override {
    return inner_->NewSnapshot();
  }
  absl::Status Write(const WriteBatch& batch) override {
    return inner_->Write(batch);
  }

 protected:
  // Called before a Get reads `key` of `cf`, and after it has read it.
  virtual void BeforeGet(absl::string_view cf, absl::string_view key) {}
  virtual void AfterGet(absl::string_view cf, absl::string_view key) {}
  // Called before a Scan of `prefix` in `cf` reads.
  virtual void BeforeScan(absl::string_view cf, absl::string_view prefix) {}

 private:
  std::unique_ptr<MemoryStore> inner_;
};

}  // namespace sphere::store

#endif  // SPHERE_COMMON_STORE_FORWARDING_STORE_H_
