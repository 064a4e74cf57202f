// In-process ManagementService over mTLS on port 0, with certificates issued
// in the test: tenant scoping, identity mapping, and bounded Watch streams.
#include "securitysvc/management/management_service.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "cli/image_upload.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/memory_store.h"
#include "common/testing/test_pki.h"
#include "common/util/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/management/catalog_test_support.h"
#include "securitysvc/management/limits.h"

namespace sphere::management {
namespace {

using ::testing::HasSubstr;

struct Credential {
  std::string cert_pem;
  std::string key_pem;
};

class ManagementServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(65536); }
  void TearDown() override {
    if (runner_) runner_->Shutdown(absl::Seconds(1));
    if (pool_) pool_->Stop();
  }

  // Every handler runs its catalog call on this pool (as in production).
  virtual WorkerPool::Options PoolOptions() const {
    return {.threads = 2, .max_queue = 64, .max_per_key = 16};
  }

  void StartServer(size_t watch_queue_limit, size_t watch_page_size = 256) {
    pki_ = std::make_unique<test_support::TestPki>();
    root_key_ = pki_->root_key;
    root_pem_ = pki_->root_pem;

    store_ = *store::MemoryStore::Create(Catalog::ColumnFamilies());
    CatalogOptions options;
    options.root_key = root_key_;
    options.root_cert_pem = root_pem_;
    options.master_key = crypto::RandomBytes(32);
    catalog_ = *Catalog::Open(store_.get(), Clock::Real(), options);
    contoso_ = *catalog_->CreateTenant(Caller::PlatformOperator(), "Contoso");
    fabrikam_ = *catalog_->CreateTenant(Caller::PlatformOperator(), "Fabrikam");
    ASSERT_TRUE(catalog_
                    ->CreateProduct(Caller::TenantOperator(contoso_.id()), "",
                                    "DW100", "")
                    .ok());

    ManagementServiceOptions service_options;
    pool_ = std::make_unique<WorkerPool>(PoolOptions());
    service_options.workers = pool_.get();
    // Tests read watch streams event by event: progress notifications are
    // off here and tested on their own (WatchProgress* below).
    service_options.watch_progress_interval = absl::ZeroDuration();
    service_options.root_subject_line =
        crypto::ParseCertificate(root_pem_)->subject_line;
    service_options.watch_queue_limit = watch_queue_limit;
    service_options.watch_page_size = watch_page_size;
    // A stand-in for the image pipeline: records what it was asked to verify.
    service_options.verify_image_package =
        [this](absl::string_view tenant_id,
               absl::string_view package) -> absl::StatusOr<v1::Image> {
      ++verified_;
      v1::Image image;
      image.set_image_hash(crypto::Sha256(package));
      image.set_id(crypto::HexEncode(image.image_hash()));
      image.set_tenant_id(std::string(tenant_id));
      image.set_component("app:test");
      image.set_version(1);
      image.set_kind(v1::IMAGE_KIND_APPLICATION);
      image.set_size(package.size());
      return image;
    };
    service_ =
        std::make_unique<ManagementService>(catalog_.get(), service_options);

    Credential server = Issue(root_key_, root_pem_, "server", {},
                              crypto::KeyUsage::kServerAuth);
    rpc::ServerOptions server_options;
    server_options.address = "127.0.0.1:0";
    server_options.tls = {server.cert_pem, server.key_pem, root_pem_};
    runner_ = std::make_unique<rpc::ServerRunner>(server_options);
    runner_->AddService(service_.get());
    ASSERT_TRUE(runner_->Start().ok());
  }

  static Credential Issue(
      const crypto::EcPrivateKey& issuer_key, const std::string& issuer_pem,
      const std::string& cn, crypto::DeviceClaims claims,
      crypto::KeyUsage usage = crypto::KeyUsage::kClientAuth) {
    crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec spec;
    spec.common_name = cn;
    spec.subject_public_key = key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    spec.usage = usage;
    spec.dns_sans = {"localhost"};
    spec.ip_sans = {"127.0.0.1"};
    spec.claims = claims;
    return {*crypto::IssueCertificate(spec, issuer_key, issuer_pem),
            key.ToPem()};
  }

  Credential Operator(const std::string& tenant_id) {
    crypto::DeviceClaims claims;
    claims.tenant_id = tenant_id;
    return Issue(root_key_, root_pem_, "op-" + tenant_id, claims);
  }
  Credential Scoped(const std::string& scope) {
    crypto::DeviceClaims claims;
    claims.scope = scope;
    return Issue(root_key_, root_pem_, scope, claims);
  }

  std::unique_ptr<v1::ManagementService::Stub> Client(const Credential& c) {
    return v1::ManagementService::NewStub(rpc::NewChannel(
        runner_->address(), {c.cert_pem, c.key_pem, root_pem_}));
  }

  std::atomic<int> verified_{0};

  // Dump is the whole persisted catalog; attack tests compare it.
  std::string Dump() { return DumpCatalog(store_.get()); }

  // ExpectShardDenied checks a refused shard call: PERMISSION_DENIED naming
  // the operation, and the catalog unchanged.
  void ExpectShardDenied(const grpc::Status& s, const std::string& operation,
                         const std::string& before) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(operation));
    EXPECT_EQ(Dump(), before);
  }

  std::string ImportAndClaim(uint64_t n) {
    const std::string id = ImportFakeDevices(catalog_.get(), n, 1)[0];
    EXPECT_TRUE(
        catalog_->ClaimDevice(Caller::TenantOperator(contoso_.id()), "", id)
            .ok());
    return id;
  }

  static void SetDeadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(rpc::Deadline(absl::Seconds(10)));
  }

  std::unique_ptr<test_support::TestPki> pki_;  // the platform root
  crypto::EcPrivateKey root_key_;
  std::string root_pem_;
  std::unique_ptr<store::MemoryStore> store_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<ManagementService> service_;
  std::unique_ptr<rpc::ServerRunner> runner_;
  v1::Tenant contoso_, fabrikam_;
};

TEST_F(ManagementServiceTest, TenantOperatorDeniedAnotherTenantsProduct) {
  auto fabrikam = Client(Operator(fabrikam_.id()));
  v1::GetProductRequest req;
  req.set_tenant_id("Contoso");
  req.set_product("DW100");
  v1::Product product;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status s = fabrikam->GetProduct(&ctx, req, &product);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("\"Contoso\""));

  // The owner can read it.
  auto contoso = Client(Operator(contoso_.id()));
  grpc::ClientContext ctx2;
  SetDeadline(&ctx2);
  req.clear_tenant_id();
  ASSERT_TRUE(contoso->GetProduct(&ctx2, req, &product).ok());
  EXPECT_EQ(product.name(), "DW100");
  EXPECT_EQ(product.tenant_id(), contoso_.id());
}

// The List handlers pass page_size/page_token through and answer
// INVALID_ARGUMENT for a bad token; paging over gRPC returns every group
// exactly once.
TEST_F(ManagementServiceTest, ListsPageOverGrpcAndRefuseBadTokens) {
  auto contoso = Client(Operator(contoso_.id()));
  v1::ListDeviceGroupsRequest req;
  req.set_page_size(2);
  std::set<std::string> seen;
  int pages = 0;
  while (pages++ < 10) {
    v1::ListDeviceGroupsResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ASSERT_TRUE(contoso->ListDeviceGroups(&ctx, req, &resp).ok());
    EXPECT_LE(resp.groups_size(), 2);
    for (const v1::DeviceGroup& g : resp.groups()) {
      EXPECT_TRUE(seen.insert(g.id()).second) << g.name() << " twice";
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(seen.size(), 5u);  // DW100's five default groups
  EXPECT_EQ(pages, 3);

  const int64_t revision = catalog_->revision();
  v1::ListTenantsRequest bad;
  bad.set_page_token("!!not-a-token!!");
  v1::ListTenantsResponse tenants;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status s =
      Client(Scoped("platform-operator"))->ListTenants(&ctx, bad, &tenants);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page token"));
  EXPECT_EQ(tenants.tenants_size(), 0);
  EXPECT_EQ(catalog_->revision(), revision);
}

TEST_F(ManagementServiceTest, TenantOperatorCannotCreateTenant) {
  auto contoso = Client(Operator(contoso_.id()));
  v1::CreateTenantRequest req;
  req.set_name("Evil");
  v1::Tenant t;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  EXPECT_EQ(contoso->CreateTenant(&ctx, req, &t).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(catalog_->ListTenants(Caller::PlatformOperator())->tenants_size(),
            2);
}

TEST_F(ManagementServiceTest, PlatformOperatorCreatesTenantWithoutWrappedKey) {
  auto platform = Client(Scoped("platform-operator"));
  v1::CreateTenantRequest req;
  req.set_name("Northwind");
  v1::Tenant t;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status s = platform->CreateTenant(&ctx, req, &t);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(t.name(), "Northwind");
  EXPECT_TRUE(t.wrapped_ca_key().empty());
  EXPECT_FALSE(t.ca_certificate_pem().empty());
}

TEST_F(ManagementServiceTest, DeviceCertificateRefused) {
  // A device certificate chained to a tenant CA (itself under the root).
  rpc::TlsFiles ca = pki_->Leaf("tenant ca", crypto::KeyUsage::kCa, {});
  crypto::EcPrivateKey ca_key = *crypto::EcPrivateKey::FromPem(ca.key_pem);
  const std::string& ca_pem = ca.cert_pem;
  crypto::DeviceClaims claims;
  claims.device_id = std::string(64, 'a');
  claims.tenant_id = contoso_.id();
  Credential device = Issue(ca_key, ca_pem, "device", claims);
  device.cert_pem += ca_pem;  // send the chain
  auto client = Client(device);
  v1::ListProductsResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status s = client->ListProducts(&ctx, v1::ListProductsRequest(), &resp);
  EXPECT_NE(s.error_code(), grpc::StatusCode::OK);
  EXPECT_EQ(resp.products_size(), 0);
}

TEST_F(ManagementServiceTest, CertificateFromAnotherRootCannotConnect) {
  test_support::TestPki other;  // another root
  crypto::DeviceClaims claims;
  claims.scope = "platform-operator";
  auto client =
      Client(Issue(other.root_key, other.root_pem, "impostor", claims));
  v1::ListTenantsResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  EXPECT_FALSE(client->ListTenants(&ctx, v1::ListTenantsRequest(), &resp).ok());
}

TEST_F(ManagementServiceTest, ImportStreamAndClaim) {
  auto platform = Client(Scoped("platform-operator"));
  v1::ImportDevicesResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto writer = platform->ImportDevices(&ctx, &resp);
  std::string first_key;
  for (int m = 0; m < 3; ++m) {
    v1::ImportDevicesRequest req;
    for (int i = 0; i < 100; ++i) {
      std::string key = crypto::EcPrivateKey::Generate().PublicKey();
      if (first_key.empty()) first_key = key;
      req.add_devices()->set_public_key(key);
    }
    if (m == 2) *req.add_devices() = req.devices(0);  // duplicate
    ASSERT_TRUE(writer->Write(req));
  }
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(resp.imported(), 300u);
  EXPECT_EQ(resp.already_known(), 1u);

  auto contoso = Client(Operator(contoso_.id()));
  v1::ClaimDeviceRequest claim;
  claim.set_device_id(DeviceIdForKey(first_key));
  v1::Device device;
  grpc::ClientContext c1;
  SetDeadline(&c1);
  ASSERT_TRUE(contoso->ClaimDevice(&c1, claim, &device).ok());
  auto fabrikam = Client(Operator(fabrikam_.id()));
  grpc::ClientContext c2;
  SetDeadline(&c2);
  grpc::Status s = fabrikam->ClaimDevice(&c2, claim, &device);
  // Another tenant's device looks like one that does not exist.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr("Contoso")));
}

TEST_F(ManagementServiceTest, ShardWatchGetsSnapshotWithWrappedKeys) {
  auto shard = Client(Scoped("shard"));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::WatchRequest req;
  req.set_start_revision(0);
  auto reader = shard->Watch(&ctx, req);
  v1::WatchEvent e;
  int tenants_with_keys = 0;
  while (reader->Read(&e)) {
    EXPECT_TRUE(e.snapshot());
    if (e.has_tenant() && !e.tenant().wrapped_ca_key().empty()) {
      ++tenants_with_keys;
    }
    if (e.snapshot_end()) break;
  }
  EXPECT_EQ(tenants_with_keys, 2);
  // A live event follows.
  ASSERT_TRUE(catalog_->CreateTenant(Caller::PlatformOperator(), "Live").ok());
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.tenant().name(), "Live");
  EXPECT_FALSE(e.snapshot());
  ctx.TryCancel();
  while (reader->Read(&e)) {
  }
  reader->Finish();
}

TEST_F(ManagementServiceTest, TenantOperatorCannotWatch) {
  auto contoso = Client(Operator(contoso_.id()));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto reader = contoso->Watch(&ctx, v1::WatchRequest());
  v1::WatchEvent e;
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(ManagementServiceTest, SnapshotLargerThanQueueLimitStreamsThenLive) {
  runner_->Shutdown(absl::Seconds(1));
  StartServer(/*watch_queue_limit=*/64, /*watch_page_size=*/32);
  // Far more claimed devices than the per-watcher queue holds.
  constexpr int kDevices = 1100;
  for (const std::string& id :
       ImportFakeDevices(catalog_.get(), 0, kDevices)) {
    ASSERT_TRUE(catalog_
                    ->ClaimDevice(Caller::TenantOperator(contoso_.id()), "",
                                  id)
                    .ok());
  }
  const int64_t snapshot_revision = catalog_->revision();

  auto shard = Client(Scoped("shard"));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));
  auto reader = shard->Watch(&ctx, v1::WatchRequest());
  v1::WatchEvent e;
  int devices = 0, snapshot_events = 0;
  bool ended = false;
  while (!ended && reader->Read(&e)) {
    ASSERT_TRUE(e.snapshot());
    ASSERT_EQ(e.revision(), snapshot_revision);
    ++snapshot_events;
    if (e.has_device()) ++devices;
    ended = e.snapshot_end();
    // A change committed mid-snapshot arrives after it, not inside it.
    if (snapshot_events == 100) {
      ASSERT_TRUE(
          catalog_->CreateTenant(Caller::PlatformOperator(), "Mid").ok());
    }
  }
  ASSERT_TRUE(ended);
  EXPECT_EQ(devices, kDevices);
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_FALSE(e.snapshot());
  EXPECT_EQ(e.revision(), snapshot_revision + 1);
  EXPECT_EQ(e.tenant().name(), "Mid");
  // Then live events.
  ASSERT_TRUE(catalog_->CreateTenant(Caller::PlatformOperator(), "Live").ok());
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.revision(), snapshot_revision + 2);
  EXPECT_EQ(e.tenant().name(), "Live");
  ctx.TryCancel();
  while (reader->Read(&e)) {
  }
  reader->Finish();
}

TEST_F(ManagementServiceTest, PlatformOperatorWatchHasNoWrappedKeys) {
  auto platform = Client(Scoped("platform-operator"));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto reader = platform->Watch(&ctx, v1::WatchRequest());
  v1::WatchEvent e;
  int tenants = 0;
  while (reader->Read(&e)) {
    if (e.has_tenant()) {
      ++tenants;
      EXPECT_TRUE(e.tenant().wrapped_ca_key().empty());
    }
    if (e.snapshot_end()) break;
  }
  EXPECT_EQ(tenants, 2);
  ASSERT_TRUE(catalog_->CreateTenant(Caller::PlatformOperator(), "Live").ok());
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.tenant().name(), "Live");
  EXPECT_TRUE(e.tenant().wrapped_ca_key().empty());
  ctx.TryCancel();
  while (reader->Read(&e)) {
  }
  reader->Finish();
  v1::ListTenantsResponse list;
  grpc::ClientContext ctx2;
  SetDeadline(&ctx2);
  ASSERT_TRUE(
      platform->ListTenants(&ctx2, v1::ListTenantsRequest(), &list).ok());
  for (const v1::Tenant& t : list.tenants()) {
    EXPECT_TRUE(t.wrapped_ca_key().empty());
  }
}

// ---- Attacks with a stolen shard credential ---------------------------------

TEST_F(ManagementServiceTest, Attack_ShardCredentialCannotCreateTenant) {
  auto shard = Client(Scoped("shard"));
  const std::string before = Dump();
  v1::CreateTenantRequest req;
  req.set_name("Evil");
  v1::Tenant t;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  ExpectShardDenied(shard->CreateTenant(&ctx, req, &t), "creating a tenant",
                    before);
}

TEST_F(ManagementServiceTest,
       Attack_ShardCredentialCannotIssueOperatorCredential) {
  auto shard = Client(Scoped("shard"));
  const std::string before = Dump();
  v1::IssueOperatorCredentialRequest req;
  req.set_tenant_id("Contoso");
  req.set_operator_name("evil");
  req.set_public_key(crypto::EcPrivateKey::Generate().PublicKey());
  v1::OperatorCredential cred;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  ExpectShardDenied(shard->IssueOperatorCredential(&ctx, req, &cred),
                    "issuing operator credentials", before);
  EXPECT_TRUE(cred.certificate_pem().empty());
}

TEST_F(ManagementServiceTest, Attack_ShardCredentialCannotClaimDevices) {
  auto shard = Client(Scoped("shard"));
  std::string key(65, '\x11');
  key[0] = 0x04;
  v1::FactoryDevice d;
  d.set_public_key(key);
  ASSERT_TRUE(catalog_->ImportDevices(Caller::PlatformOperator(), {d}).ok());
  const std::string before = Dump();
  v1::ClaimDeviceRequest req;
  req.set_tenant_id("Contoso");
  req.set_device_id(DeviceIdForKey(key));
  v1::Device device;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  ExpectShardDenied(shard->ClaimDevice(&ctx, req, &device), "claiming a device",
                    before);
}

TEST_F(ManagementServiceTest, Attack_ShardCredentialCannotImportDevices) {
  auto shard = Client(Scoped("shard"));
  const std::string before = Dump();
  v1::ImportDevicesResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto writer = shard->ImportDevices(&ctx, &resp);
  v1::ImportDevicesRequest req;
  req.add_devices()->set_public_key(
      crypto::EcPrivateKey::Generate().PublicKey());
  writer->Write(req);
  writer->WritesDone();
  ExpectShardDenied(writer->Finish(), "importing factory devices", before);
}

TEST_F(ManagementServiceTest,
       Attack_ShardCredentialCannotMoveDevicesBetweenGroupsOrTenants) {
  const std::string id = ImportAndClaim(77);
  auto shard = Client(Scoped("shard"));
  const std::string before = Dump();
  v1::Device device;
  {
    v1::AssignDeviceRequest req;
    req.set_tenant_id("Contoso");
    req.set_device_id(id);
    req.set_device_group_id("DW100/Production");
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ExpectShardDenied(shard->AssignDevice(&ctx, req, &device),
                      "assigning a device", before);
  }
  {
    v1::RequestDeviceTransferRequest req;
    req.set_tenant_id("Contoso");
    req.set_device_id(id);
    req.set_to_tenant_id("Fabrikam");
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ExpectShardDenied(shard->RequestDeviceTransfer(&ctx, req, &device),
                      "requesting a device transfer", before);
  }
}

TEST_F(ManagementServiceTest,
       Attack_ShardCredentialCannotCreateProductsOrGroups) {
  auto shard = Client(Scoped("shard"));
  const std::string before = Dump();
  {
    v1::CreateProductRequest req;
    req.set_tenant_id("Contoso");
    req.set_name("Evil");
    v1::Product p;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ExpectShardDenied(shard->CreateProduct(&ctx, req, &p), "creating a product",
                      before);
  }
  {
    v1::CreateDeviceGroupRequest req;
    req.set_tenant_id("Contoso");
    req.set_product("DW100");
    req.set_name("Evil");
    v1::DeviceGroup g;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ExpectShardDenied(shard->CreateDeviceGroup(&ctx, req, &g),
                      "creating a device group", before);
  }
}

TEST_F(ManagementServiceTest,
       Attack_ShardCredentialCannotUploadImagesDeployOrReleaseOs) {
  auto shard = Client(Scoped("shard"));
  const std::string before = Dump();
  {
    v1::UploadImageRequest req;
    req.set_tenant_id("Contoso");
    req.set_package("not a package");
    v1::Image image;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ExpectShardDenied(shard->UploadImage(&ctx, req, &image),
                      "uploading an image", before);
  }
  {
    v1::CreateDeploymentRequest req;
    req.set_tenant_id("Contoso");
    req.set_device_group_id("DW100/Production");
    req.add_image_ids(std::string(64, 'a'));
    v1::Deployment dep;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ExpectShardDenied(shard->CreateDeployment(&ctx, req, &dep),
                      "creating a deployment", before);
  }
  {
    v1::ReleaseOsRequest req;
    req.set_feed(v1::RETAIL);
    req.set_version("99.1");
    req.add_image_ids(std::string(64, 'a'));
    v1::OsRelease release;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ExpectShardDenied(shard->ReleaseOs(&ctx, req, &release), "releasing an OS",
                      before);
  }
}

TEST_F(ManagementServiceTest, Attack_ShardCredentialCannotListTenantData) {
  auto shard = Client(Scoped("shard"));
  const std::string before = Dump();
  v1::ListTenantsResponse tenants;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  ExpectShardDenied(
      shard->ListTenants(&ctx, v1::ListTenantsRequest(), &tenants),
      "listing tenants", before);
  EXPECT_EQ(tenants.tenants_size(), 0);
  v1::ListDevicesRequest req;
  req.set_tenant_id("Contoso");
  v1::ListDevicesResponse devices;
  grpc::ClientContext ctx2;
  SetDeadline(&ctx2);
  ExpectShardDenied(shard->ListDevices(&ctx2, req, &devices), "listing devices",
                    before);
}

TEST_F(ManagementServiceTest, ShardCredentialKeepsWhatShardsNeed) {
  const std::string id = ImportAndClaim(78);
  auto shard = Client(Scoped("shard"));
  {
    v1::RegisterShardRequest req;
    req.mutable_shard()->set_id("shard-0");
    req.mutable_shard()->set_address("127.0.0.1:1");
    v1::ShardMap map;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ASSERT_TRUE(shard->RegisterShard(&ctx, req, &map).ok());
    EXPECT_EQ(map.shards_size(), 1);
  }
  {
    v1::ShardMap map;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ASSERT_TRUE(shard->GetShardMap(&ctx, v1::GetShardMapRequest(), &map).ok());
    EXPECT_EQ(map.shards_size(), 1);
  }
  {
    v1::CatalogRevision rev;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ASSERT_TRUE(
        shard->GetCatalogRevision(&ctx, v1::GetCatalogRevisionRequest(), &rev)
            .ok());
    EXPECT_EQ(rev.revision(), catalog_->revision());
  }
  {
    v1::RevokeDeviceRequest req;
    req.set_tenant_id(contoso_.id());
    req.set_device_id(id);
    req.set_reason("tamper: 1 tamper event(s)");
    v1::Device device;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ASSERT_TRUE(shard->RevokeDevice(&ctx, req, &device).ok());
    EXPECT_EQ(device.state(), v1::REVOKED);
    EXPECT_EQ(device.revocation_reason(),
              "automatic: tamper: 1 tamper event(s)");
  }
}

// ---- Per-caller limits on expensive calls ---------------------------------

// A second server over the same catalog, with a rate limiter on a fake clock
// (burst 3 tokens, 1 token/s).
class RateLimitedManagementTest : public ManagementServiceTest {
 protected:
  void SetUp() override {
    ManagementServiceTest::SetUp();
    RateLimiter::Options limits;
    limits.rate_per_second = 1;
    limits.burst = 3;
    limiter_ = std::make_unique<RateLimiter>(&clock_, limits);
    ManagementServiceOptions options;
    options.root_subject_line =
        crypto::ParseCertificate(root_pem_)->subject_line;
    options.expensive_call_limiter = limiter_.get();
    limited_ = std::make_unique<ManagementService>(catalog_.get(), options);
    Credential server = Issue(root_key_, root_pem_, "server", {},
                              crypto::KeyUsage::kServerAuth);
    rpc::ServerOptions server_options;
    server_options.tls = {server.cert_pem, server.key_pem, root_pem_};
    limited_runner_ = std::make_unique<rpc::ServerRunner>(server_options);
    limited_runner_->AddService(limited_.get());
    ASSERT_TRUE(limited_runner_->Start().ok());
  }
  void TearDown() override {
    limited_runner_->Shutdown(absl::Seconds(1));
    ManagementServiceTest::TearDown();
  }
  std::unique_ptr<v1::ManagementService::Stub> LimitedClient(
      const Credential& c) {
    return v1::ManagementService::NewStub(rpc::NewChannel(
        limited_runner_->address(), {c.cert_pem, c.key_pem, root_pem_}));
  }
  grpc::Status IssueCredential(v1::ManagementService::Stub* stub) {
    v1::IssueOperatorCredentialRequest req;
    req.set_tenant_id(contoso_.id());
    req.set_operator_name("alice");
    req.set_public_key(crypto::EcPrivateKey::Generate().PublicKey());
    v1::OperatorCredential cred;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    return stub->IssueOperatorCredential(&ctx, req, &cred);
  }
  grpc::Status Upload(v1::ManagementService::Stub* stub,
                      const std::string& tenant_id, size_t bytes) {
    v1::UploadImageRequest req;
    req.set_tenant_id(tenant_id);
    req.set_package(std::string(bytes, 'p'));
    v1::Image image;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    return stub->UploadImage(&ctx, req, &image);
  }

  FakeClock clock_;
  std::unique_ptr<RateLimiter> limiter_;
  std::unique_ptr<ManagementService> limited_;
  std::unique_ptr<rpc::ServerRunner> limited_runner_;
};

TEST_F(RateLimitedManagementTest,
       Attack_CredentialIssuanceFloodIsRefusedAndChangesNothing) {
  auto op = LimitedClient(Scoped("platform-operator"));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(IssueCredential(op.get()).ok()) << i;
  }
  const std::string before = Dump();
  grpc::Status refused = IssueCredential(op.get());
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("credential issuance"));
  EXPECT_THAT(refused.error_message(), HasSubstr("retry in 1000 ms"));
  EXPECT_EQ(Dump(), before);
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(IssueCredential(op.get()).ok());
}

TEST_F(RateLimitedManagementTest,
       Attack_OneTenantsUploadFloodDoesNotLimitAnotherTenant) {
  auto contoso = LimitedClient(Operator(contoso_.id()));
  auto fabrikam = LimitedClient(Operator(fabrikam_.id()));
  // This server has no image verifier, so an upload that passes the limiter
  // answers UNIMPLEMENTED; one that does not, RESOURCE_EXHAUSTED.
  const std::string before = Dump();
  // 2 MiB costs 3 tokens: Contoso's whole burst.
  EXPECT_EQ(Upload(contoso.get(), contoso_.id(), 2 << 20).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  grpc::Status refused = Upload(contoso.get(), contoso_.id(), 10);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("image upload"));
  EXPECT_EQ(Upload(fabrikam.get(), fabrikam_.id(), 10).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(Dump(), before);
}

TEST_F(RateLimitedManagementTest,
       Attack_OversizedCredentialRequestIsRefusedBeforeAnyWork) {
  auto op = LimitedClient(Scoped("platform-operator"));
  const std::string before = Dump();
  v1::IssueOperatorCredentialRequest req;
  req.set_tenant_id(contoso_.id());
  req.set_operator_name(std::string(1 << 20, 'n'));
  req.set_public_key(crypto::EcPrivateKey::Generate().PublicKey());
  v1::OperatorCredential cred;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::Status refused = op->IssueOperatorCredential(&ctx, req, &cred);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("IssueOperatorCredential"));
  EXPECT_LT(refused.error_message().size(), 200u);
  EXPECT_TRUE(cred.certificate_pem().empty());
  EXPECT_EQ(Dump(), before);
  // It cost no rate-limit tokens: the whole burst is still there.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(IssueCredential(op.get()).ok()) << i;
  }
}

TEST_F(RateLimitedManagementTest, Attack_UploadLargerThanBurstIsRefused) {
  auto contoso = LimitedClient(Operator(contoso_.id()));
  // 4 MiB costs 5 tokens > burst 3: never admitted, whatever the wait.
  grpc::Status refused = Upload(contoso.get(), contoso_.id(), 4 << 20);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("larger than"));
}

// ---- UploadImageStream (issue 8 hole 6: per-method request caps) ----------

TEST_F(ManagementServiceTest, UploadImageStreamRecordsTheImage) {
  auto contoso = Client(Operator(contoso_.id()));
  const std::string package = crypto::RandomBytes(10000);
  auto image = cli::UploadImagePackage(contoso.get(), "", package,
                                       absl::Seconds(10), /*chunk_bytes=*/999);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->id(), crypto::HexEncode(crypto::Sha256(package)));
  EXPECT_EQ(image->tenant_id(), contoso_.id());
  EXPECT_EQ(verified_.load(), 1);
}

TEST_F(ManagementServiceTest, Attack_UploadStreamAboveTheCapIsRefusedUpFront) {
  auto contoso = Client(Operator(contoso_.id()));
  const std::string before = Dump();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::Image image;
  auto writer = contoso->UploadImageStream(&ctx, &image);
  v1::UploadImageChunk first;
  first.set_total_size(limits::kMaxImagePackageBytes + 1);
  writer->Write(first);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("the limit is"));
  EXPECT_EQ(verified_.load(), 0);
  EXPECT_EQ(Dump(), before);
}

TEST_F(ManagementServiceTest, Attack_UploadStreamBeyondItsDeclaredSize) {
  auto contoso = Client(Operator(contoso_.id()));
  const std::string before = Dump();
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::Image image;
  auto writer = contoso->UploadImageStream(&ctx, &image);
  v1::UploadImageChunk first;
  first.set_total_size(1000);
  writer->Write(first);
  v1::UploadImageChunk chunk;
  chunk.set_chunk(std::string(1500, 'x'));
  writer->Write(chunk);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("declared total_size of 1000"));
  // A short upload is refused too.
  grpc::ClientContext ctx2;
  SetDeadline(&ctx2);
  auto short_writer = contoso->UploadImageStream(&ctx2, &image);
  short_writer->Write(first);
  chunk.set_chunk(std::string(10, 'x'));
  short_writer->Write(chunk);
  short_writer->WritesDone();
  s = short_writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(verified_.load(), 0);
  EXPECT_EQ(Dump(), before);
}

TEST_F(ManagementServiceTest, Attack_ShardCredentialCannotStreamUploads) {
  auto shard = Client(Scoped("shard"));
  auto image =
      cli::UploadImagePackage(shard.get(), "", "pkg", absl::Seconds(10));
  EXPECT_EQ(image.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(verified_.load(), 0);
}

// Issue 8 hole 1: an event stored before the limits existed (or a corrupt
// log entry) above the channel limit made every Watch fail without saying
// why. The stream now ends with a specific error at that revision.
TEST_F(ManagementServiceTest,
       Fault_OversizedStoredEventEndsWatchWithClearError) {
  const int64_t next = catalog_->revision() + 1;
  v1::WatchEvent huge;
  huge.set_revision(next);
  v1::Deployment* dep = huge.mutable_deployment();
  dep->set_id("legacy");
  for (int i = 0; i < 20000; ++i) dep->add_image_ids(std::string(64, 'a'));
  ASSERT_TRUE(
      store_
          ->Put("log", absl::StrFormat("%020d", next), huge.SerializeAsString())
          .ok());
  auto shard = Client(Scoped("shard"));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::WatchRequest req;
  req.set_start_revision(next);
  auto reader = shard->Watch(&ctx, req);
  v1::WatchEvent ev;
  EXPECT_FALSE(reader->Read(&ev));
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("revision ", next, " is")));
}

}  // namespace
}  // namespace sphere::management

namespace sphere::management {
namespace {

// A pool of one thread, two queue slots and one slot per caller, so tests
// can fill it exactly: management answers RESOURCE_EXHAUSTED at once, from
// the callback thread, and nothing changes.
class BusyManagementTest : public ManagementServiceTest {
 protected:
  WorkerPool::Options PoolOptions() const override {
    return {.threads = 1, .max_queue = 2, .max_per_key = 1};
  }
  // Occupy blocks the pool's only thread until Release.
  void Occupy() {
    ASSERT_TRUE(pool_->Post([this] {
      started_.Notify();
      release_.WaitForNotification();
    }));
    started_.WaitForNotification();
  }
  void Release() {
    if (!release_.HasBeenNotified()) release_.Notify();
  }
  void TearDown() override {
    Release();
    ManagementServiceTest::TearDown();
  }
  grpc::Status CreateProduct(const Credential& who, const std::string& tenant,
                             const std::string& name) {
    auto stub = Client(who);
    v1::CreateProductRequest req;
    req.set_tenant_id(tenant);
    req.set_name(name);
    v1::Product product;
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    return stub->CreateProduct(&ctx, req, &product);
  }
  absl::Notification started_, release_;
};

TEST_F(BusyManagementTest, Attack_FullWorkerQueueIsRefusedAndChangesNothing) {
  Occupy();
  absl::Notification drained;
  ASSERT_TRUE(pool_->Post([] {}));
  ASSERT_TRUE(pool_->Post([&] { drained.Notify(); }));  // queue (2) is full
  const std::string before = Dump();
  grpc::Status refused =
      CreateProduct(Operator(contoso_.id()), contoso_.id(), "DW200");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("management is busy"));
  EXPECT_EQ(Dump(), before);
  Release();
  // Once the queue drained (its last task started), the same call succeeds.
  drained.WaitForNotification();
  grpc::Status ok =
      CreateProduct(Operator(contoso_.id()), contoso_.id(), "DW200");
  EXPECT_TRUE(ok.ok()) << ok.error_message();
}

TEST_F(BusyManagementTest, Attack_OneTenantCannotFillTheWorkerQueue) {
  Occupy();
  // Contoso already holds its one slot (a call queued behind the busy
  // worker); its next call is refused while Fabrikam's is admitted.
  ASSERT_TRUE(pool_->TrySubmit("tenant:" + contoso_.id(), [] {}));
  const std::string before = Dump();
  grpc::Status refused =
      CreateProduct(Operator(contoso_.id()), contoso_.id(), "DW200");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("share"));
  EXPECT_EQ(Dump(), before);
  grpc::Status fabrikam;
  std::thread t([&] {
    fabrikam = CreateProduct(Operator(fabrikam_.id()), fabrikam_.id(), "F1");
  });
  // Fabrikam's call is queued behind the busy worker (the queue has room
  // and Fabrikam holds no slot); it completes once the worker is released.
  Release();
  t.join();
  EXPECT_TRUE(fabrikam.ok()) << fabrikam.error_message();
  EXPECT_TRUE(catalog_
                  ->GetProduct(Caller::TenantOperator(fabrikam_.id()),
                               fabrikam_.id(), "F1")
                  .ok());
}

}  // namespace
}  // namespace sphere::management

namespace sphere::management {
namespace {

// An idle watch gets progress notifications (no change, the stream's last
// revision), but only while the catalog probe succeeds: a management that
// lost its backend must not tell shards their catalog is current.
TEST_F(ManagementServiceTest, WatchProgressOnlyWhileTheCatalogProbeSucceeds) {
  std::atomic<int> probes{0};
  ManagementServiceOptions options;
  options.root_subject_line = crypto::ParseCertificate(root_pem_)->subject_line;
  options.watch_progress_interval = absl::Milliseconds(20);
  options.catalog_probe = [&]() -> absl::Status {
    // The first three rounds fail (backend unreachable).
    if (++probes <= 3) return absl::UnavailableError("etcd unreachable");
    return absl::OkStatus();
  };
  ManagementService progress_service(catalog_.get(), options);
  Credential server =
      Issue(root_key_, root_pem_, "server", {}, crypto::KeyUsage::kServerAuth);
  rpc::ServerOptions server_options;
  server_options.address = "127.0.0.1:0";
  server_options.tls = {server.cert_pem, server.key_pem, root_pem_};
  rpc::ServerRunner runner(server_options);
  runner.AddService(&progress_service);
  ASSERT_TRUE(runner.Start().ok());
  Credential shard = Scoped("shard");
  auto stub = v1::ManagementService::NewStub(rpc::NewChannel(
      runner.address(), {shard.cert_pem, shard.key_pem, root_pem_}));
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::WatchRequest req;
    req.set_start_revision(0);
    auto reader = stub->Watch(&ctx, req);
    v1::WatchEvent e;
    // The snapshot, then (idle) progress notifications.
    do {
      ASSERT_TRUE(reader->Read(&e));
      EXPECT_FALSE(e.progress()) << "progress inside a snapshot";
    } while (!e.snapshot_end());
    const int64_t snapshot_revision = e.revision();
    ASSERT_TRUE(reader->Read(&e));
    EXPECT_TRUE(e.progress()) << e.ShortDebugString();
    EXPECT_EQ(e.change_case(), v1::WatchEvent::CHANGE_NOT_SET);
    EXPECT_EQ(e.revision(), snapshot_revision);
    EXPECT_GT(probes.load(), 3) << "progress sent while the probe failed";
    // A live event still arrives, and progress after it carries its revision.
    auto product = catalog_->CreateProduct(
        Caller::TenantOperator(contoso_.id()), "", "DW300", "");
    ASSERT_TRUE(product.ok());
    do {
      ASSERT_TRUE(reader->Read(&e));
    } while (e.progress());
    EXPECT_EQ(e.product().id(), product->id());
    // The product may bring more events (its default group); the first
    // progress after them carries the last revision written.
    int64_t live_revision = e.revision();
    do {
      ASSERT_TRUE(reader->Read(&e));
      if (!e.progress()) live_revision = e.revision();
    } while (!e.progress());
    EXPECT_EQ(e.revision(), live_revision);
    EXPECT_EQ(live_revision, catalog_->revision());
    ctx.TryCancel();
  }
  runner.Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace sphere::management
