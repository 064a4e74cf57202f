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
#include "common/rpc/rpc.h"
#include "common/util/clock.h"
#include "protos/contoso.grpc.pb.h"
#include "twin/driver.h"

namespace sphere::loadgen {
namespace {

namespace cv1 = ::contoso::v1;

constexpr char kMethod[] = "/contoso.v1.ContosoGateway/ReportTelemetry";
// appsvc's metadata keys and proof message: appsvc/gateway_contract.h.
constexpr const char* kDeviceMd = ::contoso::appsvc::kGatewayDeviceMetadata;
constexpr const char* kTokenMd = ::contoso::appsvc::kGatewaySessionMetadata;
constexpr size_t kProveGroup = 1024;  // chains held at once, at most
constexpr int kMaxProveWindow = 256;  // concurrent proofs, at most
constexpr int kChannels = 4;
constexpr int kCountChunk = ::contoso::appsvc::kMaxCountDevices;

void Deadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
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

    // 1. Re-attest (to see the chain) and prove, one group at a time.
    const absl::Time prove_start = absl::Now();
    std::vector<std::string> tokens(todo.size());
    absl::Mutex error_mu;
    absl::Status first_error;
    const size_t window =
        static_cast<size_t>(std::clamp(o.prove_window, 1, kMaxProveWindow));
    client::AsyncAttestationClient::Options co;
    co.max_in_flight = o.max_in_flight;
    co.deadline = absl::Seconds(20);
    client::AsyncAttestationClient attest(fleet.cluster().shards,
                                          fleet.gateway_tls(), co);
    for (size_t g = 0; g < todo.size(); g += kProveGroup) {
      if (StopRequested()) return absl::CancelledError("interrupted");
      const size_t end = std::min(todo.size(), g + kProveGroup);
      std::vector<std::string> chains(end - g);
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
            chains[it->second] = r.certificate_chain_pem();
          });
      const absl::Time now = absl::Now();
      for (size_t k = g; k < end; ++k) {
        twin::Twin* t = fleet.twins()[todo[k]].get();
        t->RequestAttestation(now);
        slot[driver.Add(t)] = k - g;
      }
      const size_t want = end - g;
      driver.RunUntil([&] { return seen + driver.refused() >= want; },
                      absl::Now() + absl::Seconds(120));
      // Prove the group with a bounded window: `window` blocking callers,
      // each taking the next twin (GetChallenge, sign, Prove). Distinct
      // twins per caller; tokens[k] is written by one caller only.
      std::atomic<size_t> next{g};
      auto prove = [&] {
        for (size_t k = next.fetch_add(1); k < end; k = next.fetch_add(1)) {
          if (StopRequested()) return;
          if (chains[k - g].empty()) {
            stats.RecordError(absl::StatusCode::kUnavailable);
            continue;
          }
          auto token = ProveOne(*stubs[k % kChannels], *fleet.twins()[todo[k]],
                                chains[k - g]);
          if (!token.ok()) {
            stats.RecordError(token.status().code());
            absl::MutexLock l(&error_mu);
            if (first_error.ok()) first_error = token.status();
            continue;
          }
          tokens[k] = std::move(*token);
        }
      };
      std::vector<std::thread> provers;
      for (size_t w = 0; w < std::min(window, end - g); ++w) {
        provers.emplace_back(prove);
      }
      for (auto& t : provers) t.join();
    }
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
    // same bounded window as proving); a twin's batches all go from one
    // sender, in sequence order.
    const absl::Time send_start = absl::Now();
    std::atomic<uint64_t> acknowledged{0};
    std::vector<std::thread> senders;
    const size_t senders_n = std::max<size_t>(window, kChannels);
    for (size_t c = 0; c < senders_n; ++c) {
      senders.emplace_back([&, c] {
        for (size_t k = c; k < todo.size(); k += senders_n) {
          if (tokens[k].empty()) continue;
          const std::string id = fleet.twins()[todo[k]]->device().device_id();
          for (int b = 0; b < batches && !StopRequested(); ++b) {
            cv1::ReportTelemetryRequest req;
            const int64_t now_ms = absl::ToUnixMillis(absl::Now());
            for (int i = 0; i < batch; ++i) {
              cv1::Telemetry* s = req.add_samples();
              const uint64_t seq = static_cast<uint64_t>(b) * batch + i + 1;
              s->set_time_unix_ms(now_ms + i);
              s->set_water_temperature_c(50 + (seq % 10));
              s->set_drying_temperature_c(62 + (seq % 5));
              s->set_rinse_agent_level_pct(90 - (seq % 50) * 0.1);
              s->set_cycle_state(cv1::Telemetry::WASHING);
              s->set_cycle_id(1);
              s->set_sequence(seq);
            }
            grpc::ClientContext ctx;
            Deadline(&ctx);
            ctx.AddMetadata(kDeviceMd, id);
            ctx.AddMetadata(kTokenMd, tokens[k]);
            cv1::ReportTelemetryResponse resp;
            const absl::Time t0 = absl::Now();
            grpc::Status s =
                stubs[c % kChannels]->ReportTelemetry(&ctx, req, &resp);
            if (s.ok()) {
              const absl::Time t1 = absl::Now();
              stats.RecordOk(t1, t1 - t0);
              acknowledged.fetch_add(resp.accepted());
            } else {
              stats.RecordError(static_cast<absl::StatusCode>(s.error_code()));
            }
          }
        }
      });
    }
    for (auto& t : senders) t.join();
    const double send_s = absl::ToDoubleSeconds(absl::Now() - send_start);
    stats.Finish(absl::Now());

    // 3. End check: appsvc stored exactly the acknowledged readings.
    uint64_t stored = 0;
    for (size_t g = 0; g < todo.size(); g += kCountChunk) {
      cv1::CountTelemetryRequest req;
      for (size_t k = g; k < std::min(todo.size(), g + kCountChunk); ++k) {
        if (tokens[k].empty()) continue;
        auto* d = req.add_devices();
        d->set_device_id(fleet.twins()[todo[k]]->device().device_id());
        d->set_session_token(tokens[k]);
      }
      if (req.devices_size() == 0) continue;
      grpc::ClientContext ctx;
      Deadline(&ctx);
      cv1::CountTelemetryResponse resp;
      grpc::Status s = stubs[0]->CountTelemetry(&ctx, req, &resp);
      if (!s.ok()) {
        return absl::UnavailableError(
            absl::StrCat("end check: CountTelemetry: ", s.error_message()));
      }
      for (uint64_t n : resp.stored_samples()) stored += n;
    }
    const uint64_t acked = acknowledged.load();
    stats.SetMetric("twins_proven", static_cast<double>(proven));
    stats.SetMetric("prove_s", prove_s);
    stats.SetMetric("proven_per_s", prove_s > 0 ? proven / prove_s : 0);
    stats.SetMetric("prove_window", static_cast<double>(window));
    stats.SetMetric("token_bytes_per_twin",
                    static_cast<double>(token_bytes) / proven);
    stats.SetMetric("acknowledged", static_cast<double>(acked));
    stats.SetMetric("stored", static_cast<double>(stored));
    stats.SetMetric("readings_per_s", send_s > 0 ? acked / send_s : 0);
    if (stored != acked) {
      return absl::DataLossError(
          absl::StrCat("end check failed: appsvc stored ", stored,
                       " readings, ", acked, " were acknowledged"));
    }
    return absl::OkStatus();
  }

 private:
  static absl::StatusOr<std::string> ProveOne(cv1::ContosoGateway::Stub& stub,
                                              twin::Twin& twin,
                                              const std::string& chain) {
    const std::string id = twin.device().device_id();
    cv1::GatewayChallengeRequest creq;
    creq.set_device_id(id);
    cv1::GatewayChallengeResponse cresp;
    grpc::ClientContext c1;
    Deadline(&c1);
    grpc::Status s = stub.GetChallenge(&c1, creq, &cresp);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          s.error_message());
    }
    auto sig = twin.device().SignWithCertificateKey(
        ::contoso::appsvc::GatewayProofMessage(id, cresp.nonce()));
    if (!sig.ok()) return sig.status();
    cv1::GatewayProveRequest preq;
    preq.set_device_id(id);
    preq.set_nonce(cresp.nonce());
    preq.set_chain_pem(chain);
    preq.set_signature(*sig);
    cv1::GatewayProveResponse presp;
    grpc::ClientContext c2;
    Deadline(&c2);
    s = stub.Prove(&c2, preq, &presp);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          s.error_message());
    }
    return presp.session_token();
  }
};

}  // namespace

std::unique_ptr<Phase> NewTelemetryPhase() {
  return std::make_unique<TelemetryPhase>();
}

}  // namespace sphere::loadgen
