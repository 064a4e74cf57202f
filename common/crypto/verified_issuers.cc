#include "common/crypto/verified_issuers.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
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

using ExtensionsPtr = std::unique_ptr<STACK_OF(X509_EXTENSION),
                                      void (*)(STACK_OF(X509_EXTENSION)*)>;

// AlgorithmIdentifier ecdsa-with-SHA256 (RFC 5758: parameters absent), and
// a P-256 SubjectPublicKeyInfo up to its uncompressed point's 64 bytes.
constexpr absl::string_view kEcdsaWithSha256(
    "\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 12);
constexpr absl::string_view kP256SpkiPrefix(
    "\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86"
    "\x48\xce\x3d\x03\x01\x07\x03\x42\x00\x04",
    27);
constexpr absl::string_view kVersion3("\x02\x01\x02", 3);

// The extensions a leaf (or a remembered CA) may carry for DirectLeaf: all
// that Sphere issues. Anything else goes through OpenSSL.
bool DirectExtension(int nid) {
  switch (nid) {
    case NID_basic_constraints:
    case NID_key_usage:
    case NID_ext_key_usage:
    case NID_subject_alt_name:
    case NID_subject_key_identifier:
    case NID_authority_key_identifier:
      return true;
    default:
      return false;
  }
}

// A DER element: its tag, all of its bytes, and its contents.
struct Tlv {
  uint8_t tag = 0;
  absl::string_view whole, value;
};

// ReadTlv: the next element of *in when it has tag `tag`, a low tag number
// and a definite, minimally encoded length of at most 64 KiB (stricter than
// OpenSSL's decoder, never looser: anything else is left to OpenSSL).
bool ReadTlv(absl::string_view* in, uint8_t tag, Tlv* out) {
  if (in->size() < 2 || static_cast<uint8_t>((*in)[0]) != tag) return false;
  const uint8_t* p = reinterpret_cast<const uint8_t*>(in->data());
  size_t len = p[1];
  size_t header = 2;
  if (len & 0x80) {
    const size_t n = len & 0x7f;
    if (n == 0 || n > 2 || in->size() < 2 + n) return false;
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | p[2 + i];
    if (len < 0x80 || (n == 2 && len < 0x100)) return false;  // not minimal
    header += n;
  }
  if (in->size() - header < len) return false;
  out->tag = tag;
  out->whole = in->substr(0, header + len);
  out->value = in->substr(header, len);
  in->remove_prefix(header + len);
  return true;
}

// D2i: `der` decoded by `d2i` when it takes every byte; else null.
template <typename T>
T* D2i(T* (*d2i)(T**, const unsigned char**, long), absl::string_view der,
       void (*free_fn)(T*)) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  T* v = d2i(nullptr, &p, static_cast<long>(der.size()));
  if (v != nullptr &&
      p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    free_fn(v);
    return nullptr;
  }
  return v;
}

void FreeExtensions(STACK_OF(X509_EXTENSION) * exts) {
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

// InWindow: OpenSSL's verdict on a validity window at `t` (X509_cmp_time
// maps "equal" to -1 and a malformed time to 0, which fails).
bool InWindow(const ASN1_TIME* not_before, const ASN1_TIME* not_after,
              time_t t) {
  return X509_cmp_time(not_before, &t) < 0 && X509_cmp_time(not_after, &t) > 0;
}

// KeyUsageBits: a keyUsage's first 16 bits as OpenSSL caches them
// (x509v3_cache_extensions); OpenSSL 3 refuses a certificate whose keyUsage
// has none of them set (RFC 5280 4.2.1.3), so DirectLeaf must too.
int KeyUsageBits(const ASN1_BIT_STRING* ku) {
  const int n = ASN1_STRING_length(ku);
  const unsigned char* d = ASN1_STRING_get0_data(ku);
  return (n > 0 ? d[0] : 0) | (n > 1 ? d[1] << 8 : 0);
}

// FieldsInto: `leaf`'s fields into `out` (nothing when `out` is null).
absl::Status FieldsInto(X509* leaf, ParsedCertificate* out) {
  if (out == nullptr) return absl::OkStatus();
  absl::StatusOr<ParsedCertificate> fields = internal::FieldsOfX509(leaf);
  if (!fields.ok()) return fields.status();
  *out = *std::move(fields);
  return absl::OkStatus();
}

}  // namespace

struct VerifiedIssuers::Entry {
  std::string roots_pem;  // the exact roots the CA was verified to
  X509Ptr ca;
  X509Ptr root;           // the certificate of roots_pem that signed `ca`
  X509StorePtr ca_store;  // `ca` as the only trust anchor (partial chains)
  // For DirectLeaf (set only when the CA qualifies, see Remember's caller):
  bool direct = false;
  std::string ca_der;          // the CA's DER (a leaf equal to it: no)
  std::string ca_subject_der;  // what a leaf's issuer must be, byte for byte
  std::string ca_point;        // the CA's P-256 key, 65-byte SEC1
  std::string ca_skid;         // its subjectKeyIdentifier ("" when none)
  bool ca_has_skid = false;
};

VerifiedIssuers::VerifiedIssuers(size_t max_entries)
    : max_entries_(max_entries) {}

VerifiedIssuers::~VerifiedIssuers() = default;

size_t VerifiedIssuers::size() const {
  absl::MutexLock l(&mu_);
  return entries_.size();
}

std::shared_ptr<const VerifiedIssuers::Entry> VerifiedIssuers::Find(
    absl::string_view ca_der, absl::string_view roots_pem) const {
  absl::MutexLock l(&mu_);
  auto it = entries_.find(ca_der);
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

// QualifyForDirectLeaves: DirectLeaf may read leaves under `e`'s CA when
// that CA has a P-256 key and only extensions DirectLeaf knows (no name
// constraints or policies, which OpenSSL would apply to the leaf).
void VerifiedIssuers::QualifyForDirectLeaves(absl::string_view ca_der,
                                             Entry* e) {
  X509* ca = e->ca.get();
  for (int i = 0; i < X509_get_ext_count(ca); ++i) {
    if (!DirectExtension(
            OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(ca, i))))) {
      return;
    }
  }
  auto point = internal::PointOfPkey(X509_get0_pubkey(ca));
  unsigned char* name = nullptr;
  const int name_len = i2d_X509_NAME(X509_get_subject_name(ca), &name);
  if (!point.ok() || name_len <= 0) {
    OPENSSL_free(name);
    ERR_clear_error();
    return;
  }
  e->ca_subject_der.assign(reinterpret_cast<char*>(name), name_len);
  OPENSSL_free(name);
  e->ca_point = *std::move(point);
  e->ca_der = std::string(ca_der);
  if (const ASN1_OCTET_STRING* skid = X509_get0_subject_key_id(ca)) {
    e->ca_has_skid = true;
    e->ca_skid.assign(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(skid)),
        ASN1_STRING_length(skid));
  }
  e->direct = true;
}

bool VerifiedIssuers::DirectLeaf(const Entry& e, absl::string_view der,
                                 absl::Time now, bool require_client_auth,
                                 ParsedCertificate* out) {
  if (!e.direct || der == e.ca_der) return false;
  // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
  absl::string_view in = der;
  Tlv cert, tbs, alg, sig;
  if (!ReadTlv(&in, 0x30, &cert) || !in.empty()) return false;
  absl::string_view c = cert.value;
  if (!ReadTlv(&c, 0x30, &tbs) || !ReadTlv(&c, 0x30, &alg) ||
      alg.whole != kEcdsaWithSha256 || !ReadTlv(&c, 0x03, &sig) || !c.empty() ||
      sig.value.size() < 2 || sig.value[0] != '\0') {
    return false;
  }
  // TBSCertificate: v3, serial, signature (as above), issuer (the CA's
  // subject, byte for byte), validity, subject, a P-256 key, extensions; no
  // unique identifiers.
  absl::string_view b = tbs.value;
  Tlv version, serial, tbs_alg, issuer, validity, subject, spki, exts;
  if (!ReadTlv(&b, 0xa0, &version) || version.value != kVersion3 ||
      !ReadTlv(&b, 0x02, &serial) || !ReadTlv(&b, 0x30, &tbs_alg) ||
      tbs_alg.whole != kEcdsaWithSha256 || !ReadTlv(&b, 0x30, &issuer) ||
      issuer.whole != e.ca_subject_der || !ReadTlv(&b, 0x30, &validity) ||
      !ReadTlv(&b, 0x30, &subject) || !ReadTlv(&b, 0x30, &spki) ||
      spki.whole.size() != kP256SpkiPrefix.size() + 64 ||
      spki.whole.substr(0, kP256SpkiPrefix.size()) != kP256SpkiPrefix ||
      !ReadTlv(&b, 0xa3, &exts) || !b.empty()) {
    return false;
  }
  // The signature first: nothing else of a leaf the CA did not sign is read.
  if (!EcdsaVerifyDigest(e.ca_point, Sha256(tbs.whole), sig.value.substr(1))
           .ok()) {
    ERR_clear_error();
    return false;
  }
  const time_t t = ToCertTime(now);
  absl::string_view v = validity.value;
  Tlv nb_tlv, na_tlv;
  if (!(ReadTlv(&v, 0x17, &nb_tlv) || ReadTlv(&v, 0x18, &nb_tlv)) ||
      !(ReadTlv(&v, 0x17, &na_tlv) || ReadTlv(&v, 0x18, &na_tlv)) ||
      !v.empty()) {
    return false;
  }
  internal::Asn1TimePtr not_before(
      D2i(d2i_ASN1_TIME, nb_tlv.whole, ASN1_TIME_free));
  internal::Asn1TimePtr not_after(
      D2i(d2i_ASN1_TIME, na_tlv.whole, ASN1_TIME_free));
  internal::Asn1IntegerPtr serial_number(
      D2i(d2i_ASN1_INTEGER, serial.whole, ASN1_INTEGER_free));
  internal::X509NamePtr subject_name(
      D2i(d2i_X509_NAME, subject.whole, X509_NAME_free));
  const X509_NAME* ca_name = X509_get_subject_name(e.ca.get());
  // Both windows (the CA is the partial chain's trust anchor); a subject
  // equal to the issuer (self-issued) is left to OpenSSL.
  if (!not_before || !not_after || !serial_number || !subject_name ||
      !InWindow(not_before.get(), not_after.get(), t) ||
      !InWindow(X509_get0_notBefore(e.ca.get()), X509_get0_notAfter(e.ca.get()),
                t) ||
      X509_NAME_cmp(subject_name.get(), ca_name) == 0) {
    ERR_clear_error();
    return false;
  }
  const std::string point(spki.whole.substr(kP256SpkiPrefix.size() - 1));
  if (!internal::EcKeyFromPoint(point).ok()) {  // on the curve
    ERR_clear_error();
    return false;
  }
  // Extensions: only Sphere's six, each at most once and decodable (OpenSSL
  // refuses a certificate with one it cannot decode), SKID/AKID not critical
  // (OpenSSL does not handle them as critical).
  absl::string_view x = exts.value;
  Tlv ext_seq;
  if (!ReadTlv(&x, 0x30, &ext_seq) || !x.empty()) return false;
  ExtensionsPtr list(D2i(d2i_X509_EXTENSIONS, ext_seq.whole, FreeExtensions),
                     FreeExtensions);
  if (!list) {
    ERR_clear_error();
    return false;
  }
  std::vector<int> seen;
  for (int i = 0; i < sk_X509_EXTENSION_num(list.get()); ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(list.get(), i);
    const int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    if (!DirectExtension(nid) ||
        std::find(seen.begin(), seen.end(), nid) != seen.end() ||
        (X509_EXTENSION_get_critical(ext) &&
         (nid == NID_subject_key_identifier ||
          nid == NID_authority_key_identifier))) {
      return false;
    }
    seen.push_back(nid);
  }
  auto present = [&seen](int nid) {
    return std::find(seen.begin(), seen.end(), nid) != seen.end();
  };
  const STACK_OF(X509_EXTENSION)* l = list.get();
  internal::BasicConstraintsPtr bc(static_cast<BASIC_CONSTRAINTS*>(
      X509V3_get_d2i(l, NID_basic_constraints, nullptr, nullptr)));
  internal::Asn1BitPtr ku(static_cast<ASN1_BIT_STRING*>(
      X509V3_get_d2i(l, NID_key_usage, nullptr, nullptr)));
  internal::EkuPtr eku(static_cast<EXTENDED_KEY_USAGE*>(
      X509V3_get_d2i(l, NID_ext_key_usage, nullptr, nullptr)));
  internal::GeneralNamesPtr san(static_cast<GENERAL_NAMES*>(
      X509V3_get_d2i(l, NID_subject_alt_name, nullptr, nullptr)));
  internal::Asn1OctetPtr skid(static_cast<ASN1_OCTET_STRING*>(
      X509V3_get_d2i(l, NID_subject_key_identifier, nullptr, nullptr)));
  internal::AuthorityKeyIdPtr akid(static_cast<AUTHORITY_KEYID*>(
      X509V3_get_d2i(l, NID_authority_key_identifier, nullptr, nullptr)));
  ERR_clear_error();
  if ((present(NID_basic_constraints) && (!bc || bc->ca || bc->pathlen)) ||
      (present(NID_key_usage) && (!ku || KeyUsageBits(ku.get()) == 0)) ||
      (present(NID_ext_key_usage) && !eku) ||
      (present(NID_subject_alt_name) && !san) ||
      (present(NID_subject_key_identifier) && !skid) ||
      (present(NID_authority_key_identifier) &&
       (!akid || akid->issuer != nullptr || akid->serial != nullptr ||
        (akid->keyid != nullptr && e.ca_has_skid &&
         absl::string_view(
             reinterpret_cast<const char*>(ASN1_STRING_get0_data(akid->keyid)),
             ASN1_STRING_length(akid->keyid)) != e.ca_skid))) ||
      (require_client_auth && !internal::HasEkuIn(l, NID_client_auth))) {
    ERR_clear_error();
    return false;
  }
  if (out != nullptr) {
    *out = internal::CertificateFields(
        subject_name.get(), ca_name, serial_number.get(), not_before.get(),
        not_after.get(), l, point, std::string(der));
  }
  return true;
}

absl::Status VerifiedIssuers::VerifyChain(absl::string_view leaf_pem,
                                          absl::string_view intermediates_pem,
                                          absl::string_view roots_pem,
                                          absl::Time now,
                                          bool require_client_auth) {
  return Verify(leaf_pem, intermediates_pem, roots_pem, now,
                require_client_auth, /*leaf_out=*/nullptr);
}

absl::StatusOr<ParsedCertificate> VerifiedIssuers::VerifyChainAndParse(
    absl::string_view leaf_pem, absl::string_view intermediates_pem,
    absl::string_view roots_pem, absl::Time now, bool require_client_auth) {
  ParsedCertificate leaf;
  if (absl::Status s = Verify(leaf_pem, intermediates_pem, roots_pem, now,
                              require_client_auth, &leaf);
      !s.ok()) {
    return s;
  }
  return leaf;
}

absl::Status VerifiedIssuers::Verify(absl::string_view leaf_pem,
                                     absl::string_view intermediates_pem,
                                     absl::string_view roots_pem,
                                     absl::Time now, bool require_client_auth,
                                     ParsedCertificate* leaf_out) {
  std::vector<std::string> intermediates = SplitPemChain(intermediates_pem);
  if (max_entries_ == 0 || intermediates.size() != 1) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    if (absl::Status s = crypto::VerifyChain(
            leaf_pem, intermediates_pem, roots_pem, now, require_client_auth);
        !s.ok() || leaf_out == nullptr) {
      return s;
    }
    auto leaf = ParseX509(leaf_pem);
    if (!leaf.ok()) return leaf.status();
    return FieldsInto(leaf->get(), leaf_out);
  }
  auto ca_der = CertificatePemToDer(intermediates[0]);
  if (!ca_der.ok()) return ca_der.status();
  if (std::shared_ptr<const Entry> e = Find(*ca_der, roots_pem)) {
    return UnderRememberedCa(*e, leaf_pem, /*leaf_is_der=*/false, now,
                             require_client_auth, leaf_out);
  }

  // Full verification: crypto::VerifyChain's own verdict on the chain.
  misses_.fetch_add(1, std::memory_order_relaxed);
  auto leaf = ParseX509(leaf_pem);
  if (!leaf.ok()) return leaf.status();
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
    // Verified, but not through this CA: not kept.
    return FieldsInto(leaf->get(), leaf_out);
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
    return FieldsInto(leaf->get(), leaf_out);  // verified; not remembered
  }
  QualifyForDirectLeaves(*ca_der, entry.get());
  Remember(*std::move(ca_der), std::move(entry));
  return FieldsInto(leaf->get(), leaf_out);
}

absl::Status VerifiedIssuers::UnderRememberedCa(const Entry& e,
                                                absl::string_view leaf,
                                                bool leaf_is_der,
                                                absl::Time now,
                                                bool require_client_auth,
                                                ParsedCertificate* leaf_out) {
  hits_.fetch_add(1, std::memory_order_relaxed);
  const time_t t = ToCertTime(now);
  // The root the CA was verified to must still be valid now.
  if (X509_cmp_time(X509_get0_notBefore(e.root.get()),
                    const_cast<time_t*>(&t)) > 0) {
    return VerifyError(X509_V_ERR_CERT_NOT_YET_VALID);
  }
  if (X509_cmp_time(X509_get0_notAfter(e.root.get()),
                    const_cast<time_t*>(&t)) < 0) {
    return VerifyError(X509_V_ERR_CERT_HAS_EXPIRED);
  }
  // A leaf of Sphere's shape is read without OpenSSL's X509 parse (whose
  // public-key decoder costs ~3 P-256 verifies); anything it does not
  // accept, OpenSSL verifies below and gives today's verdict and error.
  absl::StatusOr<std::string> decoded;
  if (!leaf_is_der) decoded = CertificatePemToDer(leaf);
  if ((leaf_is_der || decoded.ok()) &&
      DirectLeaf(e, leaf_is_der ? leaf : *decoded, now, require_client_auth,
                 leaf_out)) {
    direct_.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  auto x509 = ParseX509(leaf_is_der ? CertificateDerToPem(leaf)
                                    : std::string(leaf));
  if (!x509.ok()) return x509.status();
  X509* leaf_x509 = x509->get();
  // The CA itself presented as the leaf would be its own trust anchor.
  if (X509_cmp(leaf_x509, e.ca.get()) == 0) {
    return Fail(absl::UnauthenticatedError(
        "certificate verification failed: the leaf is the issuing CA"));
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), e.ca_store.get(), leaf_x509,
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
      X509_cmp(sk_X509_value(chain, 1), e.ca.get()) != 0) {
    return Fail(absl::UnauthenticatedError(
        "certificate verification failed: not issued by the presented CA"));
  }
  if (absl::Status s = CheckClientAuth(leaf_x509, require_client_auth);
      !s.ok()) {
    return s;
  }
  return FieldsInto(leaf_x509, leaf_out);
}

absl::StatusOr<ParsedCertificate> VerifiedIssuers::VerifyDerChainAndParse(
    absl::Span<const absl::string_view> chain, absl::string_view roots_pem,
    absl::Time now, bool require_client_auth) {
  if (chain.empty()) {
    return absl::InvalidArgumentError("empty DER certificate chain");
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    absl::string_view in = chain[i];
    Tlv cert;
    if (!ReadTlv(&in, 0x30, &cert) || !in.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DER certificate ", i, " of the chain is not one DER SEQUENCE"));
    }
  }
  ParsedCertificate leaf;
  if (max_entries_ != 0 && chain.size() == 2) {
    if (std::shared_ptr<const Entry> e = Find(chain[1], roots_pem)) {
      if (absl::Status s =
              UnderRememberedCa(*e, chain[0], /*leaf_is_der=*/true, now,
                                require_client_auth, &leaf);
          !s.ok()) {
        return s;
      }
      return leaf;
    }
  }
  // Not under a remembered CA: the PEM path's verdict on the same
  // certificates (and the CA is remembered as it would be there).
  std::string intermediates;
  for (size_t i = 1; i < chain.size(); ++i) {
    intermediates += CertificateDerToPem(chain[i]);
  }
  if (absl::Status s = Verify(CertificateDerToPem(chain[0]), intermediates,
                              roots_pem, now, require_client_auth, &leaf);
      !s.ok()) {
    return s;
  }
  return leaf;
}

absl::StatusOr<std::string> CertificatePemToDer(absl::string_view pem) {
  internal::BioPtr bio = internal::MemBio(pem);
  unsigned char* data = nullptr;
  long len = 0;
  if (!bio || PEM_bytes_read_bio(&data, &len, nullptr, kCertificate, bio.get(),
                                 nullptr, nullptr) != 1) {
    return Fail(absl::InvalidArgumentError("no PEM certificate block"));
  }
  std::string der(reinterpret_cast<char*>(data), static_cast<size_t>(len));
  OPENSSL_free(data);
  return der;
}

std::string CertificateDerToPem(absl::string_view der) {
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio(bio.get(), kCertificate, "",
                            reinterpret_cast<const unsigned char*>(der.data()),
                            static_cast<long>(der.size())) <= 0) {
    ERR_clear_error();
    return "";
  }
  return internal::BioContents(bio.get());
}

}  // namespace sphere::crypto
