// Internal X.509 helpers x509.cc defines and verified_issuers.cc shares
// (both in common/crypto). Not part of the API.
#ifndef SPHERE_COMMON_CRYPTO_X509_INTERNAL_H_
#define SPHERE_COMMON_CRYPTO_X509_INTERNAL_H_

#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <time.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/crypto/crypto.h"
#include "common/crypto/internal.h"

namespace sphere::crypto::internal {

using X509Ptr = Ptr<X509, X509_free>;
using X509StorePtr = Ptr<X509_STORE, X509_STORE_free>;
using X509StoreCtxPtr = Ptr<X509_STORE_CTX, X509_STORE_CTX_free>;
using EkuPtr = Ptr<EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free>;
using X509NamePtr = Ptr<X509_NAME, X509_NAME_free>;
using Asn1TimePtr = Ptr<ASN1_TIME, ASN1_TIME_free>;
using Asn1IntegerPtr = Ptr<ASN1_INTEGER, ASN1_INTEGER_free>;
using Asn1OctetPtr = Ptr<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using Asn1BitPtr = Ptr<ASN1_BIT_STRING, ASN1_BIT_STRING_free>;
using BasicConstraintsPtr = Ptr<BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free>;
using AuthorityKeyIdPtr = Ptr<AUTHORITY_KEYID, AUTHORITY_KEYID_free>;
using GeneralNamesPtr = Ptr<GENERAL_NAMES, GENERAL_NAMES_free>;

// `t` as a certificate time_t, clamped to [epoch, 9999-12-31T23:59:59Z].
time_t ToCertTime(absl::Time t);

// The first PEM certificate of `pem`.
absl::StatusOr<X509Ptr> ParseX509(absl::string_view pem);

// The fields crypto::ParseCertificate reads, from an already parsed
// certificate (so a caller that verified `x` need not parse it again).
absl::StatusOr<ParsedCertificate> FieldsOfX509(X509* x);

// CertificateFields: the ParsedCertificate of a certificate given by its
// parts (FieldsOfX509 passes an X509's; VerifiedIssuers a leaf it decoded
// itself), so both read every field the same way. `public_key` is the
// 65-byte SEC1 point, `der` the certificate's DER.
ParsedCertificate CertificateFields(const X509_NAME* subject,
                                    const X509_NAME* issuer,
                                    const ASN1_INTEGER* serial_number,
                                    const ASN1_TIME* not_before,
                                    const ASN1_TIME* not_after,
                                    const STACK_OF(X509_EXTENSION) * exts,
                                    std::string public_key, std::string der);

// Whether `cert` (or the extensions `exts`) has extended key usage `nid`.
bool HasEku(X509* cert, int nid);
bool HasEkuIn(const STACK_OF(X509_EXTENSION) * exts, int nid);

// The error crypto::VerifyChain gives for a failed X509_verify_cert
// (FailedPrecondition for a time window, Unauthenticated otherwise).
absl::Status VerifyError(int err);

// Unauthenticated when client auth is required and `leaf` lacks it; else
// OK (clearing this thread's OpenSSL error queue).
absl::Status CheckClientAuth(X509* leaf, bool require_client_auth);

}  // namespace sphere::crypto::internal

#endif  // SPHERE_COMMON_CRYPTO_X509_INTERNAL_H_
