#include "twin/issuer_pool.h"

namespace sphere::twin {

const std::string* IssuerPool::Intern(absl::string_view issuers_pem) {
  if (issuers_pem.empty() || issuers_pem.size() > kMaxIssuersBytes) {
    return nullptr;
  }
  absl::MutexLock l(&mu_);
  for (const std::string& s : issuers_) {
    if (s == issuers_pem) return &s;
  }
  if (issuers_.size() >= max_issuers_) return nullptr;
  issuers_.emplace_back(issuers_pem);
  return &issuers_.back();
}

size_t IssuerPool::size() const {
  absl::MutexLock l(&mu_);
  return issuers_.size();
}

}  // namespace sphere::twin
