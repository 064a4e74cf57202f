// A whole cluster restarted on its state directory keeps everything it
// acknowledged: the catalog (tenant, product, claims, OS release), the tenant
// CA (its key unwrapped again under the same master key), tenant operator
// credentials in cluster.json, and each shard's attestation records; devices
// attest again without any re-setup.
#include <gtest/gtest.h>
#include <signal.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "mcu-model/device.h"
#include "tests/cluster_fixture.h"
#include "tests/twin_helpers.h"

namespace sphere::testing {
namespace {

TEST(RestartTest, ClusterRestartedOnItsStateDirKeepsCatalogCaAndRecords) {
  std::string tenant_id, ca_pem;
  std::vector<std::unique_ptr<mcu::Device>> devices;
  {
    auto c = LocalCluster::Start("restart", 2);
    ASSERT_TRUE(c.ok()) << c.status();
    auto tenant = (*c)->CreateTenant("Contoso");
    ASSERT_TRUE(tenant.ok()) << tenant.status();
    tenant_id = tenant->id();
    ca_pem = tenant->ca_certificate_pem();
    ASSERT_TRUE((*c)->CreateProduct(tenant_id, "DW100").ok());
    for (int i = 0; i < 4; ++i) {
      devices.push_back(ManufactureGenuine(**c, absl::StrCat("restart-", i)));
      ASSERT_TRUE((*c)->ImportDevice(devices.back()->public_key()).ok());
      ASSERT_TRUE((*c)->Claim(tenant_id, devices.back()->device_id()).ok());
      auto r = AttestViaClient(c->get(), devices.back().get());
      ASSERT_TRUE(r.ok()) << r.status();
    }
    ASSERT_TRUE((*c)->Stop().ok());
  }
  auto c = LocalCluster::Restart("restart", 2);
  ASSERT_TRUE(c.ok()) << c.status();
  v1::GetTenantRequest req;
  req.set_tenant_id(tenant_id);
  v1::Tenant t;
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  ASSERT_TRUE((*c)->management()->GetTenant(&ctx, req, &t).ok());
  EXPECT_EQ(t.name(), "Contoso");
  EXPECT_EQ(t.ca_certificate_pem(), ca_pem);  // same CA, not a new one
  // A second claim is still refused: the claims survived.
  EXPECT_EQ((*c)->Claim(tenant_id, devices[0]->device_id()).status().code(),
            absl::StatusCode::kAlreadyExists);
  for (auto& d : devices) {
    auto r = AttestViaClient(c->get(), d.get());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);
    EXPECT_TRUE(absl::StrContains(r->certificate_chain_pem(), ca_pem));
  }
}

// A dead shard no longer stops the cluster: local_cluster restarts it
// (tests/observability_e2e_test.cc, SupervisionE2eTest).

}  // namespace
}  // namespace sphere::testing
