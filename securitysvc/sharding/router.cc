#include "securitysvc/sharding/router.h"

#include "absl/strings/str_cat.h"

namespace sphere::sharding {

void ShardRouter::Update(const v1::ShardMap& map) {
  auto ring = std::make_shared<const ShardRing>(map);
  absl::MutexLock l(&mu_);
  if (ring_ && ring_->map().revision() > map.revision()) return;
  ring_ = std::move(ring);
}

std::shared_ptr<const ShardRing> ShardRouter::ring() const {
  absl::MutexLock l(&mu_);
  return ring_;
}

std::optional<v1::Shard> ShardRouter::OtherOwner(
    absl::string_view device_id) const {
  auto r = ring();
  if (!r || r->empty()) return std::nullopt;
  const v1::Shard& owner = r->Owner(device_id);
  if (owner.id() == self_id_) return std::nullopt;
  return owner;
}

grpc::Status ShardRouter::CheckOwnership(grpc::ServerContextBase* context,
                                         absl::string_view device_id) const {
  auto other = OtherOwner(device_id);
  if (!other) return grpc::Status::OK;
  context->AddTrailingMetadata(kRedirectShardKey, other->id());
  context->AddTrailingMetadata(kRedirectAddressKey, other->address());
  return grpc::Status(
      grpc::StatusCode::FAILED_PRECONDITION,
      absl::StrCat("device ", device_id, " lives on ", other->id(), " at ",
                   other->address(), ", not on ", self_id_, ": retry there"));
}

std::optional<std::pair<std::string, std::string>> RedirectFrom(
    const grpc::ClientContext& context, const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
    return std::nullopt;
  }
  const auto& md = context.GetServerTrailingMetadata();
  auto s = md.find(kRedirectShardKey);
  auto a = md.find(kRedirectAddressKey);
  if (s == md.end() || a == md.end()) return std::nullopt;
  return std::make_pair(std::string(s->second.data(), s->second.size()),
                        std::string(a->second.data(), a->second.size()));
}

}  // namespace sphere::sharding
