// IssuerPool: the issuer part of the chains issued to a process's twins
// (the tenant CA, shared by every twin of a tenant), kept once per process
// so a twin that keeps its certificate (TwinConfig::keep_certificate) holds
// only its own device certificate and a pointer here. The issuers are also
// kept as DER (decoded once), so a twin can send its chain as DER
// certificates without encoding or decoding PEM per proof.
//
// Bounded: at most `max_issuers` distinct issuer chains of at most
// kMaxIssuersBytes each; beyond that Intern returns nullptr and the twin
// keeps nothing (it attests again when it must prove itself).
//
// Thread-safety: thread-safe; interned strings never move or change and
// live as long as the pool (which must outlive the twins using it).
#ifndef SPHERE_TWIN_ISSUER_POOL_H_
#define SPHERE_TWIN_ISSUER_POOL_H_

#include <deque>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace sphere::twin {

class IssuerPool {
 public:
  static constexpr size_t kMaxIssuersBytes = 8 * 1024;

  explicit IssuerPool(size_t max_issuers = 16) : max_issuers_(max_issuers) {}
  IssuerPool(const IssuerPool&) = delete;
  IssuerPool& operator=(const IssuerPool&) = delete;

  // Issuers: one interned issuer chain, as issued (PEM) and as its DER
  // certificates in the same order (empty when the PEM holds anything but
  // certificate blocks), decoded once when interned.
  struct Issuers {
    std::string pem;
    std::vector<std::string> der;
  };

  // Intern: the pool's copy of `issuers_pem` (added if new), or nullptr
  // when it is empty, too large, or the pool is full of other issuers.
  const Issuers* Intern(absl::string_view issuers_pem);
  size_t size() const;

 private:
  const size_t max_issuers_;
  mutable absl::Mutex mu_;
  std::deque<Issuers> issuers_ ABSL_GUARDED_BY(mu_);  // stable addresses
};

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_ISSUER_POOL_H_
