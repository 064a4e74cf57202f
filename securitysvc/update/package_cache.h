// PackageCache: where a shard's UpdateService gets the bytes it streams.
//
// A PackageSource loads the serialized, platform-signed ImagePackage of an
// image (in a cluster: management's sealed package store, read with the
// cluster master key the shard already holds; see
// PipelinePackageSource; in tests: a map). PackageCache keeps the most
// recently used packages in memory within a byte budget (LRU), and keeps the
// small PackageInfo (length + SHA-256) of every image it ever loaded, so
// signed metadata can be rebuilt without I/O once an image was seen.
//
// A package larger than the whole budget is still returned (the caller holds
// the only reference while it streams) but not kept.
//
// Thread-safety: all methods are thread-safe. Load may block on the source's
// I/O: call it off gRPC callback threads; Cached and CachedInfo never block.
#ifndef SPHERE_SECURITYSVC_UPDATE_PACKAGE_CACHE_H_
#define SPHERE_SECURITYSVC_UPDATE_PACKAGE_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace sphere::update {

// PackageInfo: what signed metadata says about a package.
struct PackageInfo {
  uint64_t size = 0;   // bytes of the serialized ImagePackage
  std::string sha256;  // SHA-256 of those bytes (32 bytes)
};

class PackageSource {
 public:
  virtual ~PackageSource() = default;
  // Load returns the serialized ImagePackage of `image_id` (64 hex).
  // NotFound when the source has no such package. May block.
  virtual absl::StatusOr<std::string> Load(absl::string_view image_id) = 0;
};

// FunctionPackageSource adapts a function (tests, the pipeline reader).
class FunctionPackageSource : public PackageSource {
 public:
  using Fn = std::function<absl::StatusOr<std::string>(absl::string_view)>;
  explicit FunctionPackageSource(Fn fn) : fn_(std::move(fn)) {}
  absl::StatusOr<std::string> Load(absl::string_view image_id) override {
    return fn_(image_id);
  }

 private:
  Fn fn_;
};

class PackageCache {
 public:
  // Default budget: 64 MiB of package bytes per shard.
  static constexpr uint64_t kDefaultByteBudget = uint64_t{64} << 20;
  // Packages larger than this are refused (DataLoss would be wrong: the
  // platform never signs one; a larger file is a broken store).
  static constexpr uint64_t kMaxPackageBytes = uint64_t{64} << 20;

  // `source` must outlive the cache.
  PackageCache(PackageSource* source, uint64_t byte_budget);

  // Cached: the package if it is in memory now, else null. Never blocks.
  std::shared_ptr<const std::string> Cached(absl::string_view image_id);
  // CachedInfo: the package's info if it was ever loaded. Never blocks.
  std::optional<PackageInfo> CachedInfo(absl::string_view image_id) const;
  // Load: the package, from memory or the source (may block).
  absl::StatusOr<std::shared_ptr<const std::string>> Load(
      absl::string_view image_id);

  uint64_t cached_bytes() const;
  uint64_t source_loads() const;  // how often the source was read

 private:
  struct Entry {
    std::shared_ptr<const std::string> bytes;
    std::list<std::string>::iterator lru;  // position in lru_
  };
  void InsertLocked(const std::string& id,
                    std::shared_ptr<const std::string> bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PackageSource* const source_;
  const uint64_t byte_budget_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);  // front = most recent
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, PackageInfo> infos_ ABSL_GUARDED_BY(mu_);
  uint64_t loads_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sphere::update

#endif  // SPHERE_SECURITYSVC_UPDATE_PACKAGE_CACHE_H_
