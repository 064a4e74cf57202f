// X.509 certificates and PKCS#10 CSRs. Extensions are built as ASN.1
// structures and added with X509_add1_ext_i2d (no config-string parsing), which
// OpenSSL 3 and BoringSSL both support identically.
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <time.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
#include "common/crypto/internal.h"
#include "common/crypto/x509_internal.h"

namespace sphere::crypto {

using internal::Asn1BitPtr;
using internal::Asn1OctetPtr;
using internal::Asn1TimePtr;
using internal::AuthorityKeyIdPtr;
using internal::BasicConstraintsPtr;
using internal::EkuPtr;
using internal::Fail;
using internal::GeneralNamesPtr;
using internal::HasEku;
using internal::ParseX509;
using internal::ToCertTime;
using internal::U8;
using internal::X509NamePtr;
using internal::X509Ptr;
using internal::X509StoreCtxPtr;
using internal::X509StorePtr;

namespace internal {

// Largest time representable in a GeneralizedTime: 9999-12-31T23:59:59Z.
constexpr int64_t kMaxCertTime = 253402300799;

time_t ToCertTime(absl::Time t) {
  int64_t s = absl::ToUnixSeconds(t);
  if (s < 0) s = 0;
  if (s > kMaxCertTime) s = kMaxCertTime;
  return static_cast<time_t>(s);
}

absl::StatusOr<X509Ptr> ParseX509(absl::string_view pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return Fail(absl::InvalidArgumentError("unparseable certificate"));
  return cert;
}

bool HasEku(X509* cert, int nid) {
  return HasEkuIn(X509_get0_extensions(cert), nid);
}

bool HasEkuIn(const STACK_OF(X509_EXTENSION) * exts, int nid) {
  EkuPtr eku(static_cast<EXTENDED_KEY_USAGE*>(
      X509V3_get_d2i(exts, NID_ext_key_usage, nullptr, nullptr)));
  if (!eku) return false;
  for (size_t i = 0; i < static_cast<size_t>(sk_ASN1_OBJECT_num(eku.get()));
       ++i) {
    if (OBJ_obj2nid(sk_ASN1_OBJECT_value(eku.get(), i)) == nid) return true;
  }
  return false;
}

absl::Status VerifyError(int err) {
  std::string msg = absl::StrCat("certificate verification failed: ",
                                 X509_verify_cert_error_string(err));
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return Fail(absl::FailedPreconditionError(msg));
    default:
      return Fail(absl::UnauthenticatedError(msg));
  }
}

absl::Status CheckClientAuth(X509* leaf, bool require_client_auth) {
  if (require_client_auth && !HasEku(leaf, NID_client_auth)) {
    return Fail(absl::UnauthenticatedError(
        "certificate lacks the clientAuth extended key usage"));
  }
  ERR_clear_error();
  return absl::OkStatus();
}

}  // namespace internal

namespace {

using X509ReqPtr = internal::Ptr<X509_REQ, X509_REQ_free>;

constexpr absl::string_view kUrnPrefix = "urn:sphere:";

absl::Time FromAsn1Time(const ASN1_TIME* t) {
  Asn1TimePtr epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0, secs = 0;
  if (!epoch || ASN1_TIME_diff(&days, &secs, epoch.get(), t) != 1) {
    ERR_clear_error();
    return absl::InfinitePast();
  }
  return absl::FromUnixSeconds(int64_t{days} * 86400 + secs);
}

std::string ToPemX509(X509* cert) {
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    ERR_clear_error();
    return "";
  }
  return internal::BioContents(bio.get());
}

std::string Asn1ToUtf8(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, s);
  if (len < 0) {
    ERR_clear_error();
    return "";
  }
  std::string out(reinterpret_cast<char*>(utf8), len);
  OPENSSL_free(utf8);
  return out;
}

std::string NameEntry(const X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return "";
  return Asn1ToUtf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
}

// "CN=a, O=b" in encoding order.
std::string NameLine(const X509_NAME* name) {
  std::vector<std::string> parts;
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    const ASN1_OBJECT* obj = X509_NAME_ENTRY_get_object(e);
    int nid = OBJ_obj2nid(obj);
    std::string key;
    if (nid != NID_undef) {
      key = OBJ_nid2sn(nid);
    } else {
      char buf[80];
      OBJ_obj2txt(buf, sizeof(buf), obj, 1);
      key = buf;
    }
    parts.push_back(key + "=" + Asn1ToUtf8(X509_NAME_ENTRY_get_data(e)));
  }
  return absl::StrJoin(parts, ", ");
}

// Appends CN then O (each when non-empty) to `name`.
absl::Status AddNameEntries(X509_NAME* name, absl::string_view cn,
                            absl::string_view org) {
  if (name == nullptr) return Fail(absl::InternalError("no X509_NAME"));
  if (!cn.empty() &&
      X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, U8(cn),
                                 static_cast<int>(cn.size()), -1, 0) != 1) {
    return Fail(absl::InvalidArgumentError("invalid common name"));
  }
  if (!org.empty() && X509_NAME_add_entry_by_NID(
                          name, NID_organizationName, MBSTRING_UTF8, U8(org),
                          static_cast<int>(org.size()), -1, 0) != 1) {
    return Fail(absl::InvalidArgumentError("invalid organization"));
  }
  return absl::OkStatus();
}

absl::StatusOr<X509NamePtr> MakeName(absl::string_view cn,
                                     absl::string_view org) {
  X509NamePtr name(X509_NAME_new());
  if (!name) return Fail(absl::InternalError("X509_NAME_new"));
  if (auto s = AddNameEntries(name.get(), cn, org); !s.ok()) return s;
  return name;
}

// SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1).
std::string KeyId(absl::string_view point) {
  std::string out(20, '\0');
  unsigned int len = 0;
  EVP_Digest(point.data(), point.size(), reinterpret_cast<uint8_t*>(&out[0]),
             &len, internal::Sha1Md(), nullptr);
  return out;
}

Asn1OctetPtr Octets(absl::string_view data) {
  Asn1OctetPtr s(ASN1_OCTET_STRING_new());
  if (s && ASN1_OCTET_STRING_set(s.get(), U8(data),
                                 static_cast<int>(data.size())) != 1) {
    s.reset();
  }
  return s;
}

bool AddIa5Name(GENERAL_NAMES* names, int type, absl::string_view value) {
  ASN1_IA5STRING* s = ASN1_IA5STRING_new();
  if (s == nullptr ||
      ASN1_STRING_set(s, value.data(), static_cast<int>(value.size())) != 1) {
    ASN1_IA5STRING_free(s);
    return false;
  }
  GENERAL_NAME* gn = GENERAL_NAME_new();
  if (gn == nullptr) {
    ASN1_IA5STRING_free(s);
    return false;
  }
  GENERAL_NAME_set0_value(gn, type, s);
  if (sk_GENERAL_NAME_push(names, gn) == 0) {
    GENERAL_NAME_free(gn);
    return false;
  }
  return true;
}

bool AddIpName(GENERAL_NAMES* names, const std::string& ip) {
  ASN1_OCTET_STRING* s = a2i_IPADDRESS(ip.c_str());
  if (s == nullptr) return false;
  GENERAL_NAME* gn = GENERAL_NAME_new();
  if (gn == nullptr) {
    ASN1_OCTET_STRING_free(s);
    return false;
  }
  GENERAL_NAME_set0_value(gn, GEN_IPADD, s);
  if (sk_GENERAL_NAME_push(names, gn) == 0) {
    GENERAL_NAME_free(gn);
    return false;
  }
  return true;
}

std::vector<std::string> ClaimUris(const DeviceClaims& c) {
  std::vector<std::string> uris;
  auto add = [&](absl::string_view kind, const std::string& v) {
    if (!v.empty()) uris.push_back(absl::StrCat(kUrnPrefix, kind, ":", v));
  };
  add("device", c.device_id);
  add("tenant", c.tenant_id);
  add("product", c.product_id);
  add("group", c.device_group_id);
  add("scope", c.scope);
  add("epoch", c.epoch);
  return uris;
}

void ClaimFromUri(absl::string_view uri, DeviceClaims* c) {
  if (!absl::ConsumePrefix(&uri, kUrnPrefix)) return;
  struct Field {
    absl::string_view kind;
    std::string* dst;
  } fields[] = {{"device:", &c->device_id},   {"tenant:", &c->tenant_id},
                {"product:", &c->product_id}, {"group:", &c->device_group_id},
                {"scope:", &c->scope},        {"epoch:", &c->epoch}};
  for (const Field& f : fields) {
    if (absl::ConsumePrefix(&uri, f.kind)) {
      *f.dst = std::string(uri);
      return;
    }
  }
}

absl::Status AddExt(X509* cert, int nid, void* value, bool critical) {
  if (X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return Fail(absl::InternalError(
        absl::StrCat("adding extension ", OBJ_nid2sn(nid), " failed")));
  }
  return absl::OkStatus();
}

// ---- Direct DER encoding of leaf certificates ----------------------------
//
// OpenSSL's X509 encoder (X509_new, X509_add1_ext_i2d, X509_sign,
// PEM_write_bio_X509) costs about 0.45M instructions per device certificate
// on top of the ECDSA signature (callgrind, docs/benchmarks.md). A device
// leaf has a fixed shape, so CertificateIssuer encodes its TBSCertificate
// directly (RFC 5280 DER, the same bytes, field for field and in the same
// order, as the general encoder below writes), signs SHA-256(TBS) with the
// issuer's cached EC key and wraps it. Anything outside that shape (CA
// certificates, self-signed, IP SANs, names that are not printable ASCII or
// exceed the X.520 upper bound of 64 characters) goes through the general
// encoder, which also rejects what is invalid. crypto_test compares the two
// encoders' TBSCertificate bytes for many specs.

// Set while IssueCertificate runs: forces the general encoder (the reference
// the direct encoder is compared with).
thread_local bool t_x509_encoder_only = false;

class X509EncoderOnly {
 public:
  X509EncoderOnly() : saved_(t_x509_encoder_only) {
    t_x509_encoder_only = true;
  }
  ~X509EncoderOnly() { t_x509_encoder_only = saved_; }
  X509EncoderOnly(const X509EncoderOnly&) = delete;
  X509EncoderOnly& operator=(const X509EncoderOnly&) = delete;

 private:
  bool saved_;
};

constexpr size_t kMaxNameChars = 64;  // ub-common-name, ub-organization-name

bool PrintableAscii(absl::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

bool DirectlyEncodable(const CertificateSpec& spec) {
  if (spec.usage == KeyUsage::kCa || !spec.ip_sans.empty()) return false;
  if (spec.common_name.size() > kMaxNameChars ||
      spec.organization.size() > kMaxNameChars ||
      !PrintableAscii(spec.common_name) || !PrintableAscii(spec.organization)) {
    return false;
  }
  for (const std::string& dns : spec.dns_sans) {
    if (!PrintableAscii(dns)) return false;
  }
  for (const std::string* v :
       {&spec.claims.device_id, &spec.claims.tenant_id, &spec.claims.product_id,
        &spec.claims.device_group_id, &spec.claims.scope, &spec.claims.epoch}) {
    if (!PrintableAscii(*v)) return false;
  }
  return true;
}

void AppendDerLength(std::string* out, size_t n) {
  if (n < 0x80) {
    out->push_back(static_cast<char>(n));
    return;
  }
  char buf[8];
  int len = 0;
  for (size_t v = n; v > 0; v >>= 8) buf[len++] = static_cast<char>(v & 0xff);
  out->push_back(static_cast<char>(0x80 | len));
  while (len > 0) out->push_back(buf[--len]);
}

void AppendTlv(std::string* out, uint8_t tag, absl::string_view content) {
  out->push_back(static_cast<char>(tag));
  AppendDerLength(out, content.size());
  out->append(content.data(), content.size());
}

std::string Tlv(uint8_t tag, absl::string_view content) {
  std::string out;
  out.reserve(content.size() + 6);
  AppendTlv(&out, tag, content);
  return out;
}

constexpr uint8_t kSequence = 0x30, kSet = 0x31, kInteger = 0x02,
                  kBitString = 0x03, kOctetString = 0x04, kOid = 0x06,
                  kUtf8String = 0x0c, kUtcTime = 0x17, kGeneralizedTime = 0x18;

absl::string_view Bytes(const char* s, size_t n) { return {s, n}; }

// ecdsa-with-SHA256 AlgorithmIdentifier (no parameters, RFC 5758).
constexpr char kEcdsaSha256Alg[] =
    "\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02";
// SubjectPublicKeyInfo prefix for an uncompressed P-256 point: id-ecPublicKey,
// prime256v1, BIT STRING of 66 bytes (0 unused bits, then the point).
constexpr char kP256SpkiPrefix[] =
    "\x30\x59\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48"
    "\xce\x3d\x03\x01\x07\x03\x42\x00";

// ASN1_TIME_set's choice: UTCTime for 1950-2049, GeneralizedTime otherwise.
void AppendCertTime(std::string* out, time_t t) {
  struct tm tm;
  gmtime_r(&t, &tm);
  const int year = tm.tm_year + 1900;
  char buf[20];
  if (year >= 1950 && year < 2050) {
    snprintf(buf, sizeof(buf), "%02d%02d%02d%02d%02d%02dZ", year % 100,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    AppendTlv(out, kUtcTime, buf);
  } else {
    snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    AppendTlv(out, kGeneralizedTime, buf);
  }
}

// One RDN: SET { SEQUENCE { OID 2.5.4.<attr>, UTF8String } }.
void AppendRdn(std::string* out, uint8_t attr, absl::string_view value) {
  std::string atv;
  AppendTlv(&atv, kOid, std::string{'\x55', '\x04', static_cast<char>(attr)});
  AppendTlv(&atv, kUtf8String, value);
  AppendTlv(out, kSet, Tlv(kSequence, atv));
}

// Extension ::= SEQUENCE { extnID (2.5.29.<id>), critical BOOLEAN DEFAULT
// FALSE, extnValue OCTET STRING }.
void AppendExtension(std::string* out, uint8_t id, bool critical,
                     absl::string_view value) {
  std::string ext;
  AppendTlv(&ext, kOid, std::string{'\x55', '\x1d', static_cast<char>(id)});
  if (critical) ext.append("\x01\x01\xff", 3);
  AppendTlv(&ext, kOctetString, value);
  AppendTlv(out, kSequence, ext);
}

absl::StatusOr<IssuedCertificate> IssueDirect(
    const CertificateSpec& spec, const EC_KEY* signing_key,
    const std::string& issuer_name_der, const std::string& authority_key_id) {
  IssuedCertificate out;
  uint64_t serial = spec.serial;
  while (serial == 0) {
    std::string r = RandomBytes(8);
    for (char c : r) serial = (serial << 8) | static_cast<uint8_t>(c);
    serial &= 0x7fffffffffffffffULL;
  }
  out.serial = serial;
  out.serial_hex = SerialToHex(serial);

  std::string tbs;
  tbs.reserve(640);
  tbs.append("\xa0\x03\x02\x01\x02", 5);  // [0] version v3
  {
    char be[9];
    int n = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
      uint8_t b = static_cast<uint8_t>(serial >> shift);
      if (n == 0 && b == 0) continue;
      if (n == 0 && (b & 0x80)) be[n++] = 0;
      be[n++] = static_cast<char>(b);
    }
    AppendTlv(&tbs, kInteger, Bytes(be, n));
  }
  tbs.append(kEcdsaSha256Alg, sizeof(kEcdsaSha256Alg) - 1);
  tbs.append(issuer_name_der);
  {
    std::string validity;
    AppendCertTime(&validity, ToCertTime(spec.not_before));
    AppendCertTime(&validity, ToCertTime(spec.not_after));
    AppendTlv(&tbs, kSequence, validity);
  }
  {
    std::string name;
    if (!spec.common_name.empty()) AppendRdn(&name, 3, spec.common_name);
    if (!spec.organization.empty()) AppendRdn(&name, 10, spec.organization);
    AppendTlv(&tbs, kSequence, name);
  }
  tbs.append(kP256SpkiPrefix, sizeof(kP256SpkiPrefix) - 1);
  tbs.append(spec.subject_public_key);
  {
    std::string exts;
    AppendExtension(&exts, 19, true,
                    Bytes("\x30\x00", 2));  // basicConstraints, not CA
    AppendExtension(
        &exts, 15, true,
        Bytes("\x03\x02\x07\x80", 4));  // keyUsage: digitalSignature
    std::string eku;
    if (spec.usage == KeyUsage::kServerAuth ||
        spec.usage == KeyUsage::kServerAndClientAuth) {
      eku.append("\x06\x08\x2b\x06\x01\x05\x05\x07\x03\x01", 10);
    }
    if (spec.usage == KeyUsage::kClientAuth ||
        spec.usage == KeyUsage::kServerAndClientAuth) {
      eku.append("\x06\x08\x2b\x06\x01\x05\x05\x07\x03\x02", 10);
    }
    AppendExtension(&exts, 37, false, Tlv(kSequence, eku));
    AppendExtension(&exts, 14, false,
                    Tlv(kOctetString, KeyId(spec.subject_public_key)));
    AppendExtension(&exts, 35, false,
                    Tlv(kSequence, Tlv(0x80, authority_key_id)));
    std::vector<std::string> uris = ClaimUris(spec.claims);
    if (!spec.dns_sans.empty() || !uris.empty()) {
      std::string names;
      for (const std::string& dns : spec.dns_sans) AppendTlv(&names, 0x82, dns);
      for (const std::string& uri : uris) AppendTlv(&names, 0x86, uri);
      AppendExtension(&exts, 17, false, Tlv(kSequence, names));
    }
    AppendTlv(&tbs, 0xa3, Tlv(kSequence, exts));
  }
  tbs = Tlv(kSequence, tbs);

  const std::string digest = Sha256(tbs);
  std::string sig(1 + ECDSA_size(signing_key), '\0');  // 0 unused bits first
  unsigned int sig_len = 0;
  if (ECDSA_sign(0, U8(digest), 32, reinterpret_cast<uint8_t*>(&sig[1]),
                 &sig_len, const_cast<EC_KEY*>(signing_key)) != 1) {
    return Fail(absl::InternalError("ECDSA_sign failed"));
  }
  sig.resize(1 + sig_len);
  std::string cert = std::move(tbs);
  cert.append(kEcdsaSha256Alg, sizeof(kEcdsaSha256Alg) - 1);
  AppendTlv(&cert, kBitString, sig);
  cert = Tlv(kSequence, cert);

  const std::string b64 = absl::Base64Escape(cert);
  out.pem.reserve(b64.size() + b64.size() / 64 + 64);
  out.pem.append("-----BEGIN CERTIFICATE-----\n");
  for (size_t i = 0; i < b64.size(); i += 64) {
    out.pem.append(b64, i, 64);
    out.pem.push_back('\n');
  }
  out.pem.append("-----END CERTIFICATE-----\n");
  return out;
}

}  // namespace

// ---- Issuance -------------------------------------------------------------

struct CertificateIssuer::Impl {
  internal::EcKeyPtr signing_key;  // private scalar + public point
  internal::EvpPkeyPtr signer;  // wraps signing_key; shared by all Issue calls
  std::string issuer_point;
  X509NamePtr issuer_name;      // null when self-signed (issuer = spec subject)
  std::string issuer_name_der;  // i2d of issuer_name (empty when self-signed)
  std::string authority_key_id;
};

CertificateIssuer::CertificateIssuer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
CertificateIssuer::~CertificateIssuer() = default;

const std::string& CertificateIssuer::public_key() const {
  return impl_->issuer_point;
}
bool CertificateIssuer::self_signed() const { return !impl_->issuer_name; }

absl::StatusOr<std::unique_ptr<CertificateIssuer>> CertificateIssuer::Create(
    const EcPrivateKey& issuer_key, absl::string_view issuer_cert_pem) {
  if (!issuer_key.valid()) {
    return absl::InvalidArgumentError("issuer key is empty");
  }
  auto impl = std::make_unique<Impl>();
  auto signing_key = internal::EcKeyFromScalar(issuer_key.scalar(), true);
  if (!signing_key.ok()) return signing_key.status();
  impl->signing_key = *std::move(signing_key);
  impl->issuer_point = internal::PointOf(impl->signing_key.get());
  if (impl->issuer_point.empty()) {
    return Fail(absl::InternalError("computing the issuer public key failed"));
  }
  impl->signer = internal::PkeyFromEcKey(impl->signing_key.get());
  if (!impl->signer) return Fail(absl::InternalError("EVP_PKEY_new"));

  if (issuer_cert_pem.empty()) {
    impl->authority_key_id = KeyId(impl->issuer_point);
  } else {
    auto issuer = ParseX509(issuer_cert_pem);
    if (!issuer.ok()) return issuer.status();
    internal::EvpPkeyPtr issuer_pub(X509_get_pubkey(issuer->get()));
    auto issuer_cert_point = internal::PointOfPkey(issuer_pub.get());
    if (!issuer_cert_point.ok()) return issuer_cert_point.status();
    if (*issuer_cert_point != impl->issuer_point) {
      return absl::InvalidArgumentError(
          "issuer key does not match the issuer certificate");
    }
    impl->issuer_name.reset(
        X509_NAME_dup(X509_get_subject_name(issuer->get())));
    if (!impl->issuer_name) return Fail(absl::InternalError("X509_NAME_dup"));
    uint8_t* name_der = nullptr;
    int name_len = i2d_X509_NAME(impl->issuer_name.get(), &name_der);
    if (name_len <= 0) return Fail(absl::InternalError("i2d_X509_NAME"));
    impl->issuer_name_der.assign(reinterpret_cast<const char*>(name_der),
                                 name_len);
    OPENSSL_free(name_der);
    Asn1OctetPtr ski(static_cast<ASN1_OCTET_STRING*>(X509_get_ext_d2i(
        issuer->get(), NID_subject_key_identifier, nullptr, nullptr)));
    if (ski) {
      impl->authority_key_id = std::string(
          reinterpret_cast<const char*>(ASN1_STRING_get0_data(ski.get())),
          ASN1_STRING_length(ski.get()));
    } else {
      impl->authority_key_id = KeyId(impl->issuer_point);
    }
  }
  ERR_clear_error();
  return std::unique_ptr<CertificateIssuer>(
      new CertificateIssuer(std::move(impl)));
}

std::string SerialToHex(uint64_t serial) {
  uint8_t be[8];
  for (int i = 7; i >= 0; --i, serial >>= 8) be[i] = serial & 0xff;
  int skip = 0;
  while (skip < 8 && be[skip] == 0) ++skip;
  if (skip == 8) return "00";
  return HexEncode(
      absl::string_view(reinterpret_cast<const char*>(be + skip), 8 - skip));
}

absl::StatusOr<std::string> CertificateIssuer::Issue(
    const CertificateSpec& spec) const {
  auto issued = IssueWithSerial(spec);
  if (!issued.ok()) return issued.status();
  return std::move(issued->pem);
}

absl::StatusOr<IssuedCertificate> CertificateIssuer::IssueWithSerial(
    const CertificateSpec& spec) const {
  if (spec.not_after <= spec.not_before) {
    return absl::InvalidArgumentError("not_after must be after not_before");
  }
  auto subject_key = internal::EcKeyFromPoint(spec.subject_public_key);
  if (!subject_key.ok()) return subject_key.status();
  const bool self_signed = !impl_->issuer_name;
  if (!self_signed && !t_x509_encoder_only && DirectlyEncodable(spec)) {
    return IssueDirect(spec, impl_->signing_key.get(), impl_->issuer_name_der,
                       impl_->authority_key_id);
  }
  if (self_signed && spec.subject_public_key != impl_->issuer_point) {
    return absl::InvalidArgumentError(
        "self-signed certificate: spec key must be the issuer key");
  }

  X509Ptr cert(X509_new());
  if (!cert) return Fail(absl::InternalError("X509_new"));
  if (X509_set_version(cert.get(), 2) != 1) {  // v3
    return Fail(absl::InternalError("X509_set_version"));
  }

  // Serial: positive, at most 63 bits.
  IssuedCertificate out;
  uint64_t serial = spec.serial;
  while (serial == 0) {
    std::string r = RandomBytes(8);
    for (char c : r) serial = (serial << 8) | static_cast<uint8_t>(c);
    serial &= 0x7fffffffffffffffULL;
  }
  out.serial = serial;
  out.serial_hex = SerialToHex(serial);
  uint8_t serial_be[8];
  for (int i = 7; i >= 0; --i, serial >>= 8) serial_be[i] = serial & 0xff;
  internal::BnPtr serial_bn(BN_bin2bn(serial_be, 8, nullptr));
  if (!serial_bn ||
      BN_to_ASN1_INTEGER(serial_bn.get(), X509_get_serialNumber(cert.get())) ==
          nullptr) {
    return Fail(absl::InternalError("setting serial failed"));
  }

  // The subject is built in place in the new certificate's (empty) name:
  // X509_set_subject_name would copy and re-encode a separate X509_NAME.
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (auto s = AddNameEntries(subject, spec.common_name, spec.organization);
      !s.ok()) {
    return s;
  }
  if (X509_set_issuer_name(
          cert.get(), self_signed ? subject : impl_->issuer_name.get()) != 1) {
    return Fail(absl::InternalError("X509_set_issuer_name"));
  }

  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()),
                    ToCertTime(spec.not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                    ToCertTime(spec.not_after)) == nullptr) {
    return Fail(absl::InvalidArgumentError("validity out of range"));
  }

  internal::EvpPkeyPtr subject_pkey =
      internal::PkeyFromEcKey(subject_key->get());
  if (!subject_pkey || X509_set_pubkey(cert.get(), subject_pkey.get()) != 1) {
    return Fail(absl::InternalError("X509_set_pubkey"));
  }

  // basicConstraints (critical).
  const bool is_ca = spec.usage == KeyUsage::kCa;
  {
    BasicConstraintsPtr bc(BASIC_CONSTRAINTS_new());
    if (!bc) return Fail(absl::InternalError("BASIC_CONSTRAINTS_new"));
    bc->ca = is_ca ? 0xff : 0;
    if (is_ca && spec.path_len >= 0) {
      bc->pathlen = ASN1_INTEGER_new();
      if (bc->pathlen == nullptr ||
          ASN1_INTEGER_set(bc->pathlen, spec.path_len) != 1) {
        return Fail(absl::InternalError("pathlen"));
      }
    }
    if (auto s = AddExt(cert.get(), NID_basic_constraints, bc.get(), true);
        !s.ok()) {
      return s;
    }
  }
  // keyUsage (critical).
  {
    Asn1BitPtr ku(ASN1_BIT_STRING_new());
    if (!ku) return Fail(absl::InternalError("ASN1_BIT_STRING_new"));
    // Bits: 0 digitalSignature, 5 keyCertSign, 6 cRLSign.
    std::vector<int> bits = {0};
    if (is_ca) bits = {0, 5, 6};
    for (int bit : bits) {
      if (ASN1_BIT_STRING_set_bit(ku.get(), bit, 1) != 1) {
        return Fail(absl::InternalError("keyUsage"));
      }
    }
    if (auto s = AddExt(cert.get(), NID_key_usage, ku.get(), true); !s.ok()) {
      return s;
    }
  }
  // extendedKeyUsage (leaf certificates only: an EKU on a CA would restrict
  // every certificate below it).
  if (!is_ca) {
    EkuPtr eku(sk_ASN1_OBJECT_new_null());
    if (!eku) return Fail(absl::InternalError("EKU"));
    if (spec.usage == KeyUsage::kServerAuth ||
        spec.usage == KeyUsage::kServerAndClientAuth) {
      sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_server_auth));
    }
    if (spec.usage == KeyUsage::kClientAuth ||
        spec.usage == KeyUsage::kServerAndClientAuth) {
      sk_ASN1_OBJECT_push(eku.get(), OBJ_nid2obj(NID_client_auth));
    }
    if (auto s = AddExt(cert.get(), NID_ext_key_usage, eku.get(), false);
        !s.ok()) {
      return s;
    }
  }
  // subjectKeyIdentifier and authorityKeyIdentifier.
  {
    Asn1OctetPtr ski = Octets(KeyId(spec.subject_public_key));
    if (!ski) return Fail(absl::InternalError("SKI"));
    if (auto s =
            AddExt(cert.get(), NID_subject_key_identifier, ski.get(), false);
        !s.ok()) {
      return s;
    }
    AuthorityKeyIdPtr aki(AUTHORITY_KEYID_new());
    if (!aki) return Fail(absl::InternalError("AKI"));
    aki->keyid = Octets(impl_->authority_key_id).release();
    if (aki->keyid == nullptr) return Fail(absl::InternalError("AKI"));
    if (auto s =
            AddExt(cert.get(), NID_authority_key_identifier, aki.get(), false);
        !s.ok()) {
      return s;
    }
  }
  // subjectAltName: DNS, IP, then claim URIs.
  std::vector<std::string> uris = ClaimUris(spec.claims);
  if (!spec.dns_sans.empty() || !spec.ip_sans.empty() || !uris.empty()) {
    GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
    if (!names) return Fail(absl::InternalError("GENERAL_NAMES"));
    for (const std::string& dns : spec.dns_sans) {
      if (!AddIa5Name(names.get(), GEN_DNS, dns)) {
        return Fail(absl::InvalidArgumentError("invalid DNS SAN: " + dns));
      }
    }
    for (const std::string& ip : spec.ip_sans) {
      if (!AddIpName(names.get(), ip)) {
        return Fail(absl::InvalidArgumentError("invalid IP SAN: " + ip));
      }
    }
    for (const std::string& uri : uris) {
      if (!AddIa5Name(names.get(), GEN_URI, uri)) {
        return Fail(absl::InvalidArgumentError("invalid URI SAN: " + uri));
      }
    }
    if (auto s = AddExt(cert.get(), NID_subject_alt_name, names.get(), false);
        !s.ok()) {
      return s;
    }
  }

  if (X509_sign(cert.get(), impl_->signer.get(), internal::Sha256Md()) <= 0) {
    return Fail(absl::InternalError("X509_sign failed"));
  }
  out.pem = ToPemX509(cert.get());
  if (out.pem.empty()) return absl::InternalError("PEM_write_bio_X509 failed");
  return out;
}

absl::StatusOr<std::string> IssueCertificate(
    const CertificateSpec& spec, const EcPrivateKey& issuer_key,
    absl::string_view issuer_cert_pem) {
  // Same checks, in the same order, as before CertificateIssuer existed, so
  // callers see the same error when several things are wrong.
  if (!issuer_key.valid()) {
    return absl::InvalidArgumentError("issuer key is empty");
  }
  if (spec.not_after <= spec.not_before) {
    return absl::InvalidArgumentError("not_after must be after not_before");
  }
  if (auto subject_key = internal::EcKeyFromPoint(spec.subject_public_key);
      !subject_key.ok()) {
    return subject_key.status();
  }
  auto issuer = CertificateIssuer::Create(issuer_key, issuer_cert_pem);
  if (!issuer.ok()) return issuer.status();
  // The general encoder: IssueCertificate is the reference the direct
  // encoder is tested against (crypto_test compares them byte for byte).
  X509EncoderOnly x509_only;
  return (*issuer)->Issue(spec);
}

// ---- Parsing --------------------------------------------------------------

absl::StatusOr<ParsedCertificate> ParseCertificate(absl::string_view pem) {
  auto cert = ParseX509(pem);
  if (!cert.ok()) return cert.status();
  return internal::FieldsOfX509(cert->get());
}

namespace internal {

absl::StatusOr<ParsedCertificate> FieldsOfX509(X509* x) {
  internal::EvpPkeyPtr pub(X509_get_pubkey(x));
  auto point = internal::PointOfPkey(pub.get());
  if (!point.ok()) return point.status();
  uint8_t* der = nullptr;
  int der_len = i2d_X509(x, &der);
  if (der_len <= 0) return Fail(absl::InternalError("i2d_X509 failed"));
  std::string der_bytes(reinterpret_cast<char*>(der), der_len);
  OPENSSL_free(der);
  return CertificateFields(X509_get_subject_name(x), X509_get_issuer_name(x),
                           X509_get_serialNumber(x), X509_get0_notBefore(x),
                           X509_get0_notAfter(x), X509_get0_extensions(x),
                           *std::move(point), std::move(der_bytes));
}

ParsedCertificate CertificateFields(const X509_NAME* subject,
                                    const X509_NAME* issuer,
                                    const ASN1_INTEGER* serial_number,
                                    const ASN1_TIME* not_before,
                                    const ASN1_TIME* not_after,
                                    const STACK_OF(X509_EXTENSION) * exts,
                                    std::string public_key, std::string der) {
  ParsedCertificate out;
  out.common_name = NameEntry(subject, NID_commonName);
  out.organization = NameEntry(subject, NID_organizationName);
  out.issuer_common_name = NameEntry(issuer, NID_commonName);
  out.subject_line = NameLine(subject);
  out.issuer_line = NameLine(issuer);

  internal::BnPtr serial(ASN1_INTEGER_to_BN(serial_number, nullptr));
  if (serial) {
    std::string bytes(BN_num_bytes(serial.get()), '\0');
    BN_bn2bin(serial.get(), reinterpret_cast<uint8_t*>(&bytes[0]));
    out.serial_hex = HexEncode(bytes);
    if (out.serial_hex.empty()) out.serial_hex = "00";
  }
  out.public_key = std::move(public_key);
  out.not_before = FromAsn1Time(not_before);
  out.not_after = FromAsn1Time(not_after);

  BasicConstraintsPtr bc(static_cast<BASIC_CONSTRAINTS*>(
      X509V3_get_d2i(exts, NID_basic_constraints, nullptr, nullptr)));
  out.is_ca = bc && bc->ca;
  out.server_auth = HasEkuIn(exts, NID_server_auth);
  out.client_auth = HasEkuIn(exts, NID_client_auth);

  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509V3_get_d2i(exts, NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (size_t i = 0;
         i < static_cast<size_t>(sk_GENERAL_NAME_num(names.get())); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
      if (gn->type == GEN_DNS) {
        out.dns_sans.push_back(Asn1ToUtf8(gn->d.dNSName));
      } else if (gn->type == GEN_URI) {
        std::string uri = Asn1ToUtf8(gn->d.uniformResourceIdentifier);
        ClaimFromUri(uri, &out.claims);
        out.uri_sans.push_back(std::move(uri));
      }
    }
  }
  out.der = std::move(der);
  ERR_clear_error();
  return out;
}

}  // namespace internal

std::vector<std::string> SplitPemChain(absl::string_view pem) {
  static constexpr absl::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  static constexpr absl::string_view kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    size_t begin = pem.find(kBegin, pos);
    if (begin == absl::string_view::npos) break;
    size_t end = pem.find(kEnd, begin);
    if (end == absl::string_view::npos) break;
    end += kEnd.size();
    out.push_back(absl::StrCat(pem.substr(begin, end - begin), "\n"));
    pos = end;
  }
  return out;
}

// ---- Verification ---------------------------------------------------------

namespace {

// ParsedIssuers keeps what VerifyChain is handed again and again — a fleet's
// platform roots, a shard's issuing CA — parsed, keyed by their exact PEM
// bytes, so a call parses only its leaf. OpenSSL 3 parses an EC certificate
// through its decoder framework (~0.1-0.3 ms each); a twin verifying its
// issued chain parsed three certificates and built a store every time
// (issue 14: 12 % of loadgen's CPU at one verification per 100 twins).
// Only successful parses are kept; every signature, validity window and
// constraint is still checked on each call (X509_verify_cert does not cache
// verification results). Bounded (oldest entry dropped first); thread-safe
// (a parsed X509 and a built X509_STORE are shared read-only by reference).
class ParsedIssuers {
 public:
  static ParsedIssuers& Get() {
    static auto* cache = new ParsedIssuers;
    return *cache;
  }

  // Cert: the parsed certificate of `pem` (a new reference).
  absl::StatusOr<X509Ptr> Cert(absl::string_view pem) {
    {
      absl::MutexLock l(&mu_);
      for (const auto& [key, cert] : certs_) {
        if (key == pem) {
          X509_up_ref(cert.get());
          return X509Ptr(cert.get());
        }
      }
    }
    auto parsed = ParseX509(pem);
    if (!parsed.ok()) return parsed.status();
    X509_up_ref(parsed->get());
    X509Ptr kept(parsed->get());
    absl::MutexLock l(&mu_);
    if (certs_.size() >= kMaxCerts) certs_.pop_front();
    certs_.emplace_back(std::string(pem), std::move(kept));
    return parsed;
  }

  // Store: a trust store holding every certificate of `roots_pem` (a new
  // reference). Errors as VerifyChain's.
  absl::StatusOr<X509StorePtr> Store(absl::string_view roots_pem) {
    {
      absl::MutexLock l(&mu_);
      for (const auto& [key, store] : stores_) {
        if (key == roots_pem) {
          X509_STORE_up_ref(store.get());
          return X509StorePtr(store.get());
        }
      }
    }
    X509StorePtr store(X509_STORE_new());
    if (!store) return Fail(absl::InternalError("X509_STORE_new"));
    std::vector<std::string> roots = SplitPemChain(roots_pem);
    if (roots.empty()) {
      return absl::InvalidArgumentError("no root certificates");
    }
    for (const std::string& pem : roots) {
      auto root = ParseX509(pem);
      if (!root.ok()) return root.status();
      if (X509_STORE_add_cert(store.get(), root->get()) != 1) {
        ERR_clear_error();  // duplicate roots are harmless
      }
    }
    X509_STORE_up_ref(store.get());
    X509StorePtr kept(store.get());
    absl::MutexLock l(&mu_);
    if (stores_.size() >= kMaxStores) stores_.pop_front();
    stores_.emplace_back(std::string(roots_pem), std::move(kept));
    return store;
  }

 private:
  static constexpr size_t kMaxCerts = 32;
  static constexpr size_t kMaxStores = 8;
  absl::Mutex mu_;
  std::deque<std::pair<std::string, X509Ptr>> certs_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<std::string, X509StorePtr>> stores_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::Status VerifyChain(absl::string_view leaf_pem,
                         absl::string_view intermediates_pem,
                         absl::string_view roots_pem, absl::Time now,
                         bool require_client_auth) {
  auto leaf = ParseX509(leaf_pem);
  if (!leaf.ok()) return leaf.status();

  auto store = ParsedIssuers::Get().Store(roots_pem);
  if (!store.ok()) return store.status();

  STACK_OF(X509)* untrusted = sk_X509_new_null();
  if (untrusted == nullptr) return Fail(absl::InternalError("sk_X509_new"));
  auto free_untrusted = [](STACK_OF(X509) * s) {
    sk_X509_pop_free(s, X509_free);
  };
  std::unique_ptr<STACK_OF(X509), decltype(free_untrusted)> untrusted_owner(
      untrusted, free_untrusted);
  for (const std::string& pem : SplitPemChain(intermediates_pem)) {
    auto cert = ParsedIssuers::Get().Cert(pem);
    if (!cert.ok()) return cert.status();
    if (sk_X509_push(untrusted, cert->get()) == 0) {
      return Fail(absl::InternalError("sk_X509_push"));
    }
    cert->release();
  }

  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store->get(), leaf->get(),
                                  untrusted) != 1) {
    return Fail(absl::InternalError("X509_STORE_CTX_init"));
  }
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()),
                             ToCertTime(now));
  if (X509_verify_cert(ctx.get()) != 1) {
    return internal::VerifyError(X509_STORE_CTX_get_error(ctx.get()));
  }
  return internal::CheckClientAuth(leaf->get(), require_client_auth);
}

// ---- CSRs -----------------------------------------------------------------

absl::StatusOr<std::string> CreateCsr(const EcPrivateKey& key,
                                      absl::string_view common_name) {
  if (!key.valid()) return absl::InvalidArgumentError("empty key");
  auto ec = internal::EcKeyFromScalar(key.scalar(), true);
  if (!ec.ok()) return ec.status();
  internal::EvpPkeyPtr pkey = internal::PkeyFromEcKey(ec->get());
  auto name = MakeName(common_name, "");
  if (!name.ok()) return name.status();
  X509ReqPtr req(X509_REQ_new());
  if (!pkey || !req || X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_REQ_set_subject_name(req.get(), name->get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), pkey.get()) != 1 ||
      X509_REQ_sign(req.get(), pkey.get(), internal::Sha256Md()) <= 0) {
    return Fail(absl::InternalError("building CSR failed"));
  }
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return Fail(absl::InternalError("PEM_write_bio_X509_REQ failed"));
  }
  return internal::BioContents(bio.get());
}

absl::StatusOr<ParsedCsr> ParseCsr(absl::string_view pem) {
  internal::BioPtr bio = internal::MemBio(pem);
  X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return Fail(absl::InvalidArgumentError("unparseable CSR"));
  internal::EvpPkeyPtr pkey(X509_REQ_get_pubkey(req.get()));
  auto point = internal::PointOfPkey(pkey.get());
  if (!point.ok()) return point.status();
  if (X509_REQ_verify(req.get(), pkey.get()) != 1) {
    return Fail(absl::UnauthenticatedError("CSR signature does not verify"));
  }
  ParsedCsr out;
  out.common_name =
      NameEntry(X509_REQ_get_subject_name(req.get()), NID_commonName);
  out.public_key = *point;
  return out;
}

}  // namespace sphere::crypto
