#include "appsvc/device_registry.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"

namespace contoso::appsvc {
namespace {

using sphere::auth::DeviceContext;
using sphere::auth::Scope;
using sphere::v1::WatchEvent;

const std::string kDev(64, 'a');

WatchEvent TenantEvent(int64_t rev, const std::string& id,
                       const std::string& name, bool snapshot = false) {
  WatchEvent e;
  e.set_revision(rev);
  e.set_snapshot(snapshot);
  e.mutable_tenant()->set_id(id);
  e.mutable_tenant()->set_name(name);
  return e;
}
WatchEvent ProductEvent(int64_t rev, const std::string& id,
                        const std::string& tenant, const std::string& name,
                        bool snapshot = false) {
  WatchEvent e;
  e.set_revision(rev);
  e.set_snapshot(snapshot);
  e.mutable_product()->set_id(id);
  e.mutable_product()->set_tenant_id(tenant);
  e.mutable_product()->set_name(name);
  return e;
}
WatchEvent DeviceEvent(int64_t rev, const std::string& id,
                       const std::string& tenant, const std::string& product,
                       sphere::v1::DeviceState state = sphere::v1::CLAIMED,
                       bool snapshot = false) {
  WatchEvent e;
  e.set_revision(rev);
  e.set_snapshot(snapshot);
  e.mutable_device()->set_id(id);
  e.mutable_device()->set_tenant_id(tenant);
  e.mutable_device()->set_product_id(product);
  e.mutable_device()->set_state(state);
  e.mutable_device()->set_ownership_epoch(1);
  return e;
}
WatchEvent SnapshotEnd(int64_t rev) {
  WatchEvent e;
  e.set_revision(rev);
  e.set_snapshot(true);
  e.set_snapshot_end(true);
  return e;
}

DeviceContext Ctx(const std::string& id, const std::string& tenant,
                  const std::string& product, Scope scope = Scope::kFull) {
  DeviceContext c;
  c.device_id = id;
  c.tenant_id = tenant;
  c.product_id = product;
  c.scope = scope;
  c.ownership_epoch = 1;
  return c;
}

class DeviceRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reg_.Apply(TenantEvent(5, "t-contoso", "Contoso", true));
    reg_.Apply(TenantEvent(5, "t-fabrikam", "Fabrikam", true));
    reg_.Apply(ProductEvent(5, "p-dw100", "t-contoso", "DW100", true));
    reg_.Apply(ProductEvent(5, "p-dw200", "t-contoso", "DW200", true));
    reg_.Apply(DeviceEvent(5, kDev, "t-contoso", "p-dw100", sphere::v1::CLAIMED,
                           true));
    reg_.Apply(SnapshotEnd(5));
  }
  DeviceRegistry reg_{{"contoso", "DW100"}};  // names, any case
};

TEST_F(DeviceRegistryTest, AcceptsContosoDw100FullScope) {
  EXPECT_TRUE(reg_.synced());
  EXPECT_EQ(reg_.revision(), 5);
  EXPECT_TRUE(reg_.Authorize(Ctx(kDev, "t-contoso", "p-dw100")).ok());
  EXPECT_TRUE(reg_.IsConfiguredTenant("t-contoso"));
  EXPECT_FALSE(reg_.IsConfiguredTenant("t-fabrikam"));
  EXPECT_EQ(reg_.ConfiguredTenantId(), "t-contoso");
}

TEST_F(DeviceRegistryTest, Attack_UpdateOnlyRefused) {
  absl::Status s =
      reg_.Authorize(Ctx(kDev, "t-contoso", "p-dw100", Scope::kUpdateOnly));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(s.message(), "update-only")) << s;
}

TEST_F(DeviceRegistryTest, Attack_RevokedRefusedAfterOneEvent) {
  WatchEvent e;
  e.set_revision(6);
  e.set_revoked_device_id(kDev);
  reg_.Apply(e);
  absl::Status s = reg_.Authorize(Ctx(kDev, "t-contoso", "p-dw100"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(s.message(), "revoked")) << s;
  EXPECT_EQ(reg_.revision(), 6);
}

TEST_F(DeviceRegistryTest, Attack_OtherTenantAndProductRefused) {
  const std::string other(64, 'b'), dw200(64, 'c');
  reg_.Apply(DeviceEvent(7, other, "t-fabrikam", "p-x"));
  reg_.Apply(DeviceEvent(8, dw200, "t-contoso", "p-dw200"));
  absl::Status s = reg_.Authorize(Ctx(other, "t-fabrikam", "p-x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(s.message(), "another tenant")) << s;
  s = reg_.Authorize(Ctx(dw200, "t-contoso", "p-dw200"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(s.message(), "another product")) << s;
  // A certificate naming a different product than the catalog: refused.
  s = reg_.Authorize(Ctx(kDev, "t-contoso", "p-dw200"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(DeviceRegistryTest, Attack_UnknownDeviceAndStaleEpochRefused) {
  EXPECT_EQ(
      reg_.Authorize(Ctx(std::string(64, 'f'), "t-contoso", "p-dw100")).code(),
      absl::StatusCode::kPermissionDenied);
  DeviceContext stale = Ctx(kDev, "t-contoso", "p-dw100");
  stale.ownership_epoch = 0;
  EXPECT_EQ(reg_.Authorize(stale).code(), absl::StatusCode::kPermissionDenied);
}

TEST(DeviceRegistryUnsyncedTest, RefusesUntilFirstSnapshot) {
  DeviceRegistry reg({"Contoso", "DW100"});
  reg.Apply(TenantEvent(1, "t", "Contoso", true));
  reg.Apply(ProductEvent(1, "p", "t", "DW100", true));
  reg.Apply(DeviceEvent(1, kDev, "t", "p", sphere::v1::CLAIMED, true));
  EXPECT_EQ(reg.Authorize(Ctx(kDev, "t", "p")).code(),
            absl::StatusCode::kUnavailable);
  reg.Apply(SnapshotEnd(1));
  EXPECT_TRUE(reg.Authorize(Ctx(kDev, "t", "p")).ok());
}

}  // namespace
}  // namespace contoso::appsvc
