#include "loadgen/telemetry_phase.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "appsvc/gateway_contract.h"
#include "client/attestation_client.h"
#include "client/backoff.h"
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "loadgen/phase_cpu.h"
#include "protos/contoso.grpc.pb.h"
#include "twin/driver.h"

namespace sphere::loadgen {
namespace {

namespace cv1 = ::contoso::v1;

constexpr char kMethod[] = "/contoso.v1.ContosoGateway/ReportTelemetryBatch";
// appsvc's limits and proof message: appsvc/gateway_contract.h.
constexpr size_t kProveGroup = 1024;  // chains of one group (two held)
// Twins per GetChallenges/ProveBatch call, and such calls at once.
constexpr size_t kProveBatch = ::contoso::appsvc::kMaxProveBatch;
constexpr int kProveCallers = 4;
// A kept certificate is used only if still valid this much later (so it
// does not expire while its proof is in flight).
constexpr absl::Duration kProveMargin = absl::Minutes(1);
// Twins per ReportTelemetryBatch call (appsvc takes up to 64), and how a
// sender backs off when appsvc is busy.
constexpr size_t kTelemetryDevicesPerCall = 16;
constexpr int kMaxSendRetries = 20;
constexpr client::BackoffPolicy kSendBackoff{absl::Milliseconds(5), 2.0, 0.2,
                                             absl::Milliseconds(500)};
constexpr int kMaxProveWindow = 256;  // --prove-window: senders, at most
constexpr int kChannels = 4;
constexpr int kCountChunk = ::contoso::appsvc::kMaxCountDevices;

// ProofChain: the chain one twin proves with: its kept certificate as DER
// with its interned issuers' DER (nothing re-encoded per proof), or the PEM
// chain a re-attestation returned. Empty: none (the twin is not proven).
struct ProofChain {
  std::string pem;
  std::string certificate_der;
  const std::vector<std::string>* issuers_der = nullptr;
  bool empty() const { return pem.empty() && issuers_der == nullptr; }
};

void Deadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
}

// WithRetries makes `call` (a unary call on a fresh context with the
// phase's deadline) until it succeeds, fails otherwise than a busy appsvc
// does (RESOURCE_EXHAUSTED, UNAVAILABLE: nothing of the call was done),
// kMaxSendRetries retries are spent or a stop is requested. Each retry backs
// off (kSendBackoff, jitter from `seed`) and counts in `*retries` if given.
template <typename Call>
grpc::Status WithRetries(uint64_t seed, std::atomic<uint64_t>* retries,
                         const Call& call) {
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    grpc::Status s = call(&ctx);
    const auto code = static_cast<absl::StatusCode>(s.error_code());
    if (s.ok() || attempt >= kMaxSendRetries ||
        (code != absl::StatusCode::kResourceExhausted &&
         code != absl::StatusCode::kUnavailable) ||
        StopRequested()) {
      return s;
    }
    if (retries != nullptr) retries->fetch_add(1);
    absl::SleepFor(client::BackoffDelay(
        kSendBackoff, attempt,
        client::JitterFraction(seed ^ static_cast<uint64_t>(attempt))));
  }
}

class TelemetryPhase final : public Phase {
 public:
  const char* name() const override { return "telemetry"; }

  std::string Unavailable(Fleet& fleet) override {
    const std::string& address = fleet.cluster().appsvc;
    if (address.empty()) {
      return "no appsvc address in cluster.json (the Contoso cloud, issue 13, "
             "is not running in this cluster: start it with local_cluster "
             "--appsvc)";
    }
    const absl::StatusCode code =
        ProbeMethod(address, fleet.cluster().ServerName("appsvc"),
                    fleet.gateway_tls(), kMethod);
    if (code == absl::StatusCode::kUnimplemented) {
      return absl::StrCat(kMethod,
                          " is not served (UNIMPLEMENTED) by appsvc at ",
                          address, ": appsvc predates its gateway path");
    }
    if (code == absl::StatusCode::kUnavailable) {
      return absl::StrCat(kMethod, " probe: appsvc at ", address,
                          " unavailable");
    }
    if (fleet.options().telemetry_batches <= 0) {
      return "--telemetry-batches 0";
    }
    return "";
  }

  absl::Status Run(Fleet& fleet, PhaseStats& stats) override {
    const FleetOptions& o = fleet.options();
    std::vector<size_t> todo;
    for (size_t i = 0; i < fleet.twins().size(); ++i) {
      if (fleet.twins()[i]->certified()) todo.push_back(i);
    }
    if (todo.empty()) {
      return absl::FailedPreconditionError(
          "no certified twin to send telemetry");
    }
    std::vector<std::unique_ptr<cv1::ContosoGateway::Stub>> stubs;
    for (int c = 0; c < kChannels; ++c) {
      stubs.push_back(cv1::ContosoGateway::NewStub(
          rpc::NewChannel(fleet.cluster().appsvc, fleet.gateway_tls(),
                          fleet.cluster().ServerName("appsvc"))));
    }
    const int batch = std::clamp(o.telemetry_batch, 1, 1000);
    const int batches = o.telemetry_batches;
    stats.Start(absl::Now(), todo.size() * static_cast<uint64_t>(batches));

    // 1. Prove, one group at a time, with each twin's kept certificate, or
    // after attesting it again when it has none: the group just prepared
    // is proven (batch RPCs, kProveCallers at once) on its own thread while
    // the next group is prepared, so appsvc's proving and the shards'
    // attesting overlap. At most two groups' chains are held.
    const absl::Time prove_start = absl::Now();
    std::vector<std::string> tokens(todo.size());
    absl::Mutex error_mu;
    absl::Status first_error;
    const size_t window =
        static_cast<size_t>(std::clamp(o.prove_window, 1, kMaxProveWindow));
    client::AsyncAttestationClient::Options co;
    co.max_in_flight = o.max_in_flight;
    co.deadline = absl::Seconds(20);
    // The attest phase's gateway batch RPCs (--attest-batch): re-attesting
    // one device per unary RPC pair made re-attestation ~80 % of proving.
    co.max_batch = o.attest_batch;
    client::AsyncAttestationClient attest(fleet.cluster().shards,
                                          fleet.gateway_tls(), co);
    std::atomic<int64_t> reattest_us{0}, prove_wait_us{0};
    size_t from_kept = 0, reattested = 0;
    auto fail = [&](const absl::Status& s) {
      stats.RecordError(s.code());
      absl::MutexLock l(&error_mu);
      if (first_error.ok()) first_error = s;
    };
    // ProveGroup proves todo[g, g + chains.size()) in batches.
    auto prove_group = [&](size_t g, std::vector<ProofChain> chains) {
      const size_t end = g + chains.size();
      std::atomic<size_t> next{g};
      auto caller = [&](int c) {
        for (size_t b = next.fetch_add(kProveBatch); b < end;
             b = next.fetch_add(kProveBatch)) {
          if (StopRequested()) return;
          std::vector<size_t> ks;
          for (size_t k = b; k < std::min(end, b + kProveBatch); ++k) {
            if (chains[k - g].empty()) {
              stats.RecordError(absl::StatusCode::kUnavailable);
              continue;
            }
            ks.push_back(k);
          }
          if (ks.empty()) continue;
          absl::Status s = ProveBatch(*stubs[c % kChannels], fleet, todo, g,
                                      chains, ks, &tokens, fail);
          if (!s.ok()) {
            for (size_t i = 0; i < ks.size(); ++i) fail(s);
          }
        }
      };
      std::vector<std::thread> callers;
      for (int c = 0; c < kProveCallers; ++c) callers.emplace_back(caller, c);
      for (auto& t : callers) t.join();
    };
    std::thread prover;
    for (size_t g = 0; g < todo.size(); g += kProveGroup) {
      if (StopRequested()) break;
      const size_t end = std::min(todo.size(), g + kProveGroup);
      std::vector<ProofChain> chains(end - g);
      // Twins that kept their certificate from the attest phase prove with
      // it; the others (never issued, expired, not kept, or dropped by
      // --prove-reattest-every) attest again first.
      std::vector<size_t> reattest;
      const absl::Time kept_at = absl::Now() + kProveMargin;
      for (size_t k = g; k < end; ++k) {
        twin::Twin* t = fleet.twins()[todo[k]].get();
        if (o.prove_reattest_every > 0 &&
            k % static_cast<size_t>(o.prove_reattest_every) == 0) {
          t->DropKeptCertificate();
        }
        if (auto der = t->CertificateChainDer(kept_at); der.ok()) {
          chains[k - g].certificate_der = std::move(der->certificate);
          chains[k - g].issuers_der = der->issuers;
          ++from_kept;
        } else if (auto pem = t->CertificateChainPem(kept_at); pem.ok()) {
          chains[k - g].pem = *std::move(pem);
          ++from_kept;
        } else {
          reattest.push_back(k);
        }
      }
      reattested += reattest.size();
      const absl::Time a0 = absl::Now();
      if (!reattest.empty()) {
        twin::TwinDriver::Options dopts;
        dopts.max_active = o.max_active;
        twin::TwinDriver driver(&attest, Clock::Real(), dopts);
        absl::flat_hash_map<uint32_t, size_t> slot;
        size_t seen = 0;
        driver.set_attest_observer(
            [&](uint32_t index, twin::Twin&, const v1::AttestResponse& r) {
              auto it = slot.find(index);
              if (it == slot.end()) return;
              if (chains[it->second].empty()) ++seen;
              chains[it->second].pem = r.certificate_chain_pem();
            });
        const absl::Time now = absl::Now();
        for (size_t k : reattest) {
          twin::Twin* t = fleet.twins()[todo[k]].get();
          t->RequestAttestation(now);
          slot[driver.Add(t)] = k - g;
        }
        const size_t want = reattest.size();
        driver.RunUntil([&] { return seen + driver.refused() >= want; },
                        absl::Now() + absl::Seconds(120));
      }
      reattest_us += absl::ToInt64Microseconds(absl::Now() - a0);
      // Wait for the previous group's proofs (a twin's device is used by one
      // thread at a time), then prove this group behind the next attest.
      const absl::Time w0 = absl::Now();
      if (prover.joinable()) prover.join();
      prove_wait_us += absl::ToInt64Microseconds(absl::Now() - w0);
      prover = std::thread(prove_group, g, std::move(chains));
    }
    const absl::Time w0 = absl::Now();
    if (prover.joinable()) prover.join();
    prove_wait_us += absl::ToInt64Microseconds(absl::Now() - w0);
    if (StopRequested()) return absl::CancelledError("interrupted");
    const double prove_s = absl::ToDoubleSeconds(absl::Now() - prove_start);
    size_t proven = 0, token_bytes = 0;
    for (const auto& t : tokens) {
      if (!t.empty()) ++proven, token_bytes += t.size();
    }
    if (proven == 0) {
      stats.Finish(absl::Now());
      if (first_error.code() == absl::StatusCode::kPermissionDenied) {
        return absl::FailedPreconditionError(absl::StrCat(
            "appsvc refuses this fleet's devices (its --tenant/--product are "
            "not the fleet's tenant ",
            fleet.tenant_id, " and product ", fleet.product_id,
            "): ", first_error.message()));
      }
      return absl::UnavailableError(absl::StrCat(
          "no twin could prove itself to appsvc: ", first_error.ToString()));
    }

    // 2. Send readings: `senders_n` blocking senders over the channels (the
    // same bounded window as proving). Each sender takes the next chunk of
    // up to kTelemetryDevicesPerCall proven twins and sends batch 0, 1, ...
    // of all of them in one ReportTelemetryBatch each (every item with its
    // twin's token), so a twin's batches go in sequence order. A busy
    // appsvc (RESOURCE_EXHAUSTED, UNAVAILABLE) is retried with backoff:
    // nothing of a refused call was stored.
    const absl::Time send_start = absl::Now();
    // CPU of the readings alone (proving and the end check excluded), so
    // the cost per reading is not mixed with the cost per proof.
    const PhaseCpu send_cpu0 = PhaseCpu::Take(fleet);
    std::atomic<uint64_t> acknowledged{0}, retries{0};
    std::vector<std::thread> senders;
    const size_t senders_n = std::max<size_t>(window, kChannels);
    std::vector<size_t> proven_ks;
    for (size_t k = 0; k < todo.size(); ++k) {
      if (!tokens[k].empty()) proven_ks.push_back(k);
    }
    std::atomic<size_t> next_chunk{0};
    for (size_t c = 0; c < senders_n; ++c) {
      senders.emplace_back([&, c] {
        // One request per sender, cleared for each call: its items and
        // samples are reused rather than allocated and freed per call.
        cv1::GatewayTelemetryBatchRequest req;
        for (size_t first = next_chunk.fetch_add(kTelemetryDevicesPerCall);
             first < proven_ks.size();
             first = next_chunk.fetch_add(kTelemetryDevicesPerCall)) {
          const size_t last =
              std::min(proven_ks.size(), first + kTelemetryDevicesPerCall);
          for (int b = 0; b < batches && !StopRequested(); ++b) {
            req.Clear();
            const int64_t now_ms = absl::ToUnixMillis(absl::Now());
            for (size_t j = first; j < last; ++j) {
              const size_t k = proven_ks[j];
              cv1::GatewayTelemetry* item = req.add_items();
              item->set_device_id(fleet.twins()[todo[k]]->device().device_id());
              item->set_session_token(tokens[k]);
              for (int i = 0; i < batch; ++i) {
                cv1::Telemetry* s = item->mutable_batch()->add_samples();
                const uint64_t seq = static_cast<uint64_t>(b) * batch + i + 1;
                s->set_time_unix_ms(now_ms + i);
                s->set_water_temperature_c(50 + (seq % 10));
                s->set_drying_temperature_c(62 + (seq % 5));
                s->set_rinse_agent_level_pct(90 - (seq % 50) * 0.1);
                s->set_cycle_state(cv1::Telemetry::WASHING);
                s->set_cycle_id(1);
                s->set_sequence(seq);
              }
            }
            cv1::GatewayTelemetryBatchResponse resp;
            const absl::Time t0 = absl::Now();
            const grpc::Status s = WithRetries(
                (first << 8) ^ (static_cast<uint64_t>(b) << 4), &retries,
                [&](grpc::ClientContext* ctx) {
                  resp.Clear();
                  return stubs[c % kChannels]->ReportTelemetryBatch(ctx, req,
                                                                    &resp);
                });
            const absl::Time t1 = absl::Now();
            if (!s.ok() || resp.results_size() != req.items_size()) {
              const auto code =
                  s.ok() ? absl::StatusCode::kInternal
                         : static_cast<absl::StatusCode>(s.error_code());
              for (int j = 0; j < req.items_size(); ++j) stats.RecordError(code);
              continue;
            }
            for (const cv1::GatewayTelemetryResult& r : resp.results()) {
              if (r.code() != 0) {
                stats.RecordError(static_cast<absl::StatusCode>(r.code()));
                continue;
              }
              stats.RecordOk(t1, t1 - t0);
              acknowledged.fetch_add(r.response().accepted());
            }
          }
        }
      });
    }
    for (auto& t : senders) t.join();
    const double send_s = absl::ToDoubleSeconds(absl::Now() - send_start);
    const PhaseCpu send_cpu1 = PhaseCpu::Take(fleet);
    stats.Finish(absl::Now());
    const absl::Time count_start = absl::Now();
    const PhaseCpu count_cpu0 = PhaseCpu::Take(fleet);

    // 3. End check: appsvc stored exactly the acknowledged readings. Chunks
    // of kCountChunk devices are counted over every channel at once (appsvc
    // runs them on its workers); a busy appsvc is retried with backoff, as
    // sends are.
    std::atomic<uint64_t> stored{0};
    std::atomic<size_t> next_count{0};
    absl::Status count_error;
    std::vector<std::thread> counters;
    for (int c = 0; c < kChannels; ++c) {
      counters.emplace_back([&, c] {
        for (size_t g = next_count.fetch_add(kCountChunk); g < todo.size();
             g = next_count.fetch_add(kCountChunk)) {
          cv1::CountTelemetryRequest req;
          for (size_t k = g; k < std::min(todo.size(), g + kCountChunk); ++k) {
            if (tokens[k].empty()) continue;
            auto* d = req.add_devices();
            d->set_device_id(fleet.twins()[todo[k]]->device().device_id());
            d->set_session_token(tokens[k]);
          }
          if (req.devices_size() == 0) continue;
          cv1::CountTelemetryResponse resp;
          const grpc::Status s =
              WithRetries(g << 8, nullptr, [&](grpc::ClientContext* ctx) {
                resp.Clear();
                return stubs[c]->CountTelemetry(ctx, req, &resp);
              });
          absl::Status failed;
          if (!s.ok()) {
            failed = absl::UnavailableError(absl::StrCat(
                "end check: CountTelemetry: ", s.error_message()));
          } else if (resp.stored_samples_size() != req.devices_size()) {
            failed = absl::InternalError(absl::StrCat(
                "end check: CountTelemetry answered ",
                resp.stored_samples_size(), " counts for ",
                req.devices_size(), " devices"));
          }
          if (!failed.ok()) {
            absl::MutexLock l(&error_mu);
            if (count_error.ok()) count_error = failed;
            return;
          }
          uint64_t n = 0;
          for (uint64_t v : resp.stored_samples()) n += v;
          stored.fetch_add(n);
        }
      });
    }
    for (auto& t : counters) t.join();
    if (!count_error.ok()) return count_error;
    const uint64_t acked = acknowledged.load();
    stats.SetMetric("count_s",
                    absl::ToDoubleSeconds(absl::Now() - count_start));
    const PhaseCpu count_cpu1 = PhaseCpu::Take(fleet);
    // <process>_cpu_us_per_reading: CPU of the sending window per
    // acknowledged reading (-1 when a process's CPU could not be read).
    auto per_reading = [acked](double before, double after) {
      if (acked == 0 || before < 0 || after < before) return -1.0;
      return (after - before) / static_cast<double>(acked) * 1e6;
    };
    stats.SetMetric("send_appsvc_cpu_us_per_reading",
                    per_reading(send_cpu0.appsvc, send_cpu1.appsvc));
    stats.SetMetric("send_loadgen_cpu_us_per_reading",
                    per_reading(send_cpu0.loadgen, send_cpu1.loadgen));
    // appsvc's CPU for the end check (counting what it stored).
    stats.SetMetric("count_appsvc_cpu_us_per_reading",
                    per_reading(count_cpu0.appsvc, count_cpu1.appsvc));
    stats.SetMetric("twins_proven", static_cast<double>(proven));
    stats.SetMetric("prove_s", prove_s);
    stats.SetMetric("proven_per_s", prove_s > 0 ? proven / prove_s : 0);
    stats.SetMetric("prove_window", static_cast<double>(window));
    stats.SetMetric("prove_batch", static_cast<double>(kProveBatch));
    stats.SetMetric("prove_calls_in_flight", static_cast<double>(kProveCallers));
    // Where proving's wall time went: re-attesting (twins without a valid
    // kept certificate) vs waiting for appsvc's proofs beyond that.
    stats.SetMetric("prove_reattest_s", reattest_us.load() / 1e6);
    // Twins that proved with the certificate kept from the attest phase,
    // and those that attested again first (no valid kept certificate).
    stats.SetMetric("prove_from_kept_certificate",
                    static_cast<double>(from_kept));
    stats.SetMetric("prove_reattested", static_cast<double>(reattested));
    stats.SetMetric("prove_wait_s", prove_wait_us.load() / 1e6);
    stats.SetMetric("token_bytes_per_twin",
                    static_cast<double>(token_bytes) / proven);
    stats.SetMetric("acknowledged", static_cast<double>(acked));
    stats.SetMetric("stored", static_cast<double>(stored.load()));
    stats.SetMetric("readings_per_s", send_s > 0 ? acked / send_s : 0);
    stats.SetMetric("telemetry_devices_per_call",
                    static_cast<double>(kTelemetryDevicesPerCall));
    stats.SetMetric("telemetry_busy_retries",
                    static_cast<double>(retries.load()));
    if (stored.load() != acked) {
      return absl::DataLossError(
          absl::StrCat("end check failed: appsvc stored ", stored.load(),
                       " readings, ", acked, " were acknowledged"));
    }
    return absl::OkStatus();
  }

 private:
  // ProveBatch proves twins todo[k] for k in `ks` (chains[k - g] each) with
  // one GetChallenges and one ProveBatch call, writing (*tokens)[k] for each
  // device appsvc accepted and passing each refusal to `fail`. A failed
  // call is returned (nothing proven by it).
  template <typename Fail>
  static absl::Status ProveBatch(cv1::ContosoGateway::Stub& stub, Fleet& fleet,
                                 const std::vector<size_t>& todo, size_t g,
                                 const std::vector<ProofChain>& chains,
                                 const std::vector<size_t>& ks,
                                 std::vector<std::string>* tokens,
                                 const Fail& fail) {
    cv1::GatewayChallengesRequest creq;
    for (size_t k : ks) {
      creq.add_device_ids(fleet.twins()[todo[k]]->device().device_id());
    }
    cv1::GatewayChallengesResponse cresp;
    grpc::ClientContext c1;
    Deadline(&c1);
    grpc::Status s = stub.GetChallenges(&c1, creq, &cresp);
    if (!s.ok()) return rpc::FromGrpcStatus(s);
    if (cresp.results_size() != static_cast<int>(ks.size())) {
      return absl::InternalError("GetChallenges answered another count");
    }
    cv1::GatewayProveBatchRequest preq;
    std::vector<size_t> sent;
    for (size_t i = 0; i < ks.size(); ++i) {
      const cv1::GatewayChallengeResult& c = cresp.results(i);
      if (c.code() != 0) {
        fail(absl::Status(static_cast<absl::StatusCode>(c.code()), c.error()));
        continue;
      }
      twin::Twin& twin = *fleet.twins()[todo[ks[i]]];
      const std::string& id = creq.device_ids(i);
      auto sig = twin.device().SignWithCertificateKey(
          ::contoso::appsvc::GatewayProofMessage(id, c.nonce()));
      if (!sig.ok()) {
        fail(sig.status());
        continue;
      }
      cv1::GatewayProveRequest* p = preq.add_proofs();
      p->set_device_id(id);
      p->set_nonce(c.nonce());
      const ProofChain& chain = chains[ks[i] - g];
      if (chain.issuers_der != nullptr) {
        p->add_chain_der(chain.certificate_der);
        for (const std::string& der : *chain.issuers_der) p->add_chain_der(der);
      } else {
        p->set_chain_pem(chain.pem);
      }
      p->set_signature(*std::move(sig));
      sent.push_back(ks[i]);
    }
    if (sent.empty()) return absl::OkStatus();
    cv1::GatewayProveBatchResponse presp;
    grpc::ClientContext c2;
    Deadline(&c2);
    s = stub.ProveBatch(&c2, preq, &presp);
    if (!s.ok()) return rpc::FromGrpcStatus(s);
    if (presp.results_size() != static_cast<int>(sent.size())) {
      return absl::InternalError("ProveBatch answered another count");
    }
    for (size_t i = 0; i < sent.size(); ++i) {
      const cv1::GatewayProveResult& r = presp.results(i);
      if (r.code() != 0) {
        fail(absl::Status(static_cast<absl::StatusCode>(r.code()), r.error()));
        continue;
      }
      (*tokens)[sent[i]] = r.session_token();
    }
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Phase> NewTelemetryPhase() {
  return std::make_unique<TelemetryPhase>();
}

}  // namespace sphere::loadgen
