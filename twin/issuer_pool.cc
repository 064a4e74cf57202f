#include "twin/issuer_pool.h"

#include <utility>

#include "common/crypto/crypto.h"
#include "common/crypto/verified_issuers.h"

namespace sphere::twin {
namespace {

// DerOf: the DER certificates of `pem`'s blocks, in order; empty unless
// every block is a certificate.
std::vector<std::string> DerOf(absl::string_view pem) {
  std::vector<std::string> der;
  for (const std::string& block : crypto::SplitPemChain(pem)) {
    absl::StatusOr<std::string> d = crypto::CertificatePemToDer(block);
    if (!d.ok()) return {};
    der.push_back(*std::move(d));
  }
  return der;
}

}  // namespace

const IssuerPool::Issuers* IssuerPool::Intern(absl::string_view issuers_pem) {
  if (issuers_pem.empty() || issuers_pem.size() > kMaxIssuersBytes) {
    return nullptr;
  }
  absl::MutexLock l(&mu_);
  for (const Issuers& s : issuers_) {
    if (s.pem == issuers_pem) return &s;
  }
  if (issuers_.size() >= max_issuers_) return nullptr;
  issuers_.push_back(Issuers{std::string(issuers_pem), DerOf(issuers_pem)});
  return &issuers_.back();
}

size_t IssuerPool::size() const {
  absl::MutexLock l(&mu_);
  return issuers_.size();
}

}  // namespace sphere::twin
