#include "loadgen/floors.h"

#include <grpcpp/generic/generic_stub.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"

namespace sphere::loadgen {

EcdsaRates MeasureEcdsa(absl::Duration duration) {
  EcdsaRates rates;
  auto key = crypto::EcPrivateKey::Generate();
  const std::string message(200, 'q');  // about a quote body's size
  auto sig = key.Sign(message);
  if (!sig.ok()) return rates;
  const std::string pub = key.PublicKey();
  // Half the time each; check the clock every 16 operations.
  const absl::Duration half = duration / 2;
  int n = 0;
  absl::Time t0 = absl::Now(), end = t0 + half;
  for (absl::Time now = t0; now < end; now = absl::Now()) {
    for (int i = 0; i < 16; ++i) {
      if (!key.Sign(message).ok()) return rates;
    }
    n += 16;
  }
  rates.sign_per_s = n / absl::ToDoubleSeconds(absl::Now() - t0);
  n = 0;
  t0 = absl::Now();
  end = t0 + half;
  for (absl::Time now = t0; now < end; now = absl::Now()) {
    for (int i = 0; i < 16; ++i) {
      if (!crypto::EcdsaVerify(pub, message, *sig).ok()) return rates;
    }
    n += 16;
  }
  rates.verify_per_s = n / absl::ToDoubleSeconds(absl::Now() - t0);
  return rates;
}

double AttestCryptoBound(int cores, const EcdsaRates& rates, double signs,
                         double verifies) {
  if (rates.sign_per_s <= 0 || rates.verify_per_s <= 0) return 0;
  const double cpu_s = signs / rates.sign_per_s + verifies / rates.verify_per_s;
  return cores / cpu_s;
}

namespace {

// EchoLoop keeps `window` health checks in flight until `end`; each
// completion starts the next. State is shared with the callbacks.
struct EchoLoop : std::enable_shared_from_this<EchoLoop> {
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  absl::Time end;
  std::atomic<uint64_t> ok{0};
  std::atomic<uint64_t> next{0};
  absl::Mutex mu;
  int in_flight ABSL_GUARDED_BY(mu) = 0;
  absl::Status first_error ABSL_GUARDED_BY(mu);

  void StartOne() {
    struct Call {
      grpc::ClientContext ctx;
      grpc::ByteBuffer req, resp;
    };
    auto call = std::make_shared<Call>();
    call->ctx.set_deadline(rpc::Deadline(absl::Seconds(5)));
    // HealthCheckRequest{service: ""} serializes to zero bytes.
    grpc::Slice empty;
    call->req = grpc::ByteBuffer(&empty, 1);
    auto& stub = *stubs[next.fetch_add(1) % stubs.size()];
    auto self = shared_from_this();
    stub.UnaryCall(&call->ctx, "/grpc.health.v1.Health/Check",
                   grpc::StubOptions(), &call->req, &call->resp,
                   [self, call](grpc::Status st) {
                     if (st.ok()) {
                       self->ok.fetch_add(1);
                     } else {
                       absl::MutexLock l(&self->mu);
                       if (self->first_error.ok()) {
                         self->first_error = rpc::FromGrpcStatus(st);
                       }
                     }
                     bool again;
                     {
                       absl::MutexLock l(&self->mu);
                       again = st.ok() && absl::Now() < self->end;
                       if (!again) --self->in_flight;
                     }
                     if (again) self->StartOne();
                   });
  }
};

}  // namespace

grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel,
                       const std::string& method, absl::Duration deadline) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(deadline));
  grpc::Slice empty;
  grpc::ByteBuffer req(&empty, 1), resp;
  grpc::Status status;
  auto rpc = stub.PrepareUnaryCall(&ctx, method, req, &cq);
  rpc->StartCall();
  rpc->Finish(&resp, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok)) {
    status = grpc::Status(grpc::StatusCode::INTERNAL, "completion queue shut");
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

absl::StatusOr<double> MeasureEchoRpc(
    const std::vector<cluster::ShardEndpoint>& shards,
    const rpc::TlsFiles& tls, absl::Duration duration, int window) {
  if (shards.empty()) return absl::InvalidArgumentError("no shards");
  auto loop = std::make_shared<EchoLoop>();
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (const auto& s : shards) {
    channels.push_back(rpc::NewChannel(s.address, tls));
    loop->stubs.push_back(std::make_unique<grpc::GenericStub>(channels.back()));
  }
  // Warm up: connect every channel (one call each) before timing.
  for (const auto& channel : channels) {
    grpc::Status st = CallEmpty(channel, "/grpc.health.v1.Health/Check",
                                absl::Seconds(10));
    if (!st.ok()) return rpc::FromGrpcStatus(st);
  }
  const absl::Time t0 = absl::Now();
  loop->end = t0 + duration;
  {
    absl::MutexLock l(&loop->mu);
    loop->in_flight = window;
  }
  for (int i = 0; i < window; ++i) loop->StartOne();
  absl::MutexLock l(&loop->mu);
  loop->mu.Await(absl::Condition(
      +[](int* n) { return *n == 0; }, &loop->in_flight));
  if (!loop->first_error.ok()) return loop->first_error;
  return loop->ok.load() / absl::ToDoubleSeconds(absl::Now() - t0);
}

absl::StatusOr<double> MeasureRocksDbSyncedWrites(const std::string& dir,
                                                  absl::Duration duration) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir, ": ", ec.message()));
  }
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) {
    return absl::InternalError(absl::StrCat("rocksdb open ", dir, ": ",
                                            s.ToString()));
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  const std::string value(300, 'r');  // about an attestation record
  uint64_t n = 0;
  const absl::Time t0 = absl::Now(), end = t0 + duration;
  while (absl::Now() < end) {
    rocksdb::WriteBatch batch;
    batch.Put(absl::StrCat("device/", n), value);
    if (auto w = db->Write(sync, &batch); !w.ok()) {
      return absl::InternalError(absl::StrCat("rocksdb write: ", w.ToString()));
    }
    ++n;
  }
  const double rate = n / absl::ToDoubleSeconds(absl::Now() - t0);
  db.reset();
  std::filesystem::remove_all(dir, ec);
  return rate;
}

}  // namespace sphere::loadgen
