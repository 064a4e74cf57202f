// Proving benchmark (issue 14): appsvc's CPU per device proof
// (GatewayAuth::ProveDevice: chain verification, proof signature, registry
// checks, token), with the tenant CA remembered (two ECDSA verifies per
// proof) and without (max_remembered_cas 0: three), with the chain as PEM
// and (remembered) as DER certificates, next to a floor
// measured in the same run: one P-256 verify, so 2 and 3 verifies per
// proof give the crypto bound of each.
//
//   bazel build -c opt //appsvc:prove_benchmark
//   bazel-out/k8-opt/bin/appsvc/prove_benchmark --devices=500 --rounds=4
//
// One thread; rates are per second of this thread's CPU time (best of three
// alternating measurements), and only ProveDevice is timed (challenges and the devices'
// signatures are made outside the timed section). Prints one line per
// measurement; never fails on a number.
#include <time.h>

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "appsvc/gateway_auth.h"
#include "appsvc/test_pki.h"
#include "common/crypto/crypto.h"
#include "common/crypto/verified_issuers.h"
#include "common/util/clock.h"

ABSL_FLAG(int, devices, 500, "Distinct devices (each proves once a round)");
ABSL_FLAG(int, rounds, 4, "Proofs per device per measurement");

namespace contoso::appsvc {
namespace {

namespace crypto = sphere::crypto;

// ThreadCpu: this thread's CPU time (a loaded machine's other work does not
// count, unlike wall time).
absl::Duration ThreadCpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::DurationFromTimespec(ts);
}

// ProofsPerSecond: proofs of every device, `rounds` times, through a
// GatewayAuth remembering up to `remembered_cas` tenant CAs.
// With `der`, each chain goes as DER certificates (GatewayProveRequest's
// chain_der), decoded from the PEM outside the timed section.
double ProofsPerSecond(TestPki& pki, sphere::Clock* clock,
                       const std::vector<TestDevice>& devices, int rounds,
                       size_t remembered_cas, bool der, uint64_t* via_remembered,
                       uint64_t* read_directly) {
  GatewayAuthOptions o;
  o.max_remembered_cas = remembered_cas;
  GatewayAuth auth(std::string(32, 'k'), pki.root_pem(), &pki.registry(),
                   clock, o);
  std::vector<std::vector<std::string>> ders(devices.size());
  std::vector<std::vector<absl::string_view>> der_views(devices.size());
  if (der) {
    for (size_t i = 0; i < devices.size(); ++i) {
      for (const std::string& pem : crypto::SplitPemChain(devices[i].chain)) {
        auto d = crypto::CertificatePemToDer(pem);
        if (!d.ok()) std::abort();
        ders[i].push_back(*std::move(d));
      }
      der_views[i].assign(ders[i].begin(), ders[i].end());
    }
  }
  absl::Duration timed;
  uint64_t proofs = 0;
  for (int r = 0; r < rounds; ++r) {
    std::vector<std::string> nonces, sigs;
    for (const TestDevice& d : devices) {
      auto nonce = auth.Challenge(d.id);
      auto sig = d.key.Sign(GatewayAuth::ProofMessage(d.id, *nonce));
      if (!nonce.ok() || !sig.ok()) std::abort();
      nonces.push_back(*nonce);
      sigs.push_back(*sig);
    }
    const absl::Duration t0 = ThreadCpu();
    for (size_t i = 0; i < devices.size(); ++i) {
      GatewayAuth::ProofChain chain;
      if (der) {
        chain.der = der_views[i];
      } else {
        chain.pem = devices[i].chain;
      }
      auto p = auth.ProveDevice(devices[i].id, nonces[i], chain, sigs[i]);
      if (!p.ok()) {
        std::fprintf(stderr, "proof refused: %s\n",
                     p.status().ToString().c_str());
        std::abort();
      }
      ++proofs;
    }
    timed += ThreadCpu() - t0;
  }
  *via_remembered = auth.chains_via_remembered_ca();
  *read_directly = auth.leaves_read_directly();
  return proofs / absl::ToDoubleSeconds(timed);
}

int Main() {
  const int n = absl::GetFlag(FLAGS_devices);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  sphere::FakeClock clock(absl::Now());
  TestPki pki(&clock);
  std::vector<TestDevice> devices;
  for (int i = 0; i < n; ++i) devices.push_back(pki.Device("full"));

  // Floor: one P-256 verify (a proof's signature), same thread.
  const std::string msg(64, 'm');
  auto sig = devices[0].key.Sign(msg);
  const std::string pub = devices[0].key.PublicKey();
  const absl::Duration v0 = ThreadCpu();
  int verifies = 0;
  while (ThreadCpu() - v0 < absl::Seconds(1)) {
    for (int i = 0; i < 100; ++i, ++verifies) {
      if (!crypto::EcdsaVerify(pub, msg, *sig).ok()) std::abort();
    }
  }
  const double verify_per_s =
      verifies / absl::ToDoubleSeconds(ThreadCpu() - v0);

  // Floor: parsing one device certificate (OpenSSL 3.0 decodes its public
  // key through the provider decoder framework on every parse).
  const std::string leaf = crypto::SplitPemChain(devices[0].chain)[0];
  const absl::Duration p0 = ThreadCpu();
  int parses = 0;
  while (ThreadCpu() - p0 < absl::Seconds(1)) {
    for (int i = 0; i < 20; ++i, ++parses) {
      if (!crypto::ParseCertificate(leaf).ok()) std::abort();
    }
  }
  const double parse_per_s = parses / absl::ToDoubleSeconds(ThreadCpu() - p0);

  // Alternating, three times each, best of each: the machine's load varies.
  uint64_t hits_off = 0, hits_on = 0, direct_off = 0, direct_on = 0;
  uint64_t hits_der = 0, direct_der = 0;
  double off = 0, on = 0, on_der = 0;
  for (int i = 0; i < 3; ++i) {
    off = std::max(off, ProofsPerSecond(pki, &clock, devices, rounds, 0,
                                        /*der=*/false, &hits_off, &direct_off));
    on = std::max(on, ProofsPerSecond(pki, &clock, devices, rounds, 64,
                                      /*der=*/false, &hits_on, &direct_on));
    on_der =
        std::max(on_der, ProofsPerSecond(pki, &clock, devices, rounds, 64,
                                         /*der=*/true, &hits_der, &direct_der));
  }
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("devices=%d rounds=%d load_average_1m=%.1f\n", n, rounds,
              load[0]);
  std::printf("floor  P-256 verify, 1 thread          : %8.0f /s (%.1f us)\n",
              verify_per_s, 1e6 / verify_per_s);
  std::printf("floor  parse a device certificate    : %8.0f /s (%.1f us)\n",
              parse_per_s, 1e6 / parse_per_s);
  std::printf(
      "appsvc proof, every chain verified   : %8.0f proofs/s = %.1f us "
      "(3-verify bound %.0f/s: %.0f%%)\n",
      off, 1e6 / off, verify_per_s / 3, 100 * off / (verify_per_s / 3));
  std::printf(
      "appsvc proof, tenant CA remembered   : %8.0f proofs/s = %.1f us "
      "(2-verify bound %.0f/s: %.0f%%; %llu of %llu via the remembered CA, "
      "%llu read without OpenSSL's X509 parse)\n",
      on, 1e6 / on, verify_per_s / 2, 100 * on / (verify_per_s / 2),
      static_cast<unsigned long long>(hits_on),
      static_cast<unsigned long long>(n) * rounds,
      static_cast<unsigned long long>(direct_on));
  std::printf(
      "appsvc proof, remembered, DER chain  : %8.0f proofs/s = %.1f us "
      "(2-verify bound %.0f/s: %.0f%%; %llu of %llu via the remembered CA, "
      "%llu read without OpenSSL's X509 parse)\n",
      on_der, 1e6 / on_der, verify_per_s / 2,
      100 * on_der / (verify_per_s / 2),
      static_cast<unsigned long long>(hits_der),
      static_cast<unsigned long long>(n) * rounds,
      static_cast<unsigned long long>(direct_der));
  return 0;
}

}  // namespace
}  // namespace contoso::appsvc

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return contoso::appsvc::Main();
}
