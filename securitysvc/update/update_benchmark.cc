// UpdateService benchmark (issue 11), on an in-process shard over loopback
// mTLS (TestPlatform + the update plug-in), each number next to its floor
// measured in the same run:
//   * GetUpdates with nothing pending (metadata cached, a device whose
//     group's set did not change) against an empty RPC
//     (grpc.health.v1.Health/Check) on the same channel; target >= 70 %.
//   * DownloadImage of a 4 MiB package in 64 KiB chunks against a raw stream
//     of the same bytes in the same chunks (a bare server-streaming handler
//     with no identity, metadata or cache work) on its own server.
// Prints both ratios after the table. See docs/benchmarks.md.
//   bazel run -c opt //securitysvc/update:update_benchmark
#include <benchmark/benchmark.h>
#include <grpcpp/generic/generic_stub.h>
#include <valgrind/callgrind.h>

#include <cstdio>
#include <map>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/log.h"
#include "mcu-model/image.h"
#include "protos/update.grpc.pb.h"
#include "securitysvc/shard_server/test_platform.h"
#include "securitysvc/update/update_plugin.h"

namespace sphere::update {
namespace {

using shard::TestPlatform;

constexpr size_t kPayload = 4 << 20;

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::abort();
  }
}

// RawStream: DownloadImage without any of the service's work: the floor.
class RawStream final : public v1::UpdateService::CallbackService {
 public:
  explicit RawStream(const std::string* bytes) : bytes_(bytes) {}
  grpc::ServerWriteReactor<v1::ImageChunk>* DownloadImage(
      grpc::CallbackServerContext*, const v1::DownloadImageRequest*) override {
    class Writer final : public grpc::ServerWriteReactor<v1::ImageChunk> {
     public:
      explicit Writer(const std::string* b) : b_(b) { Next(); }
      void OnWriteDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::CANCELLED);
        Next();
      }
      void OnDone() override { delete this; }

     private:
      void Next() {
        if (off_ >= b_->size()) return Finish(grpc::Status::OK);
        const size_t n =
            std::min<size_t>(kDefaultChunkBytes, b_->size() - off_);
        msg_.set_offset(off_);
        msg_.set_total_size(b_->size());
        msg_.set_data(b_->data() + off_, n);
        off_ += n;
        StartWrite(&msg_);
      }
      const std::string* b_;
      size_t off_ = 0;
      v1::ImageChunk msg_;
    };
    return new Writer(bytes_);
  }

 private:
  const std::string* bytes_;
};

struct Bench {
  Bench() {
    TestPlatform::Options o;
    o.extra_plugins = [this](TestPlatform& p) {
      for (const auto& pkg : p.factory_images()) {
        packages[crypto::HexEncode(crypto::Sha256(pkg.header()))] =
            pkg.SerializeAsString();
      }
      UpdatePlugin::Options uo;
      uo.signer = std::make_shared<KeyMetadataSigner>(p.image_signing_key());
      uo.packages = std::make_shared<FunctionPackageSource>(
          [this](absl::string_view id) -> absl::StatusOr<std::string> {
            auto it = packages.find(std::string(id));
            if (it == packages.end()) return absl::NotFoundError("none");
            return it->second;
          });
      std::vector<std::unique_ptr<shard::ShardPlugin>> v;
      v.push_back(std::make_unique<UpdatePlugin>(std::move(uo)));
      return v;
    };
    Check(platform.Start(std::move(o)), "platform");
    auto d = platform.NewDevice("update-benchmark-device");
    Check(d.status(), "device");
    device = *std::move(d);
    // A 4 MiB app deployed to the group.
    v1::ImageHeader h;
    h.set_component(mcu::AppComponentName("bench"));
    h.set_version(1);
    h.set_kind(v1::IMAGE_KIND_APPLICATION);
    h.set_tenant_id(TestPlatform::kTenant);
    h.mutable_manifest()->set_component_id("bench");
    auto pkg = mcu::SignImage(h, std::string(kPayload, 'b'),
                              platform.image_signing_key());
    Check(pkg.status(), "sign");
    v1::Image img;
    img.set_id(crypto::HexEncode(mcu::ImageHash(pkg->header())));
    img.set_tenant_id(TestPlatform::kTenant);
    img.set_component(h.component());
    img.set_version(1);
    img.set_kind(h.kind());
    img.set_image_hash(mcu::ImageHash(pkg->header()));
    img.set_size(kPayload);
    platform.catalog().PutImage(img);
    app_id = img.id();
    packages[app_id] = pkg->SerializeAsString();
    v1::WatchEvent ev;
    ev.set_revision(2);
    v1::Deployment* dep = ev.mutable_deployment();
    dep->set_id("bench-deployment");
    dep->set_tenant_id(TestPlatform::kTenant);
    dep->set_device_group_id(TestPlatform::kGroup);
    dep->add_image_ids(app_id);
    dep->set_create_revision(2);
    Check(platform.catalog().Apply(ev), "deploy");

    crypto::DeviceClaims c;
    c.device_id = device->device_id();
    c.tenant_id = TestPlatform::kTenant;
    c.device_group_id = TestPlatform::kGroup;
    c.scope = "full";
    c.epoch = "0";
    tls = platform.Issue(device->device_id(), crypto::KeyUsage::kClientAuth, c);
    channel = rpc::NewChannel(platform.server().address(), tls);
    stub = v1::UpdateService::NewStub(channel);
    generic = std::make_unique<grpc::GenericStub>(channel);

    raw = std::make_unique<RawStream>(&packages[app_id]);
    rpc::ServerOptions so;
    so.tls = platform.server_tls();
    raw_runner = std::make_unique<rpc::ServerRunner>(so);
    raw_runner->AddService(raw.get());
    Check(raw_runner->Start(), "raw server");
    raw_stub =
        v1::UpdateService::NewStub(rpc::NewChannel(raw_runner->address(), tls));
    // Warm up outside the measurement: the TLS handshake and the first
    // metadata signature (a generous deadline: under valgrind they take
    // seconds).
    grpc::Status warm;
    for (int attempt = 0; attempt < 5; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(rpc::Deadline(absl::Seconds(300)));
      ctx.set_wait_for_ready(true);
      v1::GetUpdatesRequest req;
      v1::GetUpdatesResponse resp;
      warm = stub->GetUpdates(&ctx, req, &resp);
      if (warm.ok()) break;
    }
    Check(rpc::FromGrpcStatus(warm), "warm-up");
  }
  TestPlatform platform;
  std::map<std::string, std::string> packages;
  std::unique_ptr<mcu::Device> device;
  std::string app_id;
  rpc::TlsFiles tls;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::UpdateService::Stub> stub;
  std::unique_ptr<grpc::GenericStub> generic;
  std::unique_ptr<RawStream> raw;
  std::unique_ptr<rpc::ServerRunner> raw_runner;
  std::unique_ptr<v1::UpdateService::Stub> raw_stub;
};

Bench& B() {
  static Bench* b = new Bench;
  return *b;
}

std::map<std::string, double> g_rate;  // benchmark -> items or bytes per s

void BM_FloorEmptyRpc(benchmark::State& state) {
  Bench& b = B();
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    grpc::ByteBuffer response;
    absl::Notification done;
    grpc::Status status;
    b.generic->UnaryCall(&ctx, "/grpc.health.v1.Health/Check",
                         grpc::StubOptions(), &request, &response,
                         [&](grpc::Status s) {
                           status = std::move(s);
                           done.Notify();
                         });
    done.WaitForNotification();
    if (!status.ok()) {
      state.SkipWithError(status.error_message().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
  g_rate["empty"] =
      state.iterations() / absl::ToDoubleSeconds(absl::Now() - start);
}
BENCHMARK(BM_FloorEmptyRpc)->UseRealTime();

void BM_GetUpdatesNothingPending(benchmark::State& state) {
  Bench& b = B();
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    v1::GetUpdatesRequest req;
    v1::GetUpdatesResponse resp;
    grpc::Status st = b.stub->GetUpdates(&ctx, req, &resp);
    if (!st.ok()) {
      state.SkipWithError(st.error_message().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
  g_rate["get_updates"] =
      state.iterations() / absl::ToDoubleSeconds(absl::Now() - start);
}
BENCHMARK(BM_GetUpdatesNothingPending)->UseRealTime();

void Stream(benchmark::State& state, v1::UpdateService::Stub* stub,
            const std::string& image_id, const char* key) {
  const absl::Time start = absl::Now();
  uint64_t bytes = 0;
  for (auto _ : state) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    v1::DownloadImageRequest req;
    req.set_image_id(image_id);
    auto reader = stub->DownloadImage(&ctx, req);
    v1::ImageChunk c;
    while (reader->Read(&c)) bytes += c.data().size();
    grpc::Status st = reader->Finish();
    if (!st.ok()) {
      state.SkipWithError(st.error_message().c_str());
      return;
    }
  }
  state.SetBytesProcessed(bytes);
  g_rate[key] = bytes / absl::ToDoubleSeconds(absl::Now() - start);
}

void BM_FloorRawStream(benchmark::State& state) {
  Stream(state, B().raw_stub.get(), B().app_id, "raw");
}
BENCHMARK(BM_FloorRawStream)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_DownloadImage(benchmark::State& state) {
  Stream(state, B().stub.get(), B().app_id, "download");
}
BENCHMARK(BM_DownloadImage)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sphere::update

namespace sphere::update {
namespace {

// FixedCalls: `n` sequential calls of one kind and nothing else, for
// callgrind. After 20 warm-up calls of the same kind, callgrind's
// instrumentation is switched on for exactly the n calls (run under
// `valgrind --tool=callgrind --instr-atstart=no`): instructions per call =
// the dump's total / n, client and server together (see
// docs/benchmarks.md). Outside valgrind the macros do nothing.
int OneCall(Bench& b, absl::string_view kind, int i);
int FixedCalls(absl::string_view kind, int n) {
  Bench& b = B();
  for (int i = 0; i < 20; ++i) {
    if (int rc = OneCall(b, kind, -1 - i); rc != 0) return rc;
  }
  CALLGRIND_START_INSTRUMENTATION;
  for (int i = 0; i < n; ++i) {
    if (int rc = OneCall(b, kind, i); rc != 0) return rc;
  }
  CALLGRIND_STOP_INSTRUMENTATION;
  CALLGRIND_DUMP_STATS_AT("fixed calls");
  std::printf("%d %s calls done\n", n, std::string(kind).c_str());
  return 0;
}

int OneCall(Bench& b, absl::string_view kind, int i) {
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
    grpc::Status st;
    if (kind == "get_updates") {
      v1::GetUpdatesRequest req;
      v1::GetUpdatesResponse resp;
      st = b.stub->GetUpdates(&ctx, req, &resp);
    } else if (kind == "empty") {
      grpc::Slice empty("");
      grpc::ByteBuffer request(&empty, 1), response;
      absl::Notification done;
      b.generic->UnaryCall(&ctx, "/grpc.health.v1.Health/Check",
                           grpc::StubOptions(), &request, &response,
                           [&](grpc::Status s) {
                             st = std::move(s);
                             done.Notify();
                           });
      done.WaitForNotification();
    } else {
      std::fprintf(stderr, "--calls: get_updates:N or empty:N\n");
      return 2;
    }
    if (!st.ok()) {
      std::fprintf(stderr, "call %d: %s\n", i, st.error_message().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace sphere::update

int main(int argc, char** argv) {
  // Request lines are logged at info for GetUpdates and at debug for the
  // health floor: compare the RPC work, not stdout (see docs/benchmarks.md).
  sphere::log::SetMinLevel(sphere::log::Level::kWarning);
  // --calls=<get_updates|empty>:N runs N calls of that kind and exits.
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (absl::ConsumePrefix(&a, "--calls=")) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(a, absl::MaxSplits(':', 1));
      int n = 0;
      if (!absl::SimpleAtoi(kv.second, &n) || n < 0) {
        std::fprintf(stderr, "--calls: get_updates:N or empty:N\n");
        return 2;
      }
      return sphere::update::FixedCalls(kv.first, n);
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  auto& r = sphere::update::g_rate;
  if (r.count("empty") && r.count("get_updates")) {
    std::printf(
        "GetUpdates (nothing pending): %.0f/s vs empty RPC %.0f/s = %.0f %%"
        " (target >= 70 %%)\n",
        r["get_updates"], r["empty"], 100 * r["get_updates"] / r["empty"]);
  }
  if (r.count("raw") && r.count("download")) {
    std::printf("DownloadImage: %.1f MB/s vs raw stream %.1f MB/s = %.0f %%\n",
                r["download"] / 1e6, r["raw"] / 1e6,
                100 * r["download"] / r["raw"]);
  }
  return 0;
}
