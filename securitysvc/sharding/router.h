// ShardRouter answers "does this shard own this device?" from the latest
// shard map (followed from management). A call for a device owned elsewhere
// is refused with FAILED_PRECONDITION plus trailing metadata naming the
// owner, so clients can retry there:
//   sphere-redirect-shard:   shard id
//   sphere-redirect-address: host:port
//
// Thread-safety: safe for concurrent use.
#ifndef SPHERE_SECURITYSVC_SHARDING_ROUTER_H_
#define SPHERE_SECURITYSVC_SHARDING_ROUTER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "securitysvc/sharding/shard_ring.h"

namespace sphere::sharding {

using client::kRedirectAddressKey;
using client::kRedirectShardKey;

class ShardRouter {
 public:
  explicit ShardRouter(std::string self_id) : self_id_(std::move(self_id)) {}

  void Update(const v1::ShardMap& map);
  // Owner returns the owning shard when it is another shard, nullopt when
  // this shard owns the device (or no map is known yet).
  std::optional<v1::Shard> OtherOwner(absl::string_view device_id) const;
  // CheckOwnership: OK, or FAILED_PRECONDITION with redirect metadata added
  // to `context`'s trailers.
  grpc::Status CheckOwnership(grpc::ServerContextBase* context,
                              absl::string_view device_id) const;
  const std::string& self_id() const { return self_id_; }
  std::shared_ptr<const ShardRing> ring() const;

 private:
  const std::string self_id_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const ShardRing> ring_ ABSL_GUARDED_BY(mu_);
};

// RedirectFromStatus extracts (shard id, address) from a failed call's
// trailing metadata; nullopt when the failure is not a redirect.
std::optional<std::pair<std::string, std::string>> RedirectFrom(
    const grpc::ClientContext& context, const grpc::Status& status);

}  // namespace sphere::sharding

#endif  // SPHERE_SECURITYSVC_SHARDING_ROUTER_H_
