// Throughput of the common/crypto primitives. Run with
//   bazel run -c opt //common/crypto:crypto_benchmark
// (add --config=boringssl for the BoringSSL backend).
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/obj_mac.h>

#include <string>

#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "common/crypto/crypto.h"

namespace sphere::crypto {
namespace {

void BM_EcdsaSign(benchmark::State& state) {
  EcPrivateKey key = EcPrivateKey::Generate();
  std::string msg = "device attestation nonce";
  for (auto _ : state) {
    auto sig = key.Sign(msg);
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EcdsaSign);

// Baseline for EcPrivateKey's design: a persistent EC_KEY reused across
// signatures, versus BM_EcdsaSign which builds one per call from the scalar.
void BM_EcdsaSignPersistentEcKey(benchmark::State& state) {
  EcPrivateKey key = EcPrivateKey::Generate();
  EC_KEY* ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  BIGNUM* d = BN_bin2bn(reinterpret_cast<const uint8_t*>(key.scalar().data()),
                        32, nullptr);
  EC_KEY_set_private_key(ec, d);
  std::string digest = Sha256("device attestation nonce");
  uint8_t sig[80];
  for (auto _ : state) {
    unsigned int len = 0;
    ECDSA_sign(0, reinterpret_cast<const uint8_t*>(digest.data()), 32, sig,
               &len, ec);
    benchmark::DoNotOptimize(len);
  }
  BN_free(d);
  EC_KEY_free(ec);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EcdsaSignPersistentEcKey);

void BM_EcdsaVerify(benchmark::State& state) {
  EcPrivateKey key = EcPrivateKey::Generate();
  std::string pub = key.PublicKey();
  std::string msg = "device attestation nonce";
  std::string sig = *key.Sign(msg);
  for (auto _ : state) {
    absl::Status s = EcdsaVerify(pub, msg, sig);
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EcdsaVerify);

void BM_Sha256(benchmark::State& state) {
  std::string data = RandomBytes(state.range(0));
  for (auto _ : state) {
    std::string d = Sha256(data);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(state.iterations() * data.size());
}
BENCHMARK(BM_Sha256)->Arg(64)->Arg(1024);

void BM_HmacSha256(benchmark::State& state) {
  std::string key = RandomBytes(32);
  std::string data = RandomBytes(state.range(0));
  for (auto _ : state) {
    std::string d = HmacSha256(key, data);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(state.iterations() * data.size());
}
BENCHMARK(BM_HmacSha256)->Arg(64)->Arg(1024);

void BM_AesCtrXor(benchmark::State& state) {
  std::string key = RandomBytes(32), iv = RandomBytes(16);
  std::string data = RandomBytes(state.range(0));
  uint64_t offset = 0;
  for (auto _ : state) {
    absl::Status s = AesCtrXor(key, iv, offset, data.data(), data.size());
    benchmark::DoNotOptimize(s);
    offset += 7;  // exercise unaligned starts too
  }
  state.SetBytesProcessed(state.iterations() * data.size());
}
BENCHMARK(BM_AesCtrXor)->Arg(4096)->Arg(64 * 1024);

void BM_AesGcmSeal(benchmark::State& state) {
  std::string key = RandomBytes(32), nonce = RandomBytes(12);
  std::string data = RandomBytes(state.range(0));
  for (auto _ : state) {
    auto sealed = AesGcmSeal(key, nonce, data, "aad");
    benchmark::DoNotOptimize(sealed);
  }
  state.SetBytesProcessed(state.iterations() * data.size());
}
BENCHMARK(BM_AesGcmSeal)->Arg(64)->Arg(64 * 1024);

struct Ca {
  EcPrivateKey key;
  std::string pem;
};

Ca MakeCa() {
  Ca ca{EcPrivateKey::Generate(), ""};
  CertificateSpec spec;
  spec.common_name = "Bench CA";
  spec.subject_public_key = ca.key.PublicKey();
  spec.not_before = absl::FromUnixSeconds(1767225600);
  spec.not_after = spec.not_before + absl::Hours(24 * 365);
  spec.usage = KeyUsage::kCa;
  ca.pem = *IssueCertificate(spec, ca.key, "");
  return ca;
}

CertificateSpec DeviceSpec(const std::string& pub) {
  CertificateSpec spec;
  spec.common_name = "device-1";
  spec.subject_public_key = pub;
  spec.not_before = absl::FromUnixSeconds(1767225600);
  spec.not_after = spec.not_before + absl::Hours(24);
  spec.usage = KeyUsage::kClientAuth;
  spec.claims.device_id = "1";
  spec.claims.tenant_id = "t";
  spec.claims.scope = "full";
  return spec;
}

void BM_IssueCertificate(benchmark::State& state) {
  Ca ca = MakeCa();
  CertificateSpec spec = DeviceSpec(EcPrivateKey::Generate().PublicKey());
  for (auto _ : state) {
    auto pem = IssueCertificate(spec, ca.key, ca.pem);
    benchmark::DoNotOptimize(pem);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IssueCertificate);

// The same certificate through a CertificateIssuer built once (issuer PEM
// parsed and signing key prepared outside the loop).
void BM_CertificateIssuerIssue(benchmark::State& state) {
  Ca ca = MakeCa();
  auto issuer = *CertificateIssuer::Create(ca.key, ca.pem);
  CertificateSpec spec = DeviceSpec(EcPrivateKey::Generate().PublicKey());
  for (auto _ : state) {
    auto issued = issuer->IssueWithSerial(spec);
    benchmark::DoNotOptimize(issued);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CertificateIssuerIssue);

void BM_ParseCertificate(benchmark::State& state) {
  Ca ca = MakeCa();
  std::string pem = *IssueCertificate(
      DeviceSpec(EcPrivateKey::Generate().PublicKey()), ca.key, ca.pem);
  for (auto _ : state) {
    auto parsed = ParseCertificate(pem);
    benchmark::DoNotOptimize(parsed);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseCertificate);

void BM_VerifyChain(benchmark::State& state) {
  Ca ca = MakeCa();
  std::string pem = *IssueCertificate(
      DeviceSpec(EcPrivateKey::Generate().PublicKey()), ca.key, ca.pem);
  absl::Time now = absl::FromUnixSeconds(1767225600) + absl::Hours(1);
  for (auto _ : state) {
    absl::Status s = VerifyChain(pem, "", ca.pem, now, true);
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyChain);

}  // namespace
}  // namespace sphere::crypto
