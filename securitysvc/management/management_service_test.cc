// In-process ManagementService over mTLS on port 0, with certificates issued
// in the test: tenant scoping, identity mapping, and bounded Watch streams.
#include "securitysvc/management/management_service.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protos/management.grpc.pb.h"

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
  }

  void StartServer(size_t watch_queue_limit) {
    root_key_ = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec root;
    root.common_name = "Sphere Test Root";
    root.subject_public_key = root_key_.PublicKey();
    root.not_before = absl::Now() - absl::Hours(1);
    root.not_after = absl::Now() + absl::Hours(24);
    root.usage = crypto::KeyUsage::kCa;
    root_pem_ = *crypto::IssueCertificate(root, root_key_, "");

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
    service_options.root_subject_line =
        crypto::ParseCertificate(root_pem_)->subject_line;
    service_options.watch_queue_limit = watch_queue_limit;
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

  static void SetDeadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(rpc::Deadline(absl::Seconds(10)));
  }

  crypto::EcPrivateKey root_key_;
  std::string root_pem_;
  std::unique_ptr<store::MemoryStore> store_;
  std::unique_ptr<Catalog> catalog_;
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

TEST_F(ManagementServiceTest, TenantOperatorCannotCreateTenant) {
  auto contoso = Client(Operator(contoso_.id()));
  v1::CreateTenantRequest req;
  req.set_name("Evil");
  v1::Tenant t;
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  EXPECT_EQ(contoso->CreateTenant(&ctx, req, &t).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(catalog_->ListTenants(Caller::PlatformOperator())->size(), 2u);
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
  crypto::EcPrivateKey ca_key = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec ca;
  ca.common_name = "tenant ca";
  ca.subject_public_key = ca_key.PublicKey();
  ca.not_before = absl::Now() - absl::Hours(1);
  ca.not_after = absl::Now() + absl::Hours(24);
  ca.usage = crypto::KeyUsage::kCa;
  std::string ca_pem = *crypto::IssueCertificate(ca, root_key_, root_pem_);
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
  crypto::EcPrivateKey other = crypto::EcPrivateKey::Generate();
  crypto::CertificateSpec root;
  root.common_name = "Other Root";
  root.subject_public_key = other.PublicKey();
  root.not_before = absl::Now() - absl::Hours(1);
  root.not_after = absl::Now() + absl::Hours(24);
  root.usage = crypto::KeyUsage::kCa;
  std::string other_pem = *crypto::IssueCertificate(root, other, "");
  crypto::DeviceClaims claims;
  claims.scope = "platform-operator";
  auto client = Client(Issue(other, other_pem, "impostor", claims));
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
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
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

TEST_F(ManagementServiceTest, SlowWatcherCancelledWithResourceExhausted) {
  runner_->Shutdown(absl::Seconds(1));
  StartServer(/*watch_queue_limit=*/1);
  // Enough snapshot events that the queue of one must overflow while the
  // snapshot is delivered synchronously.
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(catalog_
                    ->CreateProduct(Caller::TenantOperator(contoso_.id()), "",
                                    absl::StrCat("P", i), "")
                    .ok());
  }
  auto shard = Client(Scoped("shard"));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto reader = shard->Watch(&ctx, v1::WatchRequest());
  v1::WatchEvent e;
  int events = 0;
  while (reader->Read(&e)) ++events;
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("resume"));
  EXPECT_LT(events, 600);
}

}  // namespace
}  // namespace sphere::management
