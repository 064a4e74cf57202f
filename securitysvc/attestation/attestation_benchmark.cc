// attestation_benchmark: in-process Attestor throughput against the crypto
// floors measured in the same run (DESIGN.md §7).
//
//   bazel run -c opt //securitysvc:attestation_benchmark
//
// BM_FloorEcdsaSign / BM_FloorEcdsaVerify run first and record their cost;
// BM_FullAttestation and BM_AttestOnly report `cost_vs_sign_plus_verify`:
// the time of one attestation in units of (one P-256 sign + one verify).
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <stdlib.h>
#include <valgrind/callgrind.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/group_commit.h"
#include "common/store/memory_store.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/attestation/attestation_service.h"
#include "securitysvc/attestation/nonce_store.h"
#include "securitysvc/attestation/record_writer.h"
#include "securitysvc/auth/device_authenticator.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/shard_server/device_call.h"
#include "securitysvc/sharding/router.h"

namespace sphere::attestation {
namespace {

constexpr int kDevicePool = 64;
constexpr char kTenant[] = "tenant-contoso";
constexpr char kGroup[] = "group-production";

// Seconds per op of the floors, filled by the floor benchmarks.
double g_sign_seconds = 0;
double g_verify_seconds = 0;

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    abort();
  }
}

// Platform: one tenant, v1 OS release, a pool of claimed devices.
struct Platform {
  Platform() {
    crypto::EcPrivateKey root = crypto::EcPrivateKey::Generate();
    tenant_ca_key = crypto::EcPrivateKey::Generate();
    crypto::EcPrivateKey signing = crypto::EcPrivateKey::Generate();
    absl::Time now = absl::Now();
    crypto::CertificateSpec spec;
    spec.common_name = "Sphere Root CA";
    spec.subject_public_key = root.PublicKey();
    spec.not_before = now - absl::Hours(1);
    spec.not_after = now + absl::Hours(24 * 365);
    spec.usage = crypto::KeyUsage::kCa;
    std::string root_pem = *crypto::IssueCertificate(spec, root, "");
    spec.common_name = "Contoso CA";
    spec.subject_public_key = tenant_ca_key.PublicKey();
    tenant_ca_pem = *crypto::IssueCertificate(spec, root, root_pem);

    std::string master = crypto::RandomBytes(32);
    catalog = std::make_unique<catalog::InMemoryCatalog>(master);
    v1::Tenant t;
    t.set_id(kTenant);
    t.set_name("Contoso");
    t.set_ca_certificate_pem(tenant_ca_pem);
    t.set_wrapped_ca_key(
        *catalog::WrapTenantCaKey(master, kTenant, tenant_ca_key));
    Check(catalog->PutTenant(t), "PutTenant");
    v1::DeviceGroup g;
    g.set_id(kGroup);
    g.set_tenant_id(kTenant);
    g.set_os_feed(v1::RETAIL);
    catalog->PutGroup(g);
    auto images = *mcu::BuildFactoryImages(signing, 1);
    v1::OsRelease rel;
    rel.set_feed(v1::RETAIL);
    for (const auto& pkg : images) {
      auto v = *mcu::VerifyImage(pkg, signing.PublicKey());
      v1::Image img;
      img.set_id(crypto::HexEncode(crypto::Sha256(pkg.header())));
      img.set_component(v.header.component());
      img.set_version(v.header.version());
      img.set_kind(v.header.kind());
      img.set_image_hash(v.image_hash);
      catalog->PutImage(img);
      rel.add_image_ids(img.id());
    }
    catalog->PutOsRelease(rel);

    store = *store::MemoryStore::Create(ColumnFamilies());
    nonces = std::make_unique<NonceStore>(Clock::Real());
    tokens = std::make_unique<auth::SessionTokens>(crypto::RandomBytes(32));
    attestor = std::make_unique<Attestor>(catalog.get(), store.get(),
                                          nonces.get(), tokens.get(),
                                          Clock::Real(), Attestor::Options());
    for (int i = 0; i < kDevicePool; ++i) {
      mcu::Device::Options opts;
      opts.seed = absl::StrCat("bench-device-", i);
      auto d = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                        signing.PublicKey(), std::move(opts));
      Check(d.status(), "Manufacture");
      Check((*d)->InstallFactoryImages(images), "InstallFactoryImages");
      Check((*d)->Boot(), "Boot");
      v1::Device rec;
      rec.set_id((*d)->device_id());
      rec.set_public_key((*d)->public_key());
      rec.set_tenant_id(kTenant);
      rec.set_device_group_id(kGroup);
      rec.set_state(v1::CLAIMED);
      catalog->PutDevice(rec);
      devices.push_back(*std::move(d));
    }
  }
  crypto::EcPrivateKey tenant_ca_key;
  std::string tenant_ca_pem;
  std::unique_ptr<catalog::InMemoryCatalog> catalog;
  std::unique_ptr<store::MemoryStore> store;
  std::unique_ptr<NonceStore> nonces;
  std::unique_ptr<auth::SessionTokens> tokens;
  std::unique_ptr<Attestor> attestor;
  std::vector<std::unique_ptr<mcu::Device>> devices;
};

Platform& GetPlatform() {
  static Platform* p = new Platform;
  return *p;
}

void ReportCost(benchmark::State& state, absl::Duration elapsed) {
  double per_op = absl::ToDoubleSeconds(elapsed) / state.iterations();
  state.counters["ops_per_s"] = 1.0 / per_op;
  if (g_sign_seconds > 0 && g_verify_seconds > 0) {
    state.counters["cost_vs_sign_plus_verify"] =
        per_op / (g_sign_seconds + g_verify_seconds);
  }
}

// ------------------------------------------------------------------ floors

void BM_FloorEcdsaSign(benchmark::State& state) {
  auto key = crypto::EcPrivateKey::Generate();
  std::string msg(200, 'm');
  absl::Time start = absl::Now();
  for (auto _ : state) benchmark::DoNotOptimize(key.Sign(msg));
  g_sign_seconds =
      absl::ToDoubleSeconds(absl::Now() - start) / state.iterations();
  state.counters["ops_per_s"] = 1.0 / g_sign_seconds;
}
BENCHMARK(BM_FloorEcdsaSign);

void BM_FloorEcdsaVerify(benchmark::State& state) {
  auto key = crypto::EcPrivateKey::Generate();
  std::string msg(200, 'm');
  std::string pub = key.PublicKey();
  std::string sig = *key.Sign(msg);
  absl::Time start = absl::Now();
  for (auto _ : state) {
    benchmark::DoNotOptimize(crypto::EcdsaVerify(pub, msg, sig));
  }
  g_verify_seconds =
      absl::ToDoubleSeconds(absl::Now() - start) / state.iterations();
  state.counters["ops_per_s"] = 1.0 / g_verify_seconds;
}
BENCHMARK(BM_FloorEcdsaVerify);

// ------------------------------------------------------------ attestation

// GetChallenge + device Quote + Attest, one pool device per iteration.
void BM_FullAttestation(benchmark::State& state) {
  Platform& p = GetPlatform();
  size_t i = 0;
  absl::Time start = absl::Now();
  for (auto _ : state) {
    mcu::Device& d = *p.devices[i++ % p.devices.size()];
    auto c = p.attestor->GetChallenge(d.device_id());
    auto q = d.Quote(c->nonce());
    v1::AttestRequest req;
    req.set_device_id(d.device_id());
    *req.mutable_quote() = *std::move(q);
    auto r = p.attestor->Attest(req);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      break;
    }
  }
  ReportCost(state, absl::Now() - start);
}
BENCHMARK(BM_FullAttestation);

// Attest only: nonce issued and quote made outside the timed region.
void BM_AttestOnly(benchmark::State& state) {
  Platform& p = GetPlatform();
  size_t i = 0;
  absl::Duration timed;
  for (auto _ : state) {
    state.PauseTiming();
    mcu::Device& d = *p.devices[i++ % p.devices.size()];
    auto c = p.attestor->GetChallenge(d.device_id());
    v1::AttestRequest req;
    req.set_device_id(d.device_id());
    *req.mutable_quote() = *d.Quote(c->nonce());
    state.ResumeTiming();
    absl::Time start = absl::Now();
    auto r = p.attestor->Attest(req);
    timed += absl::Now() - start;
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      break;
    }
  }
  ReportCost(state, timed);
}
BENCHMARK(BM_AttestOnly);

// ------------------------------------------------------- over gRPC + mTLS

// Set by --callgrind=N before any platform is built.
bool g_under_callgrind = false;

// RpcPlatform serves the same Attestor through AttestationServiceImpl on a
// loopback port with mutual TLS, as a shard does, and keeps one client
// channel. The empty-RPC floor is grpc.health.v1.Health/Check with an empty
// request on the same server and channel.
struct RpcPlatform {
  explicit RpcPlatform(Attestor* attestor) {
    Platform& p = GetPlatform();
    absl::Time now = absl::Now();
    crypto::EcPrivateKey root = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec spec;
    spec.common_name = "Bench Root";
    spec.subject_public_key = root.PublicKey();
    spec.not_before = now - absl::Hours(1);
    spec.not_after = now + absl::Hours(24);
    spec.usage = crypto::KeyUsage::kCa;
    std::string root_pem = *crypto::IssueCertificate(spec, root, "");
    crypto::EcPrivateKey server_key = crypto::EcPrivateKey::Generate();
    spec.common_name = "bench-shard";
    spec.subject_public_key = server_key.PublicKey();
    spec.usage = crypto::KeyUsage::kServerAuth;
    spec.dns_sans = {"localhost"};
    spec.ip_sans = {"127.0.0.1"};
    std::string server_pem = *crypto::IssueCertificate(spec, root, root_pem);
    crypto::EcPrivateKey client_key = crypto::EcPrivateKey::Generate();
    spec.common_name = "bench-client";
    spec.subject_public_key = client_key.PublicKey();
    spec.usage = crypto::KeyUsage::kClientAuth;
    spec.claims.scope = "gateway";  // multiplexes the pool's devices
    spec.dns_sans.clear();
    spec.ip_sans.clear();
    std::string client_pem = *crypto::IssueCertificate(spec, root, root_pem);

    router = std::make_unique<sharding::ShardRouter>("bench-shard");
    authenticator = std::make_unique<auth::DeviceAuthenticator>(
        p.tokens.get(), p.catalog.get(), Clock::Real());
    device_calls = std::make_unique<shard::DeviceCallHandler>(
        authenticator.get(), router.get());
    service = std::make_unique<AttestationServiceImpl>(
        attestor, device_calls.get(), p.catalog.get(),
        /*revision_gate=*/nullptr, /*challenge_limiter=*/nullptr);
    rpc::ServerOptions o;
    o.address = "127.0.0.1:0";
    o.tls = {server_pem, server_key.ToPem(), root_pem};
    if (g_under_callgrind) o.handshake_timeout = absl::Minutes(10);
    runner = std::make_unique<rpc::ServerRunner>(o);
    runner->AddService(service.get());
    Check(runner->Start(), "ServerRunner::Start");
    if (g_under_callgrind) {
      // As rpc::NewChannel, but a connection attempt may take minutes (the
      // default 20 s connect timeout expires under valgrind on a busy box).
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(16 << 20);
      args.SetMaxSendMessageSize(16 << 20);
      args.SetSslTargetNameOverride(rpc::kLocalServerName);
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10 * 60 * 1000);
      channel = grpc::CreateCustomChannel(
          runner->address(),
          rpc::ChannelCredentials({client_pem, client_key.ToPem(), root_pem}),
          args);
    } else {
      channel = rpc::NewChannel(runner->address(),
                                {client_pem, client_key.ToPem(), root_pem});
    }
    stub = v1::AttestationService::NewStub(channel);
    generic = std::make_unique<grpc::GenericStub>(channel);
  }
  std::unique_ptr<sharding::ShardRouter> router;
  std::unique_ptr<auth::DeviceAuthenticator> authenticator;
  std::unique_ptr<shard::DeviceCallHandler> device_calls;
  std::unique_ptr<AttestationServiceImpl> service;
  std::unique_ptr<rpc::ServerRunner> runner;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::AttestationService::Stub> stub;
  std::unique_ptr<grpc::GenericStub> generic;
};

RpcPlatform& GetRpcPlatform() {
  static RpcPlatform* p = new RpcPlatform(GetPlatform().attestor.get());
  return *p;
}

// RocksAttestor: the same catalog and devices, but records go to an
// encrypted RocksDB with a synced WAL (as in a shard), either written by
// each call (`group` false: the pre-issue-14 path, one sync per
// attestation on the calling thread) or through the shard's
// GroupCommitWriter (`group` true).
struct RocksAttestor {
  explicit RocksAttestor(bool group) {
    Platform& p = GetPlatform();
    char tmpl[] = "/tmp/attestation_benchmark.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      Check(absl::InternalError("mkdtemp failed"), "mkdtemp");
    }
    store::RocksOptions ro;
    ro.data_key = crypto::RandomBytes(32);
    store =
        *store::OpenRocksStore(absl::StrCat(tmpl, "/db"), ColumnFamilies(), ro);
    Attestor::Options o;
    if (group) {
      store::GroupCommitOptions go;
      go.name = "attestation";
      writer = std::make_unique<store::GroupCommitWriter>(store.get(), go);
      record_writer = std::make_unique<GroupCommitRecordWriter>(writer.get());
      o.record_writer = record_writer.get();
    }
    nonces = std::make_unique<NonceStore>(Clock::Real());
    attestor =
        std::make_unique<Attestor>(p.catalog.get(), store.get(), nonces.get(),
                                   p.tokens.get(), Clock::Real(), o);
    rpc = std::make_unique<RpcPlatform>(attestor.get());
  }
  std::unique_ptr<store::Store> store;
  std::unique_ptr<store::GroupCommitWriter> writer;
  std::unique_ptr<GroupCommitRecordWriter> record_writer;
  std::unique_ptr<NonceStore> nonces;
  std::unique_ptr<Attestor> attestor;
  std::unique_ptr<RpcPlatform> rpc;
};

RocksAttestor& GetRocksAttestor(bool group) {
  static RocksAttestor* direct = new RocksAttestor(false);
  static RocksAttestor* grouped = new RocksAttestor(true);
  return group ? *grouped : *direct;
}

double g_empty_rpc_seconds = 0;

void BM_FloorEmptyRpc(benchmark::State& state) {
  RpcPlatform& r = GetRpcPlatform();
  grpc::Slice empty("");  // an empty HealthCheckRequest
  grpc::ByteBuffer request(&empty, 1);
  absl::Time start = absl::Now();
  for (auto _ : state) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    grpc::ByteBuffer response;
    absl::Notification done;
    grpc::Status status;
    r.generic->UnaryCall(&ctx, "/grpc.health.v1.Health/Check",
                         grpc::StubOptions(), &request, &response,
                         [&](grpc::Status s) {
                           status = std::move(s);
                           done.Notify();
                         });
    done.WaitForNotification();
    if (!status.ok()) {
      state.SkipWithError(status.error_message().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.threads() == 1) {
    g_empty_rpc_seconds =
        absl::ToDoubleSeconds(absl::Now() - start) / state.iterations();
  }
}
BENCHMARK(BM_FloorEmptyRpc)->UseRealTime()->Threads(1)->Threads(4);

// GetChallenge + device Quote + Attest over gRPC/mTLS; one pool device per
// iteration (2 RPCs). `cost_vs_empty_rpc` and `cost_vs_sign_plus_verify`
// are per-thread latency over the 1-thread floors of this run: read the
// 1-thread row for cost and items_per_second for throughput.
// RpcAttestOnce: GetChallenge + device Quote + Attest over `r`'s channel.
// Per-RPC deadline: 10 s, or 10 minutes under callgrind (--callgrind=N),
// where everything runs ~50x slower on a shared machine.
absl::Duration g_rpc_deadline = absl::Seconds(10);

grpc::Status RpcAttestOnce(RpcPlatform& r, mcu::Device& d) {
  v1::GetChallengeResponse challenge;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(g_rpc_deadline));
    v1::GetChallengeRequest req;
    req.set_device_id(d.device_id());
    grpc::Status st = r.stub->GetChallenge(&ctx, req, &challenge);
    if (!st.ok()) return st;
  }
  v1::AttestRequest req;
  req.set_device_id(d.device_id());
  *req.mutable_quote() = *d.Quote(challenge.nonce());
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(g_rpc_deadline));
  v1::AttestResponse resp;
  return r.stub->Attest(&ctx, req, &resp);
}

// RunRpcAttestations: the benchmark loop; each thread attests its own
// devices of the pool (thread t takes t, t + threads, ...), so no two
// threads ever attest one device at once.
void RunRpcAttestations(benchmark::State& state, RpcPlatform& r) {
  Platform& p = GetPlatform();
  size_t j = 0;
  const size_t per_thread =
      std::max<size_t>(1, p.devices.size() / state.threads());
  absl::Time start = absl::Now();
  for (auto _ : state) {
    mcu::Device& d = *p.devices[(state.thread_index() +
                                 state.threads() * (j++ % per_thread)) %
                                p.devices.size()];
    grpc::Status st = RpcAttestOnce(r, d);
    if (!st.ok()) {
      state.SkipWithError(st.error_message().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    absl::Duration elapsed = absl::Now() - start;
    ReportCost(state, elapsed);
    if (g_empty_rpc_seconds > 0) {
      state.counters["cost_vs_empty_rpc"] = absl::ToDoubleSeconds(elapsed) /
                                            state.iterations() /
                                            g_empty_rpc_seconds;
    }
  }
}

// GetChallenge + device Quote + Attest over gRPC/mTLS, in-memory store; one
// pool device per iteration (2 RPCs). `cost_vs_empty_rpc` and
// `cost_vs_sign_plus_verify` are per-thread latency over the 1-thread floors
// of this run: read the 1-thread row for cost and items_per_second for
// throughput.
void BM_RpcFullAttestation(benchmark::State& state) {
  RunRpcAttestations(state, GetRpcPlatform());
}
BENCHMARK(BM_RpcFullAttestation)->UseRealTime()->Threads(1)->Threads(4);

// The same with the real encrypted store (synced WAL): arg 0 writes each
// record on the calling thread (one sync per attestation), arg 1 through
// the GroupCommitWriter (one sync per group). `records_per_sync` is the
// mean group size over the run.
void BM_RpcAttestationEncryptedStore(benchmark::State& state) {
  const bool group = state.range(0) == 1;
  RocksAttestor& ra = GetRocksAttestor(group);
  const uint64_t writes_before = group ? ra.writer->groups_written() : 0;
  const uint64_t batches_before = group ? ra.writer->batches_written() : 0;
  RunRpcAttestations(state, *ra.rpc);
  if (group && state.thread_index() == 0) {
    const uint64_t w = ra.writer->groups_written() - writes_before;
    const uint64_t b = ra.writer->batches_written() - batches_before;
    if (w > 0) state.counters["records_per_sync"] = static_cast<double>(b) / w;
  }
}
BENCHMARK(BM_RpcAttestationEncryptedStore)
    ->UseRealTime()
    ->ArgName("group_commit")
    ->Args({0})
    ->Args({1})
    ->Threads(1)
    ->Threads(8)
    ->Threads(32);

// The gateways' batch path over the same encrypted store with group commit:
// per iteration one GetChallenges for this thread's devices (64 / threads
// of the pool), their quotes, one AttestBatch. items_per_second counts
// attestations (devices), comparable with the rows above.
void BM_RpcBatchAttestationEncryptedStore(benchmark::State& state) {
  Platform& p = GetPlatform();
  RocksAttestor& ra = GetRocksAttestor(true);
  const size_t per_thread = p.devices.size() / state.threads();
  std::vector<mcu::Device*> mine;
  for (size_t j = 0; j < per_thread; ++j) {
    mine.push_back(p.devices[state.thread_index() + state.threads() * j].get());
  }
  const uint64_t writes_before = ra.writer->groups_written();
  const uint64_t batches_before = ra.writer->batches_written();
  for (auto _ : state) {
    v1::GetChallengesRequest creq;
    for (mcu::Device* d : mine) creq.add_device_ids(d->device_id());
    v1::GetChallengesResponse challenges;
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
      grpc::Status st = ra.rpc->stub->GetChallenges(&ctx, creq, &challenges);
      if (!st.ok()) {
        state.SkipWithError(st.error_message().c_str());
        break;
      }
    }
    v1::AttestBatchRequest areq;
    for (size_t k = 0; k < mine.size(); ++k) {
      v1::AttestRequest* r = areq.add_requests();
      r->set_device_id(mine[k]->device_id());
      *r->mutable_quote() =
          *mine[k]->Quote(challenges.results(k).challenge().nonce());
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::AttestBatchResponse resp;
    grpc::Status st = ra.rpc->stub->AttestBatch(&ctx, areq, &resp);
    if (!st.ok()) {
      state.SkipWithError(st.error_message().c_str());
      break;
    }
    for (const auto& r : resp.results()) {
      if (r.code() != 0) {
        state.SkipWithError(r.message().c_str());
        break;
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * mine.size());
  if (state.thread_index() == 0) {
    const uint64_t w = ra.writer->groups_written() - writes_before;
    const uint64_t b = ra.writer->batches_written() - batches_before;
    if (w > 0) state.counters["records_per_sync"] = static_cast<double>(b) / w;
  }
}
BENCHMARK(BM_RpcBatchAttestationEncryptedStore)
    ->UseRealTime()
    ->Threads(1)
    ->Threads(2)
    ->Threads(4);

// Device side alone (Pluton quote), for reference.
void BM_DeviceQuote(benchmark::State& state) {
  Platform& p = GetPlatform();
  std::string nonce = crypto::RandomBytes(32);
  for (auto _ : state) benchmark::DoNotOptimize(p.devices[0]->Quote(nonce));
  state.counters["ops_per_s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DeviceQuote);

// ------------------------------------------------------------ nonce store

void BM_NonceIssueConsume(benchmark::State& state) {
  static NonceStore* nonces = new NonceStore(Clock::Real());
  std::string device = absl::StrCat("device-", state.thread_index());
  for (auto _ : state) {
    auto c = nonces->Issue(device);
    benchmark::DoNotOptimize(nonces->Consume(device, c->nonce));
  }
  state.counters["ops_per_s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_NonceIssueConsume)->Threads(1)->Threads(2)->UseRealTime();

// ------------------------------------------------------------ certificates

// DeviceCertificateSpec: the certificate Attest issues for pool device 0.
crypto::CertificateSpec DeviceCertificateSpec(Platform& p) {
  absl::Time now = absl::Now();
  crypto::CertificateSpec spec;
  spec.common_name = p.devices[0]->device_id();
  spec.organization = "Contoso";
  spec.subject_public_key = p.devices[0]->CertificatePublicKey();
  spec.not_before = now;
  spec.not_after = now + absl::Hours(24);
  spec.usage = crypto::KeyUsage::kClientAuth;
  spec.claims.device_id = spec.common_name;
  spec.claims.tenant_id = kTenant;
  spec.claims.device_group_id = kGroup;
  spec.claims.scope = "full";
  return spec;
}

void BM_IssueDeviceCertificate(benchmark::State& state) {
  Platform& p = GetPlatform();
  crypto::CertificateSpec spec = DeviceCertificateSpec(p);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        crypto::IssueCertificate(spec, p.tenant_ca_key, p.tenant_ca_pem));
  }
  state.counters["ops_per_s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_IssueDeviceCertificate);

// The same certificate through the tenant's cached CertificateIssuer (what
// Attest uses): no issuer PEM parsing or key setup per certificate.
void BM_IssueDeviceCertificateCachedIssuer(benchmark::State& state) {
  Platform& p = GetPlatform();
  auto ca = *p.catalog->GetSharedTenantCa(kTenant);
  crypto::CertificateSpec spec = DeviceCertificateSpec(p);
  for (auto _ : state) {
    benchmark::DoNotOptimize(ca->issuer->IssueWithSerial(spec));
  }
  state.counters["ops_per_s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_IssueDeviceCertificateCachedIssuer);

// ------------------------------------------------------------ callgrind

// RunCallgrindPhases: `--callgrind=N` mode. Under
//   valgrind --tool=callgrind --instr-atstart=no \
//     bazel-bin/securitysvc/attestation_benchmark --callgrind=64
// (setup and warm-ups run uninstrumented, so at near native speed) each
// phase runs N operations after a warm-up and is dumped as its own
// callgrind part (callgrind.out.PID.K, named by the phase), counting every
// thread of the process: gRPC client and server threads, the group-commit
// writer and RocksDB's own threads. Phases: "rpc_attest" (GetChallenge +
// device Quote + Attest over gRPC/mTLS into the encrypted RocksDB with group
// commit: the device side and the shard side of one attestation together),
// "batch_attest" (the gateway path: GetChallenges + quotes + AttestBatch of
// 32, N rounded down to whole batches), "device_quote", "ecdsa_sign",
// "ecdsa_verify", "issue_certificate". Outside valgrind the client requests
// are no-ops and the phases just run.
void Phase(const char* name, int n, const std::function<void()>& op) {
  for (int i = 0; i < std::min(n, 16); ++i) op();  // warm-up, not counted
  CALLGRIND_ZERO_STATS;
  CALLGRIND_START_INSTRUMENTATION;
  absl::Time start = absl::Now();
  for (int i = 0; i < n; ++i) op();
  absl::Duration d = absl::Now() - start;
  CALLGRIND_STOP_INSTRUMENTATION;
  CALLGRIND_DUMP_STATS_AT(name);
  fprintf(stderr, "phase %s: %d ops, %.1f us/op wall\n", name, n,
          absl::ToDoubleMicroseconds(d) / n);
}

int RunCallgrindPhases(int n) {
  g_rpc_deadline = absl::Minutes(10);
  g_under_callgrind = true;
  Platform& p = GetPlatform();
  RocksAttestor& ra = GetRocksAttestor(true);
  size_t next = 0;
  Phase("rpc_attest", n, [&] {
    grpc::Status st =
        RpcAttestOnce(*ra.rpc, *p.devices[next++ % p.devices.size()]);
    if (!st.ok()) {
      fprintf(stderr, "rpc_attest: %s\n", st.error_message().c_str());
      abort();
    }
  });
  // 32 devices per batch (loadgen sends up to 64): under valgrind on a shared
  // machine a batch of 64 can outlive the nonces' 30 s lifetime.
  const int batch = std::min<int>(32, p.devices.size());
  Phase("batch_attest", std::max(1, n / batch), [&] {
    v1::GetChallengesRequest creq;
    for (int k = 0; k < batch; ++k) {
      creq.add_device_ids(p.devices[k]->device_id());
    }
    v1::GetChallengesResponse challenges;
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(g_rpc_deadline));
      grpc::Status st = ra.rpc->stub->GetChallenges(&ctx, creq, &challenges);
      if (!st.ok()) abort();
    }
    v1::AttestBatchRequest areq;
    for (int k = 0; k < batch; ++k) {
      v1::AttestRequest* r = areq.add_requests();
      r->set_device_id(p.devices[k]->device_id());
      *r->mutable_quote() =
          *p.devices[k]->Quote(challenges.results(k).challenge().nonce());
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(g_rpc_deadline));
    v1::AttestBatchResponse resp;
    grpc::Status st = ra.rpc->stub->AttestBatch(&ctx, areq, &resp);
    if (!st.ok()) abort();
    for (const auto& r : resp.results()) {
      if (r.code() != 0) {
        fprintf(stderr, "batch_attest: %s\n", r.message().c_str());
        abort();
      }
    }
  });
  fprintf(stderr, "batch_attest: %d attestations per op\n", batch);
  std::string nonce = crypto::RandomBytes(32);
  Phase("device_quote", n,
        [&] { benchmark::DoNotOptimize(p.devices[0]->Quote(nonce)); });
  auto key = crypto::EcPrivateKey::Generate();
  std::string msg(200, 'm');
  std::string pub = key.PublicKey();
  std::string sig = *key.Sign(msg);
  Phase("ecdsa_sign", n, [&] { benchmark::DoNotOptimize(key.Sign(msg)); });
  Phase("ecdsa_verify", n,
        [&] { benchmark::DoNotOptimize(crypto::EcdsaVerify(pub, msg, sig)); });
  auto ca = *p.catalog->GetSharedTenantCa(kTenant);
  crypto::CertificateSpec spec = DeviceCertificateSpec(p);
  Phase("issue_certificate", n,
        [&] { benchmark::DoNotOptimize(ca->issuer->IssueWithSerial(spec)); });
  return 0;
}

}  // namespace
}  // namespace sphere::attestation

// As the shard and management binaries do, unless
// SPHERE_DEADLOCK_DETECTION=1 (to measure what the check costs).
int main(int argc, char** argv) {
  const char* detect = getenv("SPHERE_DEADLOCK_DETECTION");
  if (detect == nullptr || std::string(detect) != "1") {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  for (int i = 1; i < argc; ++i) {
    absl::string_view a(argv[i]);
    if (absl::ConsumePrefix(&a, "--callgrind=")) {
      int n = 0;
      if (!absl::SimpleAtoi(a, &n) || n <= 0) {
        fprintf(stderr, "--callgrind=N wants a positive count\n");
        return 2;
      }
      return sphere::attestation::RunCallgrindPhases(n);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
