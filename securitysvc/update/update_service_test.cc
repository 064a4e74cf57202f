// UpdateService on an in-process shard (TestPlatform, real mTLS): GetUpdates,
// DownloadImage and ReportUpdateResult, and the service-side attacks, each
// asserting the specific error and that nothing changed.
#include "securitysvc/update/update_service.h"

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/memory_store.h"
#include "mcu-model/image.h"
#include "protos/attestation.grpc.pb.h"
#include "protos/update.grpc.pb.h"
#include "securitysvc/auth/device_authenticator.h"
#include "securitysvc/shard_server/test_platform.h"
#include "securitysvc/update/update_plugin.h"

namespace sphere::update {
namespace {

using shard::TestPlatform;

constexpr char kOtherTenant[] = "tenant-other";

// FullScopeProbe: a full-scope device method on the same shard (the kind
// error reporting and every non-update device service use): answers
// GetChallenge through the shard's handler with DeviceAccess::kFullScope.
class FullScopeProbe final : public v1::AttestationService::CallbackService {
 public:
  explicit FullScopeProbe(const shard::DeviceCallHandler* calls)
      : calls_(calls) {}
  grpc::ServerUnaryReactor* GetChallenge(
      grpc::CallbackServerContext* ctx, const v1::GetChallengeRequest* req,
      v1::GetChallengeResponse* resp) override {
    static const auto* m = new shard::DeviceMethod(
        "probe_full_scope", shard::DeviceAccess::kFullScope,
        "sphere_test_update_probe_full_seconds");
    return calls_->Unary(ctx, *m, req->device_id(),
                         [&](const shard::DeviceCall& call) {
                           resp->set_nonce(call.device_id);
                           return absl::OkStatus();
                         });
  }

 private:
  const shard::DeviceCallHandler* const calls_;
};

struct Shared {
  TestPlatform platform;
  UpdatePlugin* plugin = nullptr;
  std::map<std::string, std::string> packages;  // image id -> bytes
  std::unique_ptr<mcu::Device> device, other;
  std::string app_id, other_tenant_app_id;
  std::unique_ptr<FullScopeProbe> probe;
  std::unique_ptr<rpc::ServerRunner> probe_runner;
};
Shared* g = nullptr;

// AddApp signs an app for `tenant`, records it in the catalog and the
// package source; returns its id.
std::string AddApp(const std::string& tenant, const std::string& component,
                   uint32_t version, size_t payload_bytes) {
  v1::ImageHeader h;
  h.set_component(mcu::AppComponentName(component));
  h.set_version(version);
  h.set_kind(v1::IMAGE_KIND_APPLICATION);
  h.set_tenant_id(tenant);
  h.mutable_manifest()->set_component_id(component);
  auto pkg = mcu::SignImage(h, std::string(payload_bytes, 'p'),
                            g->platform.image_signing_key());
  EXPECT_TRUE(pkg.ok()) << pkg.status();
  v1::Image img;
  img.set_id(crypto::HexEncode(mcu::ImageHash(pkg->header())));
  img.set_tenant_id(tenant);
  img.set_component(h.component());
  img.set_version(version);
  img.set_kind(h.kind());
  img.set_image_hash(mcu::ImageHash(pkg->header()));
  img.set_size(payload_bytes);
  g->platform.catalog().PutImage(img);
  g->packages[img.id()] = pkg->SerializeAsString();
  return img.id();
}

class UpdateServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g = new Shared;
    TestPlatform::Options o;
    o.attestation.device_status_extension = [](absl::string_view id,
                                               v1::DeviceStatus* s) {
      g->plugin->FillDeviceStatus(id, s);
    };
    o.attestation.device_history_extension =
        [](absl::string_view id, std::vector<v1::DeviceHistoryEntry>* out) {
          g->plugin->FillDeviceHistory(id, out);
        };
    o.extra_plugins = [](TestPlatform& p) {
      for (const auto& pkg : p.factory_images()) {
        g->packages[crypto::HexEncode(crypto::Sha256(pkg.header()))] =
            pkg.SerializeAsString();
      }
      UpdatePlugin::Options uo;
      uo.signer = std::make_shared<KeyMetadataSigner>(p.image_signing_key());
      uo.packages = std::make_shared<FunctionPackageSource>(
          [](absl::string_view id) -> absl::StatusOr<std::string> {
            auto it = g->packages.find(std::string(id));
            if (it == g->packages.end()) return absl::NotFoundError("none");
            return it->second;
          });
      auto plugin = std::make_unique<UpdatePlugin>(std::move(uo));
      g->plugin = plugin.get();
      std::vector<std::unique_ptr<shard::ShardPlugin>> v;
      v.push_back(std::move(plugin));
      return v;
    };
    ASSERT_TRUE(g->platform.Start(std::move(o)).ok());
    auto d = g->platform.NewDevice("update-service-test-device");
    ASSERT_TRUE(d.ok()) << d.status();
    g->device = *std::move(d);
    auto other = g->platform.NewDevice("update-service-test-other");
    ASSERT_TRUE(other.ok()) << other.status();
    g->other = *std::move(other);
    // 200 KiB app so downloads take several chunks.
    g->app_id = AddApp(TestPlatform::kTenant, "dw100", 2, 200 << 10);
    g->other_tenant_app_id = AddApp(kOtherTenant, "fridge", 1, 1000);
    v1::Deployment dep;
    dep.set_id("dep-1");
    dep.set_tenant_id(TestPlatform::kTenant);
    dep.set_device_group_id(TestPlatform::kGroup);
    dep.add_image_ids(g->app_id);
    dep.set_create_revision(2);
    v1::WatchEvent ev;
    ev.set_revision(2);
    *ev.mutable_deployment() = dep;
    ASSERT_TRUE(g->platform.catalog().Apply(ev).ok());

    g->probe = std::make_unique<FullScopeProbe>(
        g->platform.server().context().device_calls);
    rpc::ServerOptions so;
    so.tls = g->platform.server_tls();
    g->probe_runner = std::make_unique<rpc::ServerRunner>(so);
    g->probe_runner->AddService(g->probe.get());
    ASSERT_TRUE(g->probe_runner->Start().ok());
  }
  static void TearDownTestSuite() {
    g->probe_runner->Shutdown(absl::Seconds(5));
    delete g;
    g = nullptr;
  }

  static rpc::TlsFiles Cert(const mcu::Device& d, const std::string& scope) {
    return g->platform.DeviceTls(d, scope);
  }
  static std::unique_ptr<v1::UpdateService::Stub> Stub(
      const rpc::TlsFiles& tls) {
    return v1::UpdateService::NewStub(
        rpc::NewChannel(g->platform.server().address(), tls));
  }
  static grpc::Status GetUpdates(const rpc::TlsFiles& tls,
                                 v1::GetUpdatesResponse* resp,
                                 const std::string& device_id = "") {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::GetUpdatesRequest req;
    req.set_device_id(device_id);
    return Stub(tls)->GetUpdates(&ctx, req, resp);
  }
  // Download reads the whole stream; `chunks` gets each chunk's size.
  static grpc::Status Download(const rpc::TlsFiles& tls,
                               const std::string& image_id, uint64_t offset,
                               uint32_t max_chunk, std::string* bytes,
                               std::vector<size_t>* chunks = nullptr,
                               uint64_t length = 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::DownloadImageRequest req;
    req.set_image_id(image_id);
    req.set_offset(offset);
    req.set_max_chunk_bytes(max_chunk);
    req.set_length(length);
    auto stub = Stub(tls);
    auto reader = stub->DownloadImage(&ctx, req);
    v1::ImageChunk c;
    while (reader->Read(&c)) {
      EXPECT_EQ(c.offset(), offset + bytes->size());
      bytes->append(c.data());
      if (chunks) chunks->push_back(c.data().size());
    }
    return reader->Finish();
  }
  static grpc::Status Report(const rpc::TlsFiles& tls,
                             v1::ReportUpdateResultRequest req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
    v1::ReportUpdateResultResponse resp;
    return Stub(tls)->ReportUpdateResult(&ctx, req, &resp);
  }
  static const v1::UpdateTarget* Target(const v1::UpdateMetadata& m,
                                        const std::string& id) {
    for (const auto& t : m.targets()) {
      if (t.image_id() == id) return &t;
    }
    return nullptr;
  }
};

TEST_F(UpdateServiceTest, GetUpdatesAnswersTheGroupsSignedSet) {
  v1::GetUpdatesResponse resp;
  grpc::Status st = GetUpdates(Cert(*g->device, "full"), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto m = VerifySignedMetadata(g->platform.image_signing_key().PublicKey(),
                                resp.signed_metadata());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->device_group_id(), TestPlatform::kGroup);
  EXPECT_EQ(m->tenant_id(), TestPlatform::kTenant);
  EXPECT_EQ(m->deployment_id(), "dep-1");
  EXPECT_EQ(resp.deployment_id(), "dep-1");
  EXPECT_EQ(m->targets_size(),
            static_cast<int>(g->platform.factory_images().size()) + 1);
  const v1::UpdateTarget* app = Target(*m, g->app_id);
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->package_size(), g->packages[g->app_id].size());
  EXPECT_EQ(app->package_sha256(), crypto::Sha256(g->packages[g->app_id]));
  EXPECT_EQ(app->tenant_id(), TestPlatform::kTenant);
  EXPECT_EQ(Target(*m, g->other_tenant_app_id), nullptr);
  // The same answer again comes from memory: no new signature.
  const uint64_t signed_before = g->plugin->metadata()->signatures();
  v1::GetUpdatesResponse again;
  ASSERT_TRUE(GetUpdates(Cert(*g->other, "full"), &again).ok());
  EXPECT_EQ(again.signed_metadata().SerializeAsString(),
            resp.signed_metadata().SerializeAsString());
  EXPECT_EQ(g->plugin->metadata()->signatures(), signed_before);
}

TEST_F(UpdateServiceTest, GatewayWithSessionTokenGetsTheSameSet) {
  v1::GetUpdatesResponse direct, via_gateway;
  ASSERT_TRUE(GetUpdates(Cert(*g->device, "full"), &direct).ok());
  const std::string token =
      g->platform.SessionToken(*g->device, auth::Scope::kUpdateOnly);
  grpc::ClientContext cctx;
  cctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  cctx.AddMetadata(auth::kSessionTokenMetadata, token);
  v1::GetUpdatesRequest req;
  req.set_device_id(g->device->device_id());
  grpc::Status st =
      Stub(g->platform.gateway_tls())->GetUpdates(&cctx, req, &via_gateway);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(via_gateway.signed_metadata().SerializeAsString(),
            direct.signed_metadata().SerializeAsString());
}

TEST_F(UpdateServiceTest,
       Attack_UpdateOnlyCertificateAcceptedByUpdateServiceRefusedElsewhere) {
  const rpc::TlsFiles update_only = Cert(*g->device, "update-only");
  v1::GetUpdatesResponse resp;
  grpc::Status st = GetUpdates(update_only, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto md = VerifySignedMetadata(g->platform.image_signing_key().PublicKey(),
                                 resp.signed_metadata());
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_GT(md->targets_size(), 0);
  std::string bytes;
  st = Download(update_only, g->app_id, 0, 0, &bytes);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(bytes, g->packages[g->app_id]);
  // Another device method (full scope) on the same shard refuses it.
  auto probe = v1::AttestationService::NewStub(
      rpc::NewChannel(g->probe_runner->address(), update_only));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::GetChallengeResponse who;
  st = probe->GetChallenge(&ctx, v1::GetChallengeRequest(), &who);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "update-only"))
      << st.error_message();
  EXPECT_TRUE(who.nonce().empty());
}

TEST_F(UpdateServiceTest, DownloadResumesFromAnOffsetInBoundedChunks) {
  const std::string& pkg = g->packages[g->app_id];
  const rpc::TlsFiles tls = Cert(*g->device, "full");
  std::string whole;
  std::vector<size_t> chunks;
  grpc::Status st = Download(tls, g->app_id, 0, 50000, &whole, &chunks);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(whole, pkg);
  ASSERT_GT(chunks.size(), 3u);
  for (size_t c : chunks) EXPECT_LE(c, 50000u);
  // Default chunk: 64 KiB.
  std::string dflt;
  chunks.clear();
  ASSERT_TRUE(Download(tls, g->app_id, 0, 0, &dflt, &chunks).ok());
  EXPECT_EQ(chunks[0], size_t{64} << 10);
  // Interrupted at 70000: resume from there.
  std::string rest;
  st = Download(tls, g->app_id, 70000, 0, &rest);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(rest, pkg.substr(70000));
}

// Ranges (DownloadImageRequest.length): the device's save points. A range
// ends cleanly at offset + length, and never past the signed length
// whatever length asks for.
TEST_F(UpdateServiceTest, DownloadRangesEndAtTheirLengthNeverPastTheSignedOne) {
  const std::string& pkg = g->packages[g->app_id];
  const rpc::TlsFiles tls = Cert(*g->device, "full");
  std::string got;
  for (uint64_t off = 0; off < pkg.size(); off += 30000) {
    std::string range;
    grpc::Status st =
        Download(tls, g->app_id, off, 8192, &range, nullptr, 30000);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(range, pkg.substr(off, 30000));
    got += range;
  }
  EXPECT_EQ(got, pkg);
  std::string tail;
  ASSERT_TRUE(
      Download(tls, g->app_id, pkg.size() - 10, 0, &tail, nullptr, ~uint64_t{0})
          .ok());
  EXPECT_EQ(tail, pkg.substr(pkg.size() - 10));
}

TEST_F(UpdateServiceTest, Attack_AnotherTenantsImageIsRefused) {
  const uint64_t loads = g->plugin->packages()->source_loads();
  std::string bytes;
  grpc::Status st =
      Download(Cert(*g->device, "full"), g->other_tenant_app_id, 0, 0, &bytes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "not in this device"))
      << st.error_message();
  EXPECT_TRUE(bytes.empty());
  EXPECT_EQ(g->plugin->packages()->Cached(g->other_tenant_app_id), nullptr);
  EXPECT_EQ(g->plugin->packages()->source_loads(), loads);
  // An image the platform never signed: NOT_FOUND.
  st =
      Download(Cert(*g->device, "full"),
               crypto::HexEncode(crypto::Sha256("never signed")), 0, 0, &bytes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(bytes.empty());
}

TEST_F(UpdateServiceTest, Attack_DownloadPastTheSignedLengthIsImpossible) {
  const rpc::TlsFiles tls = Cert(*g->device, "full");
  const uint64_t size = g->packages[g->app_id].size();
  std::string bytes;
  grpc::Status st = Download(tls, g->app_id, size + 1, 0, &bytes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "past the end"))
      << st.error_message();
  EXPECT_TRUE(bytes.empty());
  st = Download(tls, g->app_id, size, 0, &bytes);  // at the end: nothing
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(bytes.empty());
  st = Download(tls, g->app_id, ~uint64_t{0}, 0, &bytes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_TRUE(bytes.empty());
}

TEST_F(UpdateServiceTest, Attack_OversizedOrMalformedRequestsAreRefused) {
  const rpc::TlsFiles tls = Cert(*g->device, "full");
  std::string bytes;
  grpc::Status st = Download(tls, g->app_id, 0, (1 << 20) + 1, &bytes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "max_chunk_bytes"));
  st = Download(tls, std::string(100000, 'a'), 0, 0, &bytes);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "64 lowercase hex"));
  EXPECT_FALSE(absl::StrContains(st.error_message(), "aaaaaaaa"));
  EXPECT_TRUE(bytes.empty());
  v1::GetUpdatesResponse resp;
  st = GetUpdates(tls, &resp, std::string(100000, 'f'));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.targets_size(), 0);

  // Reports: nothing is stored for a refused one.
  const std::string id = g->other->device_id();
  const rpc::TlsFiles other = Cert(*g->other, "full");
  v1::ReportUpdateResultRequest r;
  r.set_image_id(g->app_id);
  r.set_result(v1::ReportUpdateResultRequest::FAILED);
  r.set_detail(std::string(257, 'x'));
  st = Report(other, r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "detail is 257 bytes"));
  r.set_detail("");
  r.set_result(static_cast<v1::ReportUpdateResultRequest::Result>(99));
  st = Report(other, r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  r.set_result(v1::ReportUpdateResultRequest::FAILED);
  r.set_image_id(g->other_tenant_app_id);  // another tenant's image
  st = Report(other, r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  r.set_image_id(g->app_id);
  r.set_device_id(g->device->device_id());  // speaking for another device
  st = Report(other, r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::IsNotFound(g->plugin->results()->Get(id).status()));
  EXPECT_TRUE(absl::IsNotFound(
      g->plugin->results()->Get(g->device->device_id()).status()));
}

TEST_F(UpdateServiceTest, ReportUpdateResultRecordsPerDeviceAndCounts) {
  auto dev = g->platform.NewDevice("update-service-test-reporter");
  ASSERT_TRUE(dev.ok());
  const rpc::TlsFiles tls = Cert(**dev, "update-only");
  const StageCounts before = g->plugin->results()->Counts("dep-1")[100];
  v1::ReportUpdateResultRequest r;
  r.set_image_id(g->app_id);
  r.set_result(v1::ReportUpdateResultRequest::ROLLED_BACK);
  r.set_detail("crash loop after install");
  r.set_metadata_version(2);
  r.set_version(2);
  grpc::Status st = Report(tls, r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto rec = g->plugin->results()->Get((*dev)->device_id());
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->result(), v1::ReportUpdateResultRequest::ROLLED_BACK);
  EXPECT_EQ(rec->detail(), "crash loop after install");
  EXPECT_EQ(rec->deployment_id(), "dep-1");
  EXPECT_EQ(rec->rollout_stage(), 100u);
  EXPECT_EQ(rec->reported_unix_ms(),
            absl::ToUnixMillis(g->platform.clock().Now()));
  StageCounts c = g->plugin->results()->Counts("dep-1")[100];
  EXPECT_EQ(c.rolled_back, before.rolled_back + 1);
  // The device installs on the next try: it counts once, as installed.
  r.set_result(v1::ReportUpdateResultRequest::RESULT_UNSPECIFIED);
  r.set_success(true);
  r.set_detail("");
  ASSERT_TRUE(Report(tls, r).ok());
  c = g->plugin->results()->Counts("dep-1")[100];
  EXPECT_EQ(c.rolled_back, before.rolled_back);
  EXPECT_EQ(c.installed, before.installed + 1);
  EXPECT_EQ(g->plugin->results()->Get((*dev)->device_id())->result(),
            v1::ReportUpdateResultRequest::INSTALLED);

  // Operators see it through DeviceStatusService (spherectl device show).
  crypto::DeviceClaims op;
  op.scope = "platform-operator";
  auto status = g->platform.StatusStub(
      g->platform.Issue("platform-op", crypto::KeyUsage::kClientAuth, op));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::GetDeviceStatusRequest sreq;
  sreq.add_device_ids((*dev)->device_id());
  v1::GetDeviceStatusResponse sresp;
  st = status->GetDeviceStatus(&ctx, sreq, &sresp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(sresp.devices_size(), 1);
  const v1::DeviceStatus& ds = sresp.devices(0);
  EXPECT_EQ(ds.last_update_result(), "INSTALLED");
  EXPECT_EQ(ds.last_update_component(), "app:dw100");
  EXPECT_EQ(ds.last_update_version(), 2u);
  EXPECT_EQ(ds.last_update_unix_ms(),
            absl::ToUnixMillis(g->platform.clock().Now()));
}

}  // namespace
}  // namespace sphere::update

namespace sphere::update {
namespace {

grpc::Status Counts(const rpc::TlsFiles& tls, const std::string& id,
                    v1::DeploymentCounts* out) {
  auto stub = v1::UpdateAdminService::NewStub(
      rpc::NewChannel(g->platform.server().address(), tls));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::GetDeploymentCountsRequest req;
  req.set_deployment_id(id);
  return stub->GetDeploymentCounts(&ctx, req, out);
}

TEST_F(UpdateServiceTest, DeploymentCountsForOperatorsOnly) {
  auto dev = g->platform.NewDevice("update-service-test-counted");
  ASSERT_TRUE(dev.ok());
  v1::ReportUpdateResultRequest r;
  r.set_image_id(g->app_id);
  r.set_result(v1::ReportUpdateResultRequest::FAILED);
  ASSERT_TRUE(Report(Cert(**dev, "full"), r).ok());
  const StageCounts expected = g->plugin->results()->Counts("dep-1")[100];
  ASSERT_GE(expected.failed, 1u);

  crypto::DeviceClaims platform_op;
  platform_op.scope = "platform-operator";
  v1::DeploymentCounts counts;
  grpc::Status st =
      Counts(g->platform.Issue("platform-op", crypto::KeyUsage::kClientAuth,
                               platform_op),
             "dep-1", &counts);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(counts.stages_size(), 1);
  EXPECT_EQ(counts.stages(0).rollout_stage(), 100u);
  EXPECT_EQ(counts.stages(0).failed(), expected.failed);
  EXPECT_EQ(counts.stages(0).installed(), expected.installed);

  crypto::DeviceClaims own_op;
  own_op.tenant_id = TestPlatform::kTenant;
  v1::DeploymentCounts own;
  ASSERT_TRUE(Counts(g->platform.Issue("tenant-op",
                                       crypto::KeyUsage::kClientAuth, own_op),
                     "dep-1", &own)
                  .ok());
  EXPECT_EQ(own.SerializeAsString(), counts.SerializeAsString());
}

TEST_F(UpdateServiceTest, Attack_DeploymentCountsRefuseDevicesAndOtherTenants) {
  crypto::DeviceClaims other_op;
  other_op.tenant_id = kOtherTenant;
  v1::DeploymentCounts counts;
  grpc::Status st = Counts(
      g->platform.Issue("other-op", crypto::KeyUsage::kClientAuth, other_op),
      "dep-1", &counts);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(counts.stages_size(), 0);  // as if nobody reported
  v1::DeploymentCounts device_view;
  st = Counts(Cert(*g->device, "full"), "dep-1", &device_view);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(device_view.stages_size(), 0);
  crypto::DeviceClaims platform_op;
  platform_op.scope = "platform-operator";
  st = Counts(g->platform.Issue("platform-op", crypto::KeyUsage::kClientAuth,
                                platform_op),
              std::string(1000, 'd'), &counts);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace sphere::update

// Issue 13: the bounded per-device history and the tenant-scoped
// relying-party query for it (DeviceStatusService.GetDeviceHistory).
namespace sphere::update {
namespace {

grpc::Status History(const rpc::TlsFiles& tls, const std::string& id,
                     v1::GetDeviceHistoryResponse* out,
                     const std::string& token = "", int page_size = 0) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::GetDeviceHistoryRequest req;
  req.set_device_id(id);
  req.set_page_token(token);
  req.set_page_size(page_size);
  return g->platform.StatusStub(tls)->GetDeviceHistory(&ctx, req, out);
}

rpc::TlsFiles TenantOperator(const std::string& tenant) {
  crypto::DeviceClaims op;
  op.tenant_id = tenant;
  return g->platform.Issue(absl::StrCat("op-", tenant),
                           crypto::KeyUsage::kClientAuth, op);
}

void AttestOnce(mcu::Device& d) {
  attestation::Attestor* a = g->platform.attestation().attestor();
  auto c = a->GetChallenge(d.device_id());
  ASSERT_TRUE(c.ok()) << c.status();
  auto q = d.Quote(c->nonce());
  ASSERT_TRUE(q.ok()) << q.status();
  v1::AttestRequest r;
  r.set_device_id(d.device_id());
  *r.mutable_quote() = *q;
  auto resp = a->Attest(r);
  ASSERT_TRUE(resp.ok()) << resp.status();
}

TEST_F(UpdateServiceTest, DeviceHistoryJoinsAttestationsAndUpdateResults) {
  auto dev = g->platform.NewDevice("update-service-test-history");
  ASSERT_TRUE(dev.ok());
  const std::string id = (*dev)->device_id();
  const rpc::TlsFiles tls = Cert(**dev, "full");
  g->platform.clock().Advance(absl::Minutes(1));
  ASSERT_NO_FATAL_FAILURE(AttestOnce(**dev));
  const int64_t t1 = absl::ToUnixMillis(g->platform.clock().Now());
  g->platform.clock().Advance(absl::Minutes(1));
  v1::ReportUpdateResultRequest r;
  r.set_image_id(g->app_id);
  r.set_result(v1::ReportUpdateResultRequest::FAILED);
  r.set_detail("signature check failed");
  r.set_version(2);
  ASSERT_TRUE(Report(tls, r).ok());
  const int64_t t2 = absl::ToUnixMillis(g->platform.clock().Now());
  g->platform.clock().Advance(absl::Minutes(1));
  ASSERT_NO_FATAL_FAILURE(AttestOnce(**dev));
  g->platform.clock().Advance(absl::Minutes(1));
  r.set_result(v1::ReportUpdateResultRequest::INSTALLED);
  r.set_detail("");
  ASSERT_TRUE(Report(tls, r).ok());
  const int64_t t4 = absl::ToUnixMillis(g->platform.clock().Now());

  v1::GetDeviceHistoryResponse h;
  grpc::Status st = History(TenantOperator(TestPlatform::kTenant), id, &h);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(h.device_id(), id);
  EXPECT_FALSE(h.has_redirect());
  EXPECT_TRUE(h.next_page_token().empty());
  ASSERT_EQ(h.entries_size(), 4);
  // Newest first.
  EXPECT_EQ(h.entries(0).time_unix_ms(), t4);
  ASSERT_TRUE(h.entries(0).has_update_result());
  EXPECT_EQ(h.entries(0).update_result().result(), "INSTALLED");
  EXPECT_EQ(h.entries(0).update_result().component(), "app:dw100");
  EXPECT_EQ(h.entries(0).update_result().version(), 2u);
  ASSERT_TRUE(h.entries(1).has_attestation());
  EXPECT_TRUE(h.entries(1).attestation().success());
  EXPECT_FALSE(h.entries(1).attestation().outcome().empty());
  EXPECT_FALSE(h.entries(1).attestation().component_versions().empty());
  EXPECT_EQ(h.entries(2).time_unix_ms(), t2);
  EXPECT_EQ(h.entries(2).update_result().result(), "FAILED");
  EXPECT_EQ(h.entries(2).update_result().detail(), "signature check failed");
  EXPECT_EQ(h.entries(3).time_unix_ms(), t1);
  EXPECT_TRUE(h.entries(3).has_attestation());

  // Paged: 3, then the last one.
  v1::GetDeviceHistoryResponse p1, p2;
  ASSERT_TRUE(
      History(TenantOperator(TestPlatform::kTenant), id, &p1, "", 3).ok());
  ASSERT_EQ(p1.entries_size(), 3);
  ASSERT_FALSE(p1.next_page_token().empty());
  ASSERT_TRUE(History(TenantOperator(TestPlatform::kTenant), id, &p2,
                      p1.next_page_token(), 3)
                  .ok());
  ASSERT_EQ(p2.entries_size(), 1);
  EXPECT_TRUE(p2.next_page_token().empty());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(p2.entries(0),
                                                                 h.entries(3)));
}

TEST_F(UpdateServiceTest, Attack_AnotherTenantLearnsNothingFromDeviceHistory) {
  auto dev = g->platform.NewDevice("update-service-test-history-victim");
  ASSERT_TRUE(dev.ok());
  const std::string id = (*dev)->device_id();
  ASSERT_NO_FATAL_FAILURE(AttestOnce(**dev));
  v1::ReportUpdateResultRequest r;
  r.set_image_id(g->app_id);
  r.set_result(v1::ReportUpdateResultRequest::FAILED);
  r.set_detail("secret detail");
  ASSERT_TRUE(Report(Cert(**dev, "full"), r).ok());
  v1::GetDeviceHistoryResponse before;
  ASSERT_TRUE(History(TenantOperator(TestPlatform::kTenant), id, &before).ok());
  ASSERT_EQ(before.entries_size(), 2);

  // Tenant B asks for tenant A's device: the same answer as for an id the
  // platform never registered, and nothing in the response.
  const rpc::TlsFiles other = TenantOperator(kOtherTenant);
  v1::GetDeviceHistoryResponse theirs;
  grpc::Status st = History(other, id, &theirs);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(st.error_message(), absl::StrCat("device ", id, " is unknown"));
  EXPECT_EQ(theirs.ByteSizeLong(), 0u);
  const std::string never(64, 'e');
  v1::GetDeviceHistoryResponse none;
  grpc::Status unknown = History(other, never, &none);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(unknown.error_message(),
            absl::StrCat("device ", never, " is unknown"));
  // A page token of tenant A's device does not open it either.
  v1::GetDeviceHistoryResponse page;
  ASSERT_TRUE(
      History(TenantOperator(TestPlatform::kTenant), id, &page, "", 1).ok());
  ASSERT_FALSE(page.next_page_token().empty());
  st = History(other, id, &theirs, page.next_page_token(), 1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(theirs.ByteSizeLong(), 0u);
  // Devices cannot read history at all.
  st = History(Cert(**dev, "full"), id, &theirs);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(theirs.ByteSizeLong(), 0u);
  // Nothing changed for the owner.
  v1::GetDeviceHistoryResponse after;
  ASSERT_TRUE(History(TenantOperator(TestPlatform::kTenant), id, &after).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(after, before))
      << after.DebugString() << " vs " << before.DebugString();
}

TEST_F(UpdateServiceTest, Attack_MalformedHistoryRequestsAreRefused) {
  const rpc::TlsFiles own = TenantOperator(TestPlatform::kTenant);
  const std::string id = g->device->device_id();
  v1::GetDeviceHistoryResponse out;
  EXPECT_EQ(History(own, "not-an-id", &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(History(own, id, &out, "", 65).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(History(own, id, &out, "", -1).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  for (const std::string& token :
       {std::string("garbage"), std::string("h1.5"), std::string("h1.-1.x"),
        absl::StrCat("h1.999.", id.substr(0, 16)), std::string(5000, 'h'),
        // A token handed out for another device.
        absl::StrCat("h1.1.", g->other->device_id().substr(0, 16))}) {
    grpc::Status st = History(own, id, &out, token);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << token;
    EXPECT_EQ(out.ByteSizeLong(), 0u);
  }
}

TEST(UpdateHistoryTest, KeepsTheLastResultsInOneBatchAndSurvivesReload) {
  auto store = store::MemoryStore::Create({kUpdateResultsCf, kUpdateHistoryCf});
  ASSERT_TRUE(store.ok());
  const std::string id(64, 'a');
  auto report = [&](UpdateResults& results, int i) {
    v1::DeviceUpdateStatus s;
    s.set_device_id(id);
    s.set_result(i % 2 == 0 ? v1::ReportUpdateResultRequest::FAILED
                            : v1::ReportUpdateResultRequest::INSTALLED);
    s.set_detail(absl::StrCat("attempt ", i));
    s.set_component("app:dw100");
    s.set_version(i);
    s.set_reported_unix_ms(1000 + i);
    s.set_deployment_id("dep-h");
    return results.Record(s);
  };
  constexpr int kReports = kMaxUpdateHistory + 8;
  {
    UpdateResults results(store->get());
    ASSERT_TRUE(results.Load().ok());
    for (int i = 0; i < kReports; ++i) {
      ASSERT_TRUE(report(results, i).ok());
      ASSERT_LE((*store)->Size(kUpdateHistoryCf), kMaxUpdateHistory);
    }
  }
  UpdateResults reloaded(store->get());
  ASSERT_TRUE(reloaded.Load().ok());
  auto h = reloaded.History(id);
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->size(), kMaxUpdateHistory);
  EXPECT_EQ(h->front().detail(), absl::StrCat("attempt ", kReports - 32));
  EXPECT_EQ(h->back().detail(), absl::StrCat("attempt ", kReports - 1));
  for (const auto& e : *h) EXPECT_EQ(e.history_count(), 0u);
  // Counts see one device (the latest result), not its history.
  EXPECT_EQ(reloaded.Counts("dep-h")[0].reported(), 1u);
  ASSERT_TRUE(report(reloaded, kReports).ok());
  EXPECT_EQ((*store)->Size(kUpdateHistoryCf), kMaxUpdateHistory);
  h = reloaded.History(id);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->back().detail(), absl::StrCat("attempt ", kReports));
  EXPECT_EQ(h->front().detail(), absl::StrCat("attempt ", kReports - 31));
}

// The group commit of reports: many results in one write batch, in order;
// a failed write stores and counts nothing.
TEST(UpdateHistoryTest, RecordAllWritesAGroupInOrderAllOrNothing) {
  auto store = store::MemoryStore::Create({kUpdateResultsCf, kUpdateHistoryCf});
  ASSERT_TRUE(store.ok());
  UpdateResults results(store->get());
  ASSERT_TRUE(results.Load().ok());
  auto status = [](const std::string& id, v1::ReportUpdateResultRequest::Result r,
                   int64_t ms) {
    v1::DeviceUpdateStatus s;
    s.set_device_id(id);
    s.set_result(r);
    s.set_component("app:dw100");
    s.set_deployment_id("dep-g");
    s.set_rollout_stage(100);
    s.set_reported_unix_ms(ms);
    return s;
  };
  const std::string a(64, 'a'), b(64, 'b');
  using R = v1::ReportUpdateResultRequest;
  ASSERT_TRUE(results
                  .RecordAll({status(a, R::FAILED, 1), status(b, R::INSTALLED, 2),
                              status(a, R::INSTALLED, 3)})
                  .ok());
  // a: its later result, two history entries; counted once (installed).
  auto ra = results.Get(a);
  ASSERT_TRUE(ra.ok()) << ra.status();
  EXPECT_EQ(ra->result(), R::INSTALLED);
  EXPECT_EQ(ra->history_count(), 2u);
  auto ha = results.History(a);
  ASSERT_TRUE(ha.ok());
  ASSERT_EQ(ha->size(), 2u);
  EXPECT_EQ((*ha)[0].result(), R::FAILED);
  EXPECT_EQ((*ha)[1].result(), R::INSTALLED);
  StageCounts c = results.Counts("dep-g")[100];
  EXPECT_EQ(c.installed, 2u);
  EXPECT_EQ(c.failed, 0u);
  // A group whose write fails changes nothing.
  (*store)->FailNextWrites(1, absl::UnavailableError("disk gone"));
  absl::Status s = results.RecordAll({status(b, R::ROLLED_BACK, 4)});
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(results.Get(b)->result(), R::INSTALLED);
  EXPECT_EQ(results.Get(b)->history_count(), 1u);
  c = results.Counts("dep-g")[100];
  EXPECT_EQ(c.installed, 2u);
  EXPECT_EQ(c.rolled_back, 0u);
}

}  // namespace
}  // namespace sphere::update

// Issue 14: GetUpdatesBatch, many devices' checks behind a gateway
// certificate, each item with its own session token.
namespace sphere::update {
namespace {

std::string SessionToken(const mcu::Device& d) {
  return g->platform.SessionToken(d, auth::Scope::kUpdateOnly);
}

void AddItem(v1::GetUpdatesBatchRequest* req, const std::string& device_id,
             const std::string& token) {
  v1::GetUpdatesItem* item = req->add_items();
  item->mutable_request()->set_device_id(device_id);
  item->set_session_token(token);
}

grpc::Status Batch(const rpc::TlsFiles& tls,
                   const v1::GetUpdatesBatchRequest& req,
                   v1::GetUpdatesBatchResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  return v1::UpdateService::NewStub(
             rpc::NewChannel(g->platform.server().address(), tls))
      ->GetUpdatesBatch(&ctx, req, resp);
}

// SingleAnswer: what the single GetUpdates answers `d` (its own cert).
v1::GetUpdatesResponse SingleAnswer(const mcu::Device& d) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  v1::GetUpdatesResponse resp;
  grpc::Status st =
      v1::UpdateService::NewStub(
          rpc::NewChannel(g->platform.server().address(),
                          g->platform.DeviceTls(d, "full")))
          ->GetUpdates(&ctx, v1::GetUpdatesRequest(), &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp;
}

metrics::CounterMetric* BatchItemsCounter() {
  return metrics::Counter("sphere_update_get_updates_batch_items_total", "");
}

TEST_F(UpdateServiceTest, BatchAnswersEachItemInOrderSharingOneDocument) {
  auto a = g->platform.NewDevice("updates-batch-a");
  auto b = g->platform.NewDevice("updates-batch-b");
  ASSERT_TRUE(a.ok() && b.ok());
  v1::GetUpdatesBatchRequest req;
  AddItem(&req, (*a)->device_id(), SessionToken(**a));
  AddItem(&req, (*b)->device_id(), SessionToken(**b));
  AddItem(&req, g->device->device_id(), SessionToken(*g->device));
  v1::GetUpdatesBatchResponse resp;
  grpc::Status st = Batch(g->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 3);
  // One group variant: its answer travels once.
  ASSERT_EQ(resp.answers_size(), 1);
  const v1::GetUpdatesResponse single = SingleAnswer(**a);
  EXPECT_EQ(resp.answers(0).SerializeAsString(), single.SerializeAsString());
  EXPECT_EQ(resp.results(0).device_id(), (*a)->device_id());
  EXPECT_EQ(resp.results(1).device_id(), (*b)->device_id());
  EXPECT_EQ(resp.results(2).device_id(), g->device->device_id());
  for (const auto& r : resp.results()) {
    EXPECT_EQ(r.code(), 0) << r.message();
    EXPECT_EQ(r.answer_index(), 0u);
    EXPECT_TRUE(r.redirect_address().empty());
  }
  auto md = VerifySignedMetadata(g->platform.image_signing_key().PublicKey(),
                                 resp.answers(0).signed_metadata());
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(md->device_group_id(), TestPlatform::kGroup);
  EXPECT_EQ(md->deployment_id(), "dep-1");
}

// An item whose group's metadata needs a package read first is answered
// from the update worker (the callback thread never reads a package), in
// the same call as the items answered from memory.
TEST_F(UpdateServiceTest, BatchItemNeedingAPackageReadIsAnsweredFromTheWorker) {
  auto d = g->platform.NewDevice("updates-batch-new-group");
  ASSERT_TRUE(d.ok());
  const std::string app = AddApp(TestPlatform::kTenant, "dw100", 3, 5000);
  v1::DeviceGroup group;
  group.set_id("group-batch-io");
  group.set_tenant_id(TestPlatform::kTenant);
  group.set_os_feed(v1::RETAIL);
  g->platform.catalog().PutGroup(group);
  auto rec = g->platform.catalog().GetDevice((*d)->device_id());
  ASSERT_TRUE(rec.ok()) << rec.status();
  rec->set_device_group_id(group.id());
  g->platform.catalog().PutDevice(*rec);
  v1::Deployment dep;
  dep.set_id("dep-batch-io");
  dep.set_tenant_id(TestPlatform::kTenant);
  dep.set_device_group_id(group.id());
  dep.add_image_ids(app);
  v1::WatchEvent ev;
  ev.set_revision(g->platform.catalog().revision() + 1);
  dep.set_create_revision(ev.revision());
  *ev.mutable_deployment() = dep;
  ASSERT_TRUE(g->platform.catalog().Apply(ev).ok());
  const uint64_t loads = g->plugin->packages()->source_loads();

  v1::GetUpdatesBatchRequest req;
  AddItem(&req, g->device->device_id(), SessionToken(*g->device));
  AddItem(&req, (*d)->device_id(), SessionToken(**d));
  v1::GetUpdatesBatchResponse resp;
  grpc::Status st = Batch(g->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 2);
  ASSERT_EQ(resp.results(0).code(), 0) << resp.results(0).message();
  ASSERT_EQ(resp.results(1).code(), 0) << resp.results(1).message();
  ASSERT_EQ(resp.answers_size(), 2);  // two groups, one document each
  const v1::GetUpdatesResponse& mine =
      resp.answers(static_cast<int>(resp.results(1).answer_index()));
  auto md = VerifySignedMetadata(g->platform.image_signing_key().PublicKey(),
                                 mine.signed_metadata());
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_EQ(md->device_group_id(), "group-batch-io");
  EXPECT_EQ(md->deployment_id(), "dep-batch-io");
  EXPECT_NE(Target(*md, app), nullptr);
  EXPECT_GT(g->plugin->packages()->source_loads(), loads);  // read for it
  const v1::GetUpdatesResponse& production =
      resp.answers(static_cast<int>(resp.results(0).answer_index()));
  auto pmd = VerifySignedMetadata(g->platform.image_signing_key().PublicKey(),
                                  production.signed_metadata());
  ASSERT_TRUE(pmd.ok()) << pmd.status();
  EXPECT_EQ(pmd->device_group_id(), TestPlatform::kGroup);
}

TEST_F(UpdateServiceTest, BatchItemOfADeviceOnAnotherShardIsRedirected) {
  auto d = g->platform.NewDevice("updates-batch-moved");
  ASSERT_TRUE(d.ok());
  sharding::ShardRouter& router = g->platform.server().router();
  v1::ShardMap elsewhere;
  elsewhere.set_virtual_nodes(16);
  v1::Shard* s = elsewhere.add_shards();
  s->set_id("shard-elsewhere");
  s->set_address("127.0.0.1:9");
  router.Update(elsewhere);
  v1::GetUpdatesBatchRequest req;
  AddItem(&req, (*d)->device_id(), SessionToken(**d));
  v1::GetUpdatesBatchResponse resp;
  grpc::Status st = Batch(g->platform.gateway_tls(), req, &resp);
  v1::ShardMap here;
  here.set_virtual_nodes(16);
  v1::Shard* self = here.add_shards();
  self->set_id(router.self_id());
  self->set_address(g->platform.server().address());
  router.Update(here);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(resp.results(0).redirect_address(), "127.0.0.1:9");
  EXPECT_EQ(resp.answers_size(), 0);
  // Back on this shard's map: answered.
  v1::GetUpdatesBatchResponse again;
  ASSERT_TRUE(Batch(g->platform.gateway_tls(), req, &again).ok());
  ASSERT_EQ(again.results_size(), 1);
  EXPECT_EQ(again.results(0).code(), 0) << again.results(0).message();
}

TEST_F(UpdateServiceTest, Attack_BatchItemWithAnotherDevicesTokenRefusesOnlyIt) {
  auto good = g->platform.NewDevice("updates-batch-good");
  auto victim = g->platform.NewDevice("updates-batch-victim");
  ASSERT_TRUE(good.ok() && victim.ok());
  const uint64_t signed_before = g->plugin->metadata()->signatures();
  const uint64_t refused_before =
      BatchItemsCounter()->Value("code=\"PERMISSION_DENIED\"");
  v1::GetUpdatesBatchRequest req;
  AddItem(&req, (*good)->device_id(), SessionToken(**good));
  // The victim named, the good device's token presented.
  AddItem(&req, (*victim)->device_id(), SessionToken(**good));
  // A forged token, an oversized one, a malformed id, no token at all.
  AddItem(&req, (*victim)->device_id(), "v1.forged.token");
  AddItem(&req, (*victim)->device_id(),
          std::string(shard::kMaxSessionTokenBytes + 1, 't'));
  AddItem(&req, "not-a-device<script>", SessionToken(**good));
  AddItem(&req, (*victim)->device_id(), "");
  v1::GetUpdatesBatchResponse resp;
  grpc::Status st = Batch(g->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 6);
  EXPECT_EQ(resp.results(0).code(), 0) << resp.results(0).message();
  EXPECT_EQ(resp.results(1).code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(resp.results(1).message(), "may not act for"))
      << resp.results(1).message();
  EXPECT_EQ(resp.results(2).code(), grpc::StatusCode::UNAUTHENTICATED)
      << resp.results(2).message();
  EXPECT_EQ(resp.results(3).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(resp.results(3).message(), "session_token is"))
      << resp.results(3).message();
  EXPECT_EQ(resp.results(4).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(resp.results(4).device_id().empty());  // never echoed
  EXPECT_FALSE(absl::StrContains(resp.results(4).message(), "<script>"));
  EXPECT_EQ(resp.results(5).code(), grpc::StatusCode::UNAUTHENTICATED);
  // Only the good item got an answer; nothing was signed anew.
  EXPECT_EQ(resp.answers_size(), 1);
  for (int i = 1; i < 6; ++i) EXPECT_EQ(resp.results(i).answer_index(), 0u);
  EXPECT_EQ(g->plugin->metadata()->signatures(), signed_before);
  EXPECT_EQ(BatchItemsCounter()->Value("code=\"PERMISSION_DENIED\""),
            refused_before + 1);
}

TEST_F(UpdateServiceTest, Attack_RevokedDeviceItemRefusedOthersAnswered) {
  auto revoked = g->platform.NewDevice("updates-batch-revoked");
  auto other = g->platform.NewDevice("updates-batch-other");
  ASSERT_TRUE(revoked.ok() && other.ok());
  const std::string token = SessionToken(**revoked);  // issued before
  v1::WatchEvent ev;
  ev.set_revision(g->platform.catalog().revision() + 1);
  ev.set_revoked_device_id((*revoked)->device_id());
  ASSERT_TRUE(g->platform.catalog().Apply(ev).ok());
  v1::GetUpdatesBatchRequest req;
  AddItem(&req, (*revoked)->device_id(), token);
  AddItem(&req, (*other)->device_id(), SessionToken(**other));
  v1::GetUpdatesBatchResponse resp;
  grpc::Status st = Batch(g->platform.gateway_tls(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 2);
  EXPECT_EQ(resp.results(0).code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(resp.results(0).message(), "revoked"))
      << resp.results(0).message();
  EXPECT_EQ(resp.results(1).code(), 0) << resp.results(1).message();
  ASSERT_EQ(resp.answers_size(), 1);
  EXPECT_EQ(resp.results(1).answer_index(), 0u);
  // The single call refuses it the same way.
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(30)));
  ctx.AddMetadata(auth::kSessionTokenMetadata, token);
  v1::GetUpdatesRequest one;
  one.set_device_id((*revoked)->device_id());
  v1::GetUpdatesResponse single;
  st = v1::UpdateService::NewStub(rpc::NewChannel(
                                      g->platform.server().address(),
                                      g->platform.gateway_tls()))
           ->GetUpdates(&ctx, one, &single);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_FALSE(single.has_signed_metadata());
}

TEST_F(UpdateServiceTest, Attack_OversizedBatchCallIsRefusedWhole) {
  auto d = g->platform.NewDevice("updates-batch-oversized");
  ASSERT_TRUE(d.ok());
  const std::string token = SessionToken(**d);
  const uint64_t signed_before = g->plugin->metadata()->signatures();
  static auto* calls =
      metrics::Counter("sphere_update_get_updates_batch_calls_total", "");
  const uint64_t invalid_before = calls->Value("code=\"INVALID_ARGUMENT\"");
  // Too many items (each valid on its own).
  v1::GetUpdatesBatchRequest many;
  for (int i = 0; i <= kMaxUpdatesBatchItems; ++i) {
    AddItem(&many, (*d)->device_id(), token);
  }
  v1::GetUpdatesBatchResponse resp;
  grpc::Status st = Batch(g->platform.gateway_tls(), many, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "257 items; at most 256"))
      << st.error_message();
  EXPECT_EQ(resp.results_size(), 0);
  // Too many bytes in few items (huge device ids).
  v1::GetUpdatesBatchRequest big;
  for (int i = 0; i < 6; ++i) AddItem(&big, std::string(100 << 10, 'a'), token);
  st = Batch(g->platform.gateway_tls(), big, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "bytes; at most"))
      << st.error_message();
  EXPECT_FALSE(absl::StrContains(st.error_message(), "aaaa"));
  EXPECT_EQ(resp.results_size(), 0);
  // No items.
  st = Batch(g->platform.gateway_tls(), v1::GetUpdatesBatchRequest(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.results_size(), 0);
  EXPECT_EQ(calls->Value("code=\"INVALID_ARGUMENT\""), invalid_before + 3);
  EXPECT_EQ(g->plugin->metadata()->signatures(), signed_before);
}

TEST_F(UpdateServiceTest, Attack_DeviceCertificateCannotCallTheBatch) {
  v1::GetUpdatesBatchRequest req;
  AddItem(&req, g->device->device_id(), SessionToken(*g->device));
  AddItem(&req, g->other->device_id(), SessionToken(*g->other));
  for (const char* scope : {"full", "update-only"}) {
    v1::GetUpdatesBatchResponse resp;
    grpc::Status st = Batch(Cert(*g->device, scope), req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << scope;
    EXPECT_TRUE(absl::StrContains(st.error_message(), "for gateways"))
        << st.error_message();
    EXPECT_EQ(resp.results_size(), 0);
    EXPECT_EQ(resp.answers_size(), 0);
  }
}

}  // namespace
}  // namespace sphere::update
