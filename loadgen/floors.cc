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
    const std::vector<cluster::ShardEndpoint>& shards, const rpc::TlsFiles& tls,
    absl::Duration duration, int window) {
  if (shards.empty()) return absl::InvalidArgumentError("no shards");
  constexpr char kMethod[] = "/grpc.health.v1.Health/Check";
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (const auto& s : shards) {
    channels.push_back(rpc::NewChannel(s.address, tls, s.server_name));
    stubs.push_back(std::make_unique<grpc::GenericStub>(channels.back()));
  }
  // Warm up: connect every channel (one call each) before timing.
  for (const auto& channel : channels) {
    grpc::Status st = CallEmpty(channel, kMethod, absl::Seconds(10));
    if (!st.ok()) return rpc::FromGrpcStatus(st);
  }
  // `window` calls in flight on one completion queue, driven from this
  // thread: every object a call uses lives in its slot until it completes.
  struct Slot {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::GenericClientAsyncResponseReader> rpc;
    grpc::ByteBuffer resp;
    grpc::Status status;
  };
  grpc::CompletionQueue cq;
  std::vector<Slot> slots(static_cast<size_t>(std::max(window, 1)));
  grpc::Slice empty;  // HealthCheckRequest{service: ""} is zero bytes
  const grpc::ByteBuffer req(&empty, 1);
  size_t next = 0;
  auto start = [&](size_t i) {
    Slot& s = slots[i];
    s.rpc.reset();
    s.ctx = std::make_unique<grpc::ClientContext>();
    s.ctx->set_deadline(rpc::Deadline(absl::Seconds(5)));
    s.rpc = stubs[next++ % stubs.size()]->PrepareUnaryCall(s.ctx.get(), kMethod,
                                                           req, &cq);
    s.rpc->StartCall();
    s.rpc->Finish(&s.resp, &s.status, reinterpret_cast<void*>(i + 1));
  };
  const absl::Time t0 = absl::Now(), end = t0 + duration;
  for (size_t i = 0; i < slots.size(); ++i) start(i);
  size_t in_flight = slots.size();
  uint64_t ok_calls = 0;
  absl::Status first_error;
  void* tag = nullptr;
  bool ok = false;
  while (in_flight > 0 && cq.Next(&tag, &ok)) {
    const size_t i = reinterpret_cast<size_t>(tag) - 1;
    --in_flight;
    if (ok && slots[i].status.ok()) {
      ++ok_calls;
    } else if (first_error.ok()) {
      first_error = ok ? rpc::FromGrpcStatus(slots[i].status)
                       : absl::InternalError("echo call failed");
    }
    if (first_error.ok() && absl::Now() < end) {
      start(i);
      ++in_flight;
    }
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - t0);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!first_error.ok()) return first_error;
  return ok_calls / elapsed;
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
    return absl::InternalError(
        absl::StrCat("rocksdb open ", dir, ": ", s.ToString()));
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
