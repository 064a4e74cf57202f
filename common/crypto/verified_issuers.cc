#include "common/crypto/verified_issuers.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/crypto/internal.h"
#include "common/crypto/x509_internal.h"

namespace sphere::crypto {

using internal::CheckClientAuth;
using internal::Fail;
using internal::ParseX509;
using internal::ToCertTime;
using internal::VerifyError;
using internal::X509Ptr;
using internal::X509StoreCtxPtr;
using internal::X509StorePtr;

namespace {

constexpr char kCertificate[] = "CERTIFICATE";

}  // namespace

struct VerifiedIssuers::Entry {
  std::string roots_pem;  // the exact roots the CA was verified to
  X509Ptr ca;
  X509Ptr root;           // the certificate of roots_pem that signed `ca`
  X509StorePtr ca_store;  // `ca` as the only trust anchor (partial chains)
};

VerifiedIssuers::VerifiedIssuers(size_t max_entries)
    : max_entries_(max_entries) {}

VerifiedIssuers::~VerifiedIssuers() = default;

size_t VerifiedIssuers::size() const {
  absl::MutexLock l(&mu_);
  return entries_.size();
}

std::shared_ptr<const VerifiedIssuers::Entry> VerifiedIssuers::Find(
    const std::string& key, absl::string_view roots_pem) const {
  absl::MutexLock l(&mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second->roots_pem != roots_pem) {
    return nullptr;
  }
  return it->second;
}

void VerifiedIssuers::Remember(std::string key,
                               std::shared_ptr<const Entry> entry) {
  absl::MutexLock l(&mu_);
  auto [it, inserted] = entries_.insert_or_assign(key, std::move(entry));
  if (!inserted) return;  // replaced in place (other roots); same age
  order_.push_back(std::move(key));
  while (entries_.size() > max_entries_) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
}

absl::Status VerifiedIssuers::VerifyChain(absl::string_view leaf_pem,
                                          absl::string_view intermediates_pem,
                                          absl::string_view roots_pem,
                                          absl::Time now,
                                          bool require_client_auth) {
  std::vector<std::string> intermediates = SplitPemChain(intermediates_pem);
  if (max_entries_ == 0 || intermediates.size() != 1) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return crypto::VerifyChain(leaf_pem, intermediates_pem, roots_pem, now,
                               require_client_auth);
  }
  auto ca_der = CertificatePemToDer(intermediates[0]);
  if (!ca_der.ok()) return ca_der.status();
  const std::string key = Sha256(*ca_der);
  auto leaf = ParseX509(leaf_pem);
  if (!leaf.ok()) return leaf.status();
  const time_t t = ToCertTime(now);

  if (std::shared_ptr<const Entry> e = Find(key, roots_pem)) {
    hits_.fetch_add(1, std::memory_order_relaxed);
    // The root the CA was verified to must still be valid now.
    if (X509_cmp_time(X509_get0_notBefore(e->root.get()),
                      const_cast<time_t*>(&t)) > 0) {
      return VerifyError(X509_V_ERR_CERT_NOT_YET_VALID);
    }
    if (X509_cmp_time(X509_get0_notAfter(e->root.get()),
                      const_cast<time_t*>(&t)) < 0) {
      return VerifyError(X509_V_ERR_CERT_HAS_EXPIRED);
    }
    // The CA itself presented as the leaf would be its own trust anchor.
    if (X509_cmp(leaf->get(), e->ca.get()) == 0) {
      return Fail(absl::UnauthenticatedError(
          "certificate verification failed: the leaf is the issuing CA"));
    }
    X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), e->ca_store.get(), leaf->get(),
                                    nullptr) != 1) {
      return Fail(absl::InternalError("X509_STORE_CTX_init"));
    }
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), t);
    if (X509_verify_cert(ctx.get()) != 1) {
      return VerifyError(X509_STORE_CTX_get_error(ctx.get()));
    }
    // leaf -> the remembered CA, nothing shorter or else.
    STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
    if (chain == nullptr || sk_X509_num(chain) != 2 ||
        X509_cmp(sk_X509_value(chain, 1), e->ca.get()) != 0) {
      return Fail(absl::UnauthenticatedError(
          "certificate verification failed: not issued by the presented CA"));
    }
    return CheckClientAuth(leaf->get(), require_client_auth);
  }

  // Full verification: crypto::VerifyChain's own verdict on the chain.
  misses_.fetch_add(1, std::memory_order_relaxed);
  if (absl::Status s = crypto::VerifyChain(leaf_pem, intermediates_pem,
                                           roots_pem, now, require_client_auth);
      !s.ok()) {
    return s;
  }
  // Remembered only when the leaf names the CA as its issuer and the CA
  // itself verifies to one of the pinned roots (kept to check its window).
  auto ca = ParseX509(intermediates[0]);
  if (!ca.ok() || X509_cmp(leaf->get(), ca->get()) == 0 ||
      X509_check_issued(ca->get(), leaf->get()) != X509_V_OK ||
      !crypto::VerifyChain(intermediates[0], "", roots_pem, now,
                           /*require_client_auth=*/false)
           .ok()) {
    ERR_clear_error();
    return absl::OkStatus();  // verified, but not through this CA: not kept
  }
  X509Ptr root;
  for (const std::string& pem : SplitPemChain(roots_pem)) {
    auto r = ParseX509(pem);
    if (r.ok() && X509_check_issued(r->get(), ca->get()) == X509_V_OK) {
      root = *std::move(r);
      break;
    }
  }
  auto entry = std::make_shared<Entry>();
  entry->roots_pem = std::string(roots_pem);
  entry->root = std::move(root);
  entry->ca = *std::move(ca);
  entry->ca_store.reset(X509_STORE_new());
  if (!entry->root || !entry->ca_store ||
      X509_STORE_add_cert(entry->ca_store.get(), entry->ca.get()) != 1 ||
      X509_STORE_set_flags(entry->ca_store.get(), X509_V_FLAG_PARTIAL_CHAIN) !=
          1) {
    ERR_clear_error();
    return absl::OkStatus();  // verified; just not remembered
  }
  Remember(key, std::move(entry));
  return absl::OkStatus();
}

absl::StatusOr<std::string> CertificatePemToDer(absl::string_view pem) {
  internal::BioPtr bio = internal::MemBio(pem);
  unsigned char* data = nullptr;
  long len = 0;
  if (!bio || PEM_bytes_read_bio(&data, &len, nullptr, kCertificate,
                                 bio.get(), nullptr, nullptr) != 1) {
    return Fail(absl::InvalidArgumentError("no PEM certificate block"));
  }
  std::string der(reinterpret_cast<char*>(data), static_cast<size_t>(len));
  OPENSSL_free(data);
  return der;
}

std::string CertificateDerToPem(absl::string_view der) {
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio(bio.get(), kCertificate, "",
                    reinterpret_cast<const unsigned char*>(der.data()),
                    static_cast<long>(der.size())) <= 0) {
    ERR_clear_error();
    return "";
  }
  return internal::BioContents(bio.get());
}

}  // namespace sphere::crypto
