#include "securitysvc/management/catalog.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/crypto/crypto.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "securitysvc/management/catalog_test_support.h"

namespace sphere::management {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// TestWatch follows a catalog watch synchronously: it drains the snapshot or
// replay when opened and, from its wakeup (which runs under the catalog
// mutex, as the contract allows), every live event as it commits.
struct TestWatch {
  std::vector<v1::WatchEvent> events;
  absl::Status status;
  size_t page_size = 1000;
  std::unique_ptr<Catalog::WatchStream> stream;  // destroyed first

  void Drain() {
    while (status.ok()) {
      const size_t before = events.size();
      status = stream->Next(page_size, &events);
      if (events.size() == before) return;
    }
  }
};

v1::ListProductsRequest ProductsOf(absl::string_view tenant) {
  v1::ListProductsRequest req;
  req.set_tenant_id(std::string(tenant));
  return req;
}

v1::ListDeviceGroupsRequest GroupsOf(absl::string_view tenant,
                                     absl::string_view product) {
  v1::ListDeviceGroupsRequest req;
  req.set_tenant_id(std::string(tenant));
  req.set_product(std::string(product));
  return req;
}

class CatalogTest : public CatalogFixture {
 protected:
  // Follow opens a watch that delivers every event into TestWatch::events.
  std::unique_ptr<TestWatch> Follow(const Caller& caller, int64_t start,
                                    size_t live_queue_limit = 65536) {
    auto w = std::make_unique<TestWatch>();
    TestWatch* raw = w.get();
    Catalog::WatchOptions options;
    options.live_queue_limit = live_queue_limit;
    options.wakeup = [raw] { raw->Drain(); };
    auto stream = catalog_->OpenWatch(caller, start, std::move(options));
    if (!stream.ok()) {
      w->status = stream.status();
      return w;
    }
    w->stream = *std::move(stream);
    w->Drain();
    return w;
  }

  void SetUp() override {
    CatalogFixture::SetUp();
    if (HasFatalFailure()) return;
    dw100_ = *catalog_->CreateProduct(contoso_op_, "", "DW100", "dishwasher");
    fab_product_ = *catalog_->CreateProduct(fabrikam_op_, "", "F1", "");
  }

  std::string ImportOne(uint64_t n) {
    return ImportFakeDevices(catalog_.get(), n, 1)[0];
  }

  std::string GroupId(const v1::Product& product, absl::string_view name) {
    v1::ListDeviceGroupsRequest req;
    req.set_tenant_id(product.tenant_id());
    req.set_product(product.id());
    auto groups = catalog_->ListDeviceGroups(Caller::PlatformOperator(), req);
    EXPECT_TRUE(groups.ok()) << groups.status();
    for (const auto& g : groups->groups()) {
      if (g.name() == name) return g.id();
    }
    ADD_FAILURE() << "no group " << name;
    return "";
  }

  v1::Product dw100_, fab_product_;
};

TEST_F(CatalogTest, NewProductGetsTheFiveDefaultGroups) {
  auto listed = catalog_->ListDeviceGroups(contoso_op_, GroupsOf("", "DW100"));
  ASSERT_TRUE(listed.ok()) << listed.status();
  const auto& groups = listed->groups();
  ASSERT_EQ(groups.size(), 5);
  struct Want {
    const char* name;
    v1::OsFeed feed;
    v1::AppUpdatePolicy policy;
  };
  const Want want[] = {
      {"Development", v1::RETAIL, v1::NO_3RD_PARTY_APP_UPDATES},
      {"Field Test", v1::RETAIL, v1::UPDATE_ALL},
      {"Field Test OS Evaluation", v1::RETAIL_EVAL, v1::UPDATE_ALL},
      {"Production", v1::RETAIL, v1::UPDATE_ALL},
      {"Production OS Evaluation", v1::RETAIL_EVAL, v1::UPDATE_ALL},
  };
  for (const Want& w : want) {
    auto g = catalog_->GetDeviceGroup(contoso_op_, "",
                                      absl::StrCat("DW100/", w.name));
    ASSERT_TRUE(g.ok()) << w.name << ": " << g.status();
    EXPECT_EQ(g->os_feed(), w.feed) << w.name;
    EXPECT_EQ(g->app_update_policy(), w.policy) << w.name;
    EXPECT_EQ(g->tenant_id(), contoso_.id());
    EXPECT_EQ(g->product_id(), dw100_.id());
  }
}

TEST_F(CatalogTest, TenantCaIsSignedByRootAndKeyIsOnlyStoredWrapped) {
  ASSERT_TRUE(crypto::VerifyChain(contoso_.ca_certificate_pem(), "", root_pem_,
                                  clock_.Now(), false)
                  .ok());
  EXPECT_TRUE(contoso_.wrapped_ca_key().empty());  // not for operators
  auto internal = catalog_->GetTenant(Caller::Internal(), contoso_.id());
  ASSERT_TRUE(internal.ok());
  auto key =
      UnwrapTenantCaKey(master_key_, contoso_.id(), internal->wrapped_ca_key());
  ASSERT_TRUE(key.ok()) << key.status();
  auto cert = crypto::ParseCertificate(contoso_.ca_certificate_pem());
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->public_key, key->PublicKey());
  EXPECT_TRUE(cert->is_ca);
  // The scalar never appears in the store in the clear.
  EXPECT_THAT(Dump(), Not(HasSubstr(key->scalar())));
  // Unwrapping under another tenant id (AAD) fails.
  EXPECT_FALSE(
      UnwrapTenantCaKey(master_key_, fabrikam_.id(), internal->wrapped_ca_key())
          .ok());
}

TEST_F(CatalogTest, ProductNotFoundNamesProductTenantAndWhatToDo) {
  auto p = catalog_->GetProduct(contoso_op_, "", "DW200");
  EXPECT_TRUE(absl::IsNotFound(p.status()));
  EXPECT_EQ(p.status().message(),
            "product \"DW200\" not found in tenant \"Contoso\"; list products "
            "with 'spherectl product list'");
}

TEST_F(CatalogTest, DuplicateProductAndInvalidGroupRejected) {
  const std::string before = Dump();
  EXPECT_TRUE(absl::IsAlreadyExists(
      catalog_->CreateProduct(contoso_op_, "", "dw100", "").status()));
  v1::CreateDeviceGroupRequest bad;
  bad.set_product("DW100");
  bad.set_name("Bad/Name");
  EXPECT_TRUE(absl::IsInvalidArgument(
      catalog_->CreateDeviceGroup(contoso_op_, bad).status()));
  bad.set_name("Beta");
  bad.set_os_feed(static_cast<v1::OsFeed>(42));
  EXPECT_TRUE(absl::IsInvalidArgument(
      catalog_->CreateDeviceGroup(contoso_op_, bad).status()));
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, DeviceGroupCreateAndUpdate) {
  v1::CreateDeviceGroupRequest req;
  req.set_product("DW100");
  req.set_name("Beta");
  auto g = catalog_->CreateDeviceGroup(contoso_op_, req);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->os_feed(), v1::RETAIL);
  EXPECT_EQ(g->app_update_policy(), v1::UPDATE_ALL);
  v1::UpdateDeviceGroupRequest up;
  up.set_device_group_id(g->id());
  up.set_os_feed(v1::RETAIL_EVAL);
  auto u = catalog_->UpdateDeviceGroup(contoso_op_, up);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->os_feed(), v1::RETAIL_EVAL);
  EXPECT_EQ(u->app_update_policy(), v1::UPDATE_ALL);  // unchanged
  EXPECT_EQ(catalog_->GetDeviceGroup(contoso_op_, "", g->id())->os_feed(),
            v1::RETAIL_EVAL);
}

TEST_F(CatalogTest, DoubleClaimFailsAndChangesNothing) {
  const std::string id = ImportOne(1);
  auto claimed = catalog_->ClaimDevice(contoso_op_, "", id);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(claimed->state(), v1::CLAIMED);
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();

  auto again = catalog_->ClaimDevice(contoso_op_, "", id);
  EXPECT_TRUE(absl::IsAlreadyExists(again.status()));
  EXPECT_THAT(again.status().message(), HasSubstr(id));
  EXPECT_THAT(again.status().message(), HasSubstr("\"Contoso\""));

  // Another tenant's claim answers exactly like a claim of a device that
  // does not exist (no probing of other tenants' fleets).
  auto other = catalog_->ClaimDevice(fabrikam_op_, "", id);
  EXPECT_TRUE(absl::IsNotFound(other.status())) << other.status();
  const std::string missing = DeviceIdForKey(FakeDeviceKey(4242));
  auto none = catalog_->ClaimDevice(fabrikam_op_, "", missing);
  EXPECT_TRUE(absl::IsNotFound(none.status()));
  EXPECT_EQ(std::string(none.status().message()),
            absl::StrReplaceAll(other.status().message(), {{id, missing}}));
  EXPECT_THAT(other.status().message(), Not(HasSubstr("Contoso")));
  EXPECT_THAT(other.status().message(), Not(HasSubstr(contoso_.id())));

  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
}

TEST_F(CatalogTest, ClaimOfUnknownDeviceIsNotFound) {
  const std::string before = Dump();
  auto r =
      catalog_->ClaimDevice(contoso_op_, "", DeviceIdForKey(FakeDeviceKey(99)));
  EXPECT_TRUE(absl::IsNotFound(r.status()));
  EXPECT_THAT(r.status().message(), HasSubstr("factory registry"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      catalog_->ClaimDevice(contoso_op_, "", "not-an-id").status()));
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, CrossTenantProductReadDenied) {
  auto p = catalog_->GetProduct(fabrikam_op_, contoso_.name(), "DW100");
  EXPECT_TRUE(absl::IsPermissionDenied(p.status()));
  EXPECT_THAT(p.status().message(), HasSubstr("\"Contoso\""));
  // By id within its own tenant: another tenant's product looks missing.
  auto by_id = catalog_->GetProduct(fabrikam_op_, "", dw100_.id());
  EXPECT_TRUE(absl::IsNotFound(by_id.status())) << by_id.status();
  EXPECT_THAT(by_id.status().message(), HasSubstr(dw100_.id()));
  EXPECT_THAT(by_id.status().message(), Not(HasSubstr("Contoso")));
  auto list = catalog_->ListProducts(fabrikam_op_, ProductsOf(contoso_.id()));
  EXPECT_TRUE(absl::IsPermissionDenied(list.status()));
}

// Names are unique ignoring case (CreateTenant/Product/DeviceGroup refuse
// "contoso" beside "Contoso"), so lookups by name ignore case too.
TEST_F(CatalogTest, NamesAreLookedUpIgnoringCase) {
  auto t = catalog_->GetTenant(platform_, "cONTOSO");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->id(), contoso_.id());
  auto own = catalog_->GetProduct(contoso_op_, "contoso", "dw100");
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->id(), dw100_.id());
  auto g = catalog_->GetDeviceGroup(contoso_op_, "", "dw100/PRODUCTION");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->name(), "Production");
  // Still scoped: another tenant's name in any case is refused.
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->GetProduct(fabrikam_op_, "CONTOSO", "DW100").status()));
}

TEST_F(CatalogTest, CrossTenantProductCreateDenied) {
  const std::string before = Dump();
  auto p = catalog_->CreateProduct(fabrikam_op_, "Contoso", "Evil", "");
  EXPECT_TRUE(absl::IsPermissionDenied(p.status()));
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, CrossTenantGroupUpdateDenied) {
  const std::string before = Dump();
  v1::UpdateDeviceGroupRequest up;
  up.set_device_group_id(GroupId(dw100_, "Production"));
  up.set_app_update_policy(v1::NO_UPDATES);
  auto r = catalog_->UpdateDeviceGroup(fabrikam_op_, up);
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(up.device_group_id()));
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, CrossTenantDeviceReadAndRevokeDenied) {
  const std::string id = ImportOne(2);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
  const std::string before = Dump();
  auto get = catalog_->GetDevice(fabrikam_op_, "", id);
  EXPECT_TRUE(absl::IsNotFound(get.status())) << get.status();
  EXPECT_THAT(get.status().message(), HasSubstr(id));
  EXPECT_THAT(get.status().message(), Not(HasSubstr("Contoso")));
  auto revoke = catalog_->RevokeDevice(fabrikam_op_, "", id, "mine now");
  EXPECT_TRUE(absl::IsNotFound(revoke.status()));
  auto transfer =
      catalog_->RequestDeviceTransfer(fabrikam_op_, "", id, "Fabrikam");
  EXPECT_TRUE(absl::IsNotFound(transfer.status()));
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, AssignToAnotherTenantsGroupDenied) {
  const std::string id = ImportOne(3);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
  const std::string before = Dump();
  auto r = catalog_->AssignDevice(contoso_op_, "", id,
                                  GroupId(fab_product_, "Production"));
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_EQ(Dump(), before);
  auto ok = catalog_->AssignDevice(contoso_op_, "", id, "DW100/Production");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->product_id(), dw100_.id());
}

TEST_F(CatalogTest, TenantOperatorCannotCreateTenantsOrImport) {
  const std::string before = Dump();
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->CreateTenant(contoso_op_, "Mine").status()));
  v1::FactoryDevice d;
  d.set_public_key(FakeDeviceKey(7));
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->ImportDevices(contoso_op_, {d}).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->OpenWatch(contoso_op_, 1, {}).status()));
  EXPECT_EQ(catalog_->ListTenants(contoso_op_)->tenants_size(), 1);
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, TransferNeedsBothTenantsAndBumpsEpoch) {
  const std::string id = ImportOne(4);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
  ASSERT_TRUE(
      catalog_->AssignDevice(contoso_op_, "", id, "DW100/Production").ok());
  // Fabrikam cannot accept what was never offered.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      catalog_->AcceptDeviceTransfer(fabrikam_op_, "", id).status()));

  auto pending =
      catalog_->RequestDeviceTransfer(contoso_op_, "", id, "Fabrikam");
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_EQ(pending->state(), v1::TRANSFER_PENDING);
  EXPECT_EQ(pending->tenant_id(), contoso_.id());
  EXPECT_EQ(pending->ownership_epoch(), 0u);

  std::unique_ptr<TestWatch> events_watch =
      Follow(Caller::Internal(), catalog_->revision() + 1);
  ASSERT_TRUE(events_watch->status.ok()) << events_watch->status;
  std::vector<v1::WatchEvent>& events = events_watch->events;
  // The requester cannot accept its own offer.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      catalog_->AcceptDeviceTransfer(contoso_op_, "", id).status()));

  auto accepted = catalog_->AcceptDeviceTransfer(fabrikam_op_, "", id);
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_EQ(accepted->tenant_id(), fabrikam_.id());
  EXPECT_EQ(accepted->state(), v1::CLAIMED);
  EXPECT_EQ(accepted->ownership_epoch(), 1u);
  EXPECT_TRUE(accepted->device_group_id().empty());
  EXPECT_TRUE(
      absl::IsNotFound(catalog_->GetDevice(contoso_op_, "", id).status()));
  EXPECT_TRUE(catalog_->GetDevice(fabrikam_op_, "", id).ok());

  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].revoked_device_id(), id);
  EXPECT_EQ(events[1].device().ownership_epoch(), 1u);

  v1::ListDevicesRequest list;
  EXPECT_EQ(catalog_->ListDevices(contoso_op_, list)->devices_size(), 0);
  EXPECT_EQ(catalog_->ListDevices(fabrikam_op_, list)->devices_size(), 1);
}

TEST_F(CatalogTest, RevokeEmitsRevokedEventAndIsIdempotent) {
  const std::string id = ImportOne(5);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
  std::unique_ptr<TestWatch> events_watch =
      Follow(platform_, catalog_->revision() + 1);
  ASSERT_TRUE(events_watch->status.ok()) << events_watch->status;
  std::vector<v1::WatchEvent>& events = events_watch->events;
  auto r = catalog_->RevokeDevice(contoso_op_, "", id, "stolen");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state(), v1::REVOKED);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].revoked_device_id(), id);
  EXPECT_TRUE(catalog_->RevokeDevice(contoso_op_, "", id, "again").ok());
  EXPECT_EQ(events.size(), 2u);
}

TEST_F(CatalogTest, ShardRevokesCompromisedDeviceWithAutomaticReason) {
  const std::string id = ImportOne(6);
  auto claimed = catalog_->ClaimDevice(contoso_op_, "", id);
  ASSERT_TRUE(claimed.ok());
  EXPECT_EQ(claimed->revocation_reason(), "");
  // A shard names the device's tenant (from its catalog) and the reason.
  auto r = catalog_->RevokeDevice(Caller::Internal(), contoso_.id(), id,
                                  "tamper: 1 tamper event(s)");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state(), v1::REVOKED);
  EXPECT_EQ(r->revocation_reason(), "automatic: tamper: 1 tamper event(s)");
  auto seen = catalog_->GetDevice(contoso_op_, "", id);
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->state(), v1::REVOKED);
  EXPECT_EQ(seen->revocation_reason(), "automatic: tamper: 1 tamper event(s)");

  // An operator's reason is recorded as given.
  const std::string other = ImportOne(7);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", other).ok());
  auto manual = catalog_->RevokeDevice(contoso_op_, "", other, "stolen");
  ASSERT_TRUE(manual.ok());
  EXPECT_EQ(manual->revocation_reason(), "stolen");
}

TEST_F(CatalogTest, WatchReplaysFromRevisionThenLive) {
  const int64_t start = catalog_->revision() + 1;
  auto p = catalog_->CreateProduct(contoso_op_, "", "DW200", "");  // 6 events
  ASSERT_TRUE(p.ok());
  std::unique_ptr<TestWatch> events_watch = Follow(platform_, start);
  ASSERT_TRUE(events_watch->status.ok()) << events_watch->status;
  std::vector<v1::WatchEvent>& events = events_watch->events;
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[0].revision(), start);
  EXPECT_EQ(events[0].product().name(), "DW200");
  EXPECT_FALSE(events[0].snapshot());
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].revision(), start + static_cast<int64_t>(i));
    EXPECT_TRUE(events[i].has_device_group());
  }
  auto t = catalog_->CreateTenant(platform_, "Northwind");
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(events.size(), 7u);
  EXPECT_EQ(events[6].tenant().name(), "Northwind");
  EXPECT_TRUE(events[6].tenant().wrapped_ca_key().empty());  // not internal
}

TEST_F(CatalogTest, WatchFromCompactedRevisionGetsSnapshot) {
  const std::string id = ImportOne(6);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
  ImportOne(7);  // unclaimed: not in the snapshot
  const int64_t current = catalog_->revision();
  ASSERT_TRUE(catalog_->Compact(current).ok());
  EXPECT_EQ(catalog_->compacted_revision(), current);
  EXPECT_TRUE(absl::IsInvalidArgument(catalog_->Compact(current + 5)));

  // From the compaction point the log still replays.
  std::unique_ptr<TestWatch> replay_watch = Follow(platform_, current);
  ASSERT_TRUE(replay_watch->status.ok()) << replay_watch->status;
  std::vector<v1::WatchEvent>& replay = replay_watch->events;
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_FALSE(replay[0].snapshot());

  std::unique_ptr<TestWatch> events_watch = Follow(Caller::Internal(), 1);
  ASSERT_TRUE(events_watch->status.ok()) << events_watch->status;
  std::vector<v1::WatchEvent>& events = events_watch->events;
  // 2 tenants, 2 products, 10 groups, 1 claimed device, end marker.
  ASSERT_EQ(events.size(), 16u);
  int tenants = 0, devices = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_TRUE(events[i].snapshot());
    EXPECT_EQ(events[i].revision(), current);
    EXPECT_EQ(events[i].snapshot_end(), i + 1 == events.size());
    if (events[i].has_tenant()) {
      ++tenants;
      EXPECT_FALSE(events[i].tenant().wrapped_ca_key().empty());
    }
    if (events[i].has_device()) ++devices;
  }
  EXPECT_EQ(tenants, 2);
  EXPECT_EQ(devices, 1);

  // Live events follow the snapshot.
  ASSERT_TRUE(catalog_->RevokeDevice(contoso_op_, "", id, "x").ok());
  EXPECT_EQ(events.size(), 18u);
  EXPECT_EQ(events.back().revision(), current + 2);

  // Compaction survives a restart (streams must not outlive their catalog).
  replay_watch.reset();
  events_watch.reset();
  catalog_ = OpenCatalog();
  EXPECT_EQ(catalog_->compacted_revision(), current);
  EXPECT_EQ(catalog_->revision(), current + 2);
}

TEST_F(CatalogTest, SlowWatcherIsDropped) {
  // A live watcher that stops pulling is dropped once more than the limit of
  // events is queued for it; it learns why and where to resume.
  auto stream = catalog_->OpenWatch(platform_, catalog_->revision() + 1,
                                    {/*live_queue_limit=*/2, nullptr});
  ASSERT_TRUE(stream.ok());
  std::vector<v1::WatchEvent> events;
  ASSERT_TRUE((*stream)->Next(10, &events).ok());
  EXPECT_TRUE(events.empty());  // caught up: live
  const int64_t resume = catalog_->revision() + 1;
  ASSERT_TRUE(catalog_->CreateProduct(contoso_op_, "", "DW300", "").ok());
  absl::Status s = (*stream)->Next(10, &events);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("start_revision=", resume)));
  EXPECT_TRUE(events.empty());
  // Dropped for good: later events do not reach it.
  ASSERT_TRUE(catalog_->CreateProduct(contoso_op_, "", "DW400", "").ok());
  EXPECT_TRUE(absl::IsResourceExhausted((*stream)->Next(10, &events)));
  // Resuming from the revision it names replays everything it missed.
  auto again = Follow(platform_, resume);
  ASSERT_TRUE(again->status.ok()) << again->status;
  ASSERT_EQ(again->events.size(), 12u);  // 2 products x (1 + 5 groups)
  for (size_t i = 0; i < again->events.size(); ++i) {
    EXPECT_EQ(again->events[i].revision(), resume + static_cast<int64_t>(i));
    EXPECT_FALSE(again->events[i].snapshot());
  }
}

TEST_F(CatalogTest, SnapshotLargerThanLiveLimitStreamsThenLiveWithoutGap) {
  constexpr int kDevices = 1200;
  std::vector<v1::FactoryDevice> factory(kDevices);
  std::vector<std::string> ids;
  for (int i = 0; i < kDevices; ++i) {
    factory[i].set_public_key(FakeDeviceKey(1000 + i));
    ids.push_back(DeviceIdForKey(factory[i].public_key()));
  }
  ASSERT_TRUE(catalog_->ImportDevices(platform_, factory).ok());
  for (const std::string& id : ids) {
    ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
  }
  const int64_t snapshot_revision = catalog_->revision();

  // A shard with a live limit of 64 pulls the snapshot 50 events at a time.
  auto stream = catalog_->OpenWatch(Caller::Internal(), 0,
                                    {/*live_queue_limit=*/64, nullptr});
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<v1::WatchEvent> events;
  ASSERT_TRUE((*stream)->Next(50, &events).ok());
  ASSERT_EQ(events.size(), 50u);
  // Mid-snapshot, more changes than the live limit commit: the catalog mutex
  // is free, and the snapshot does not see them.
  const std::string production = GroupId(dw100_, "Production");
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(
        catalog_->AssignDevice(contoso_op_, "", ids[i], production).ok());
  }
  ASSERT_TRUE(catalog_->CreateTenant(platform_, "Northwind").ok());
  const int64_t last = catalog_->revision();
  ASSERT_EQ(last, snapshot_revision + 101);

  while (true) {
    const size_t before = events.size();
    absl::Status s = (*stream)->Next(50, &events);
    ASSERT_TRUE(s.ok()) << s;
    if (events.size() == before) break;  // live, nothing queued
    EXPECT_LE(events.size() - before, 50u);
  }
  // 2 tenants, 2 products, 10 groups, 1200 devices, the end marker.
  const size_t snapshot_size = 2 + 2 + 10 + kDevices + 1;
  ASSERT_EQ(events.size(), snapshot_size + 101);
  int devices = 0;
  for (size_t i = 0; i < snapshot_size; ++i) {
    ASSERT_TRUE(events[i].snapshot());
    ASSERT_EQ(events[i].revision(), snapshot_revision);
    EXPECT_EQ(events[i].snapshot_end(), i + 1 == snapshot_size);
    if (events[i].has_device()) {
      ++devices;
      EXPECT_TRUE(events[i].device().device_group_id().empty());  // as of R
    }
    EXPECT_FALSE(events[i].has_tenant() &&
                 events[i].tenant().name() == "Northwind");
  }
  EXPECT_EQ(devices, kDevices);
  // Then every later event, in order: no gap, no duplicate.
  for (size_t i = snapshot_size; i < events.size(); ++i) {
    EXPECT_FALSE(events[i].snapshot());
    EXPECT_EQ(events[i].revision(),
              snapshot_revision + 1 + static_cast<int64_t>(i - snapshot_size));
  }
  EXPECT_EQ(events.back().tenant().name(), "Northwind");
  EXPECT_EQ((*stream)->NextRevision(), last + 1);

  // Live events follow.
  ASSERT_TRUE(catalog_->RevokeDevice(contoso_op_, "", ids[0], "lost").ok());
  std::vector<v1::WatchEvent> live;
  ASSERT_TRUE((*stream)->Next(50, &live).ok());
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].revision(), last + 1);
  EXPECT_EQ(live[1].revision(), last + 2);
  EXPECT_EQ(live[1].revoked_device_id(), ids[0]);
}

TEST_F(CatalogTest, CompactionOvertakingAReplayEndsItWithResumePoint) {
  const int64_t start = catalog_->revision() + 1;
  ASSERT_TRUE(catalog_->CreateProduct(contoso_op_, "", "DW200", "").ok());
  auto stream = catalog_->OpenWatch(platform_, start, {});
  ASSERT_TRUE(stream.ok());
  std::vector<v1::WatchEvent> events;
  ASSERT_TRUE((*stream)->Next(2, &events).ok());
  ASSERT_EQ(events.size(), 2u);
  ASSERT_TRUE(catalog_->Compact(catalog_->revision() + 1).ok());
  absl::Status s = (*stream)->Next(2, &events);
  EXPECT_TRUE(absl::IsAborted(s)) << s;
  EXPECT_THAT(s.message(),
              HasSubstr(absl::StrCat("start_revision=", start + 2)));
  // Resuming there is older than the compacted log: a fresh snapshot.
  auto again = Follow(platform_, start + 2);
  ASSERT_TRUE(again->status.ok()) << again->status;
  ASSERT_FALSE(again->events.empty());
  EXPECT_TRUE(again->events.front().snapshot());
  EXPECT_TRUE(again->events.back().snapshot_end());
}

TEST_F(CatalogTest, PlatformOperatorsNeverReceiveWrappedCaKeys) {
  auto snapshot = Follow(platform_, 0);
  ASSERT_TRUE(snapshot->status.ok());
  auto replay = Follow(platform_, 1);
  ASSERT_TRUE(replay->status.ok());
  ASSERT_TRUE(catalog_->CreateTenant(platform_, "Northwind").ok());  // live
  int tenants = 0;
  for (const auto* w : {snapshot.get(), replay.get()}) {
    for (const v1::WatchEvent& e : w->events) {
      if (!e.has_tenant()) continue;
      ++tenants;
      EXPECT_TRUE(e.tenant().wrapped_ca_key().empty()) << e.tenant().name();
    }
  }
  EXPECT_EQ(tenants, 2 * (2 + 1));  // (2 existing + 1 live) per watcher
  // Keep the StatusOr alive: ranging over `*temporary` would dangle.
  auto listed = catalog_->ListTenants(platform_);
  ASSERT_TRUE(listed.ok()) << listed.status();
  for (const v1::Tenant& t : listed->tenants()) {
    EXPECT_TRUE(t.wrapped_ca_key().empty());
  }
  EXPECT_TRUE(
      catalog_->GetTenant(platform_, "Contoso")->wrapped_ca_key().empty());
  EXPECT_TRUE(catalog_->GetTenant(contoso_op_, "")->wrapped_ca_key().empty());
  // The shard path does get them.
  EXPECT_FALSE(catalog_->GetTenant(Caller::Internal(), "Contoso")
                   ->wrapped_ca_key()
                   .empty());
}

TEST_F(CatalogTest, InternalCallerHasLeastPrivilege) {
  const std::string id = ImportOne(9);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
  const Caller shard = Caller::Internal();
  const std::string before = Dump();
  auto denied = [&](const absl::Status& s, absl::string_view operation) {
    EXPECT_TRUE(absl::IsPermissionDenied(s)) << operation << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(operation));
    EXPECT_THAT(s.message(), HasSubstr("shard credential"));
  };
  denied(catalog_->CreateTenant(shard, "Evil").status(), "creating a tenant");
  denied(catalog_->ListTenants(shard).status(), "listing tenants");
  denied(
      catalog_
          ->IssueOperatorCredential(shard, "Contoso", "evil", FakeDeviceKey(1))
          .status(),
      "issuing operator credentials");
  denied(catalog_->CreateProduct(shard, "Contoso", "X", "").status(),
         "creating a product");
  denied(catalog_->ListProducts(shard, ProductsOf("Contoso")).status(),
         "listing products");
  v1::CreateDeviceGroupRequest group;
  group.set_tenant_id("Contoso");
  group.set_product("DW100");
  group.set_name("Evil");
  denied(catalog_->CreateDeviceGroup(shard, group).status(),
         "creating a device group");
  v1::FactoryDevice d;
  d.set_public_key(FakeDeviceKey(10));
  denied(catalog_->ImportDevices(shard, {d}).status(),
         "importing factory devices");
  denied(catalog_->ClaimDevice(shard, "Contoso", DeviceIdForKey(d.public_key()))
             .status(),
         "claiming a device");
  denied(
      catalog_->AssignDevice(shard, "Contoso", id, "DW100/Production").status(),
      "assigning a device");
  denied(catalog_->RequestDeviceTransfer(shard, "Contoso", id, "Fabrikam")
             .status(),
         "requesting a device transfer");
  v1::ListDevicesRequest list;
  list.set_tenant_id("Contoso");
  denied(catalog_->ListDevices(shard, list).status(), "listing devices");
  v1::ReleaseOsRequest release;
  release.set_feed(v1::RETAIL);
  release.set_version("99.1");
  release.add_image_ids(std::string(64, 'a'));
  denied(catalog_->ReleaseOs(shard, release).status(), "releasing an OS");
  EXPECT_EQ(Dump(), before);

  // What shards need still works.
  EXPECT_TRUE(catalog_->GetTenant(shard, contoso_.id()).ok());
  EXPECT_TRUE(catalog_->GetDevice(shard, "", id).ok());
  EXPECT_TRUE(catalog_->GetShardMap(shard).ok());
  EXPECT_TRUE(catalog_->OpenWatch(shard, 0, {}).ok());
}

TEST_F(CatalogTest, FailedWriteChangesNothing) {
  const std::string id = ImportOne(8);
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  store_->FailNextWrites(1, absl::UnavailableError("disk gone"));
  auto r = catalog_->ClaimDevice(contoso_op_, "", id);
  EXPECT_TRUE(absl::IsUnavailable(r.status()));
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
  EXPECT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
}

TEST_F(CatalogTest, ImportRejectsMalformedKeysAtomically) {
  const std::string before = Dump();
  v1::FactoryDevice good, bad;
  good.set_public_key(FakeDeviceKey(10));
  bad.set_public_key(std::string(33, '\x02'));  // compressed point
  auto r = catalog_->ImportDevices(platform_, {good, bad});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_THAT(r.status().message(), HasSubstr("#1"));
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, ImportHundredThousandKeysFastAndIdempotent) {
  constexpr int kBatches = 10, kPerBatch = 10000;
  std::vector<std::vector<v1::FactoryDevice>> batches(kBatches);
  for (int b = 0; b < kBatches; ++b) {
    batches[b].resize(kPerBatch);
    for (int i = 0; i < kPerBatch; ++i) {
      batches[b][i].set_public_key(FakeDeviceKey(b * kPerBatch + i));
      batches[b][i].set_device_type("mt3620");
    }
  }
  auto start = std::chrono::steady_clock::now();
  uint64_t imported = 0;
  for (const auto& batch : batches) {
    auto r = catalog_->ImportDevices(platform_, batch);
    ASSERT_TRUE(r.ok()) << r.status();
    imported += r->imported;
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf("imported %llu keys in %.3f s (%.0f keys/s, memory store)\n",
              static_cast<unsigned long long>(imported), seconds,
              imported / seconds);
  EXPECT_EQ(imported, 100000u);
  EXPECT_EQ(store_->Size("devices"), 100000u);

  const int64_t revision = catalog_->revision();
  auto again = catalog_->ImportDevices(platform_, batches[3]);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(again->already_known, static_cast<uint64_t>(kPerBatch));
  EXPECT_EQ(catalog_->revision(), revision);  // nothing new, no event
  EXPECT_EQ(store_->Size("devices"), 100000u);

  // Duplicates inside one call count once.
  std::vector<v1::FactoryDevice> dup(2);
  dup[0].set_public_key(FakeDeviceKey(500000));
  dup[1].set_public_key(FakeDeviceKey(500000));
  auto d = catalog_->ImportDevices(platform_, dup);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->imported, 1u);
  EXPECT_EQ(d->already_known, 1u);
}

TEST_F(CatalogTest, ListDevicesPages) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(ImportOne(100 + i));
    ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", ids.back()).ok());
  }
  v1::ListDevicesRequest req;
  req.set_page_size(2);
  std::vector<std::string> seen;
  for (int pages = 0; pages < 10; ++pages) {
    auto r = catalog_->ListDevices(contoso_op_, req);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const auto& d : r->devices()) seen.push_back(d.id());
    if (r->next_page_token().empty()) break;
    req.set_page_token(r->next_page_token());
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(seen, ids);
}

TEST_F(CatalogTest, ShardMapRegistration) {
  v1::Shard s0;
  s0.set_id("shard-0");
  s0.set_address("127.0.0.1:1234");
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->RegisterShard(contoso_op_, s0).status()));
  auto map = catalog_->RegisterShard(Caller::Internal(), s0);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->shards_size(), 1);
  EXPECT_EQ(map->revision(), catalog_->revision());
  s0.set_address("127.0.0.1:999");
  map = catalog_->RegisterShard(Caller::Internal(), s0);
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(map->shards_size(), 1);
  EXPECT_EQ(catalog_->GetShardMap(platform_)->shards(0).address(),
            "127.0.0.1:999");
  EXPECT_EQ(catalog_->GetShardMap(Caller::Internal())->virtual_nodes(), 64u);
}

TEST_F(CatalogTest, ImagesDeploymentsAndOsReleases) {
  v1::Image app;
  app.set_id(crypto::HexEncode(crypto::Sha256("app package")));
  app.set_tenant_id(contoso_.id());
  app.set_component("dw100-app");
  app.set_version(3);
  app.set_kind(v1::IMAGE_KIND_APPLICATION);
  app.set_image_hash(crypto::Sha256("app image"));
  ASSERT_TRUE(catalog_->RecordImage(contoso_op_, app).ok());
  // Fabrikam cannot record images for Contoso or deploy Contoso's image.
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->RecordImage(fabrikam_op_, app).status()));
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id(GroupId(fab_product_, "Production"));
  dep.add_image_ids(app.id());
  EXPECT_TRUE(
      absl::IsNotFound(catalog_->CreateDeployment(fabrikam_op_, dep).status()));
  dep.set_device_group_id("DW100/Production");
  auto d = catalog_->CreateDeployment(contoso_op_, dep);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->create_revision(), catalog_->revision());
  EXPECT_EQ(catalog_->ListDeployments(contoso_op_, {})->deployments_size(), 1);

  v1::Image os = app;
  os.set_id(crypto::HexEncode(crypto::Sha256("os package")));
  os.clear_tenant_id();
  os.set_kind(v1::IMAGE_KIND_KERNEL);
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->RecordImage(contoso_op_, os).status()));
  ASSERT_TRUE(catalog_->RecordImage(platform_, os).ok());
  v1::ReleaseOsRequest rel;
  rel.set_feed(v1::RETAIL);
  rel.set_version("24.10");
  rel.add_image_ids(os.id());
  ASSERT_TRUE(catalog_->ReleaseOs(platform_, rel).ok());
  EXPECT_TRUE(
      absl::IsAlreadyExists(catalog_->ReleaseOs(platform_, rel).status()));
  rel.set_version("24.11");
  rel.set_image_ids(0, app.id());  // an app image is not an OS component
  EXPECT_TRUE(
      absl::IsInvalidArgument(catalog_->ReleaseOs(platform_, rel).status()));
}

// RecordOsImage records a platform OS component image (as the image pipeline
// would after verifying its platform signature).
v1::Image RecordOsImage(Catalog* catalog, const std::string& component,
                        v1::ImageKind kind, uint32_t version) {
  v1::Image os;
  const std::string tag = absl::StrCat(component, "/", version);
  os.set_id(crypto::HexEncode(crypto::Sha256(tag)));
  os.set_component(component);
  os.set_version(version);
  os.set_kind(kind);
  os.set_image_hash(crypto::Sha256(tag));
  auto r = catalog->RecordImage(Caller::PlatformOperator(), os);
  EXPECT_TRUE(r.ok()) << r.status();
  return os;
}

TEST_F(CatalogTest, OsReleaseRecordsItsRevisionAndEmitsIt) {
  auto w = Follow(platform_, catalog_->revision() + 1);
  v1::Image kernel =
      RecordOsImage(catalog_.get(), "kernel", v1::IMAGE_KIND_KERNEL, 2);
  v1::ReleaseOsRequest rel;
  rel.set_feed(v1::RETAIL_EVAL);
  rel.set_version("2");
  rel.add_image_ids(kernel.id());
  auto r = catalog_->ReleaseOs(platform_, rel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->create_revision(), catalog_->revision());
  ASSERT_FALSE(w->events.empty());
  EXPECT_EQ(w->events.back().os_release().SerializeAsString(),
            r->SerializeAsString());
}

TEST_F(CatalogTest, Attack_TenantCannotReleaseOs) {
  v1::Image kernel =
      RecordOsImage(catalog_.get(), "kernel", v1::IMAGE_KIND_KERNEL, 2);
  const std::string before = Dump();
  v1::ReleaseOsRequest rel;
  rel.set_feed(v1::RETAIL);
  rel.set_version("2");
  rel.add_image_ids(kernel.id());
  auto r = catalog_->ReleaseOs(contoso_op_, rel);
  EXPECT_TRUE(absl::IsPermissionDenied(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("needs a platform-operator credential"));
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, Attack_OlderOsReleaseOnAFeedIsRefused) {
  v1::Image k1 =
      RecordOsImage(catalog_.get(), "kernel", v1::IMAGE_KIND_KERNEL, 1);
  v1::Image s1 = RecordOsImage(catalog_.get(), "os-services",
                               v1::IMAGE_KIND_OS_SERVICES, 1);
  v1::Image k2 =
      RecordOsImage(catalog_.get(), "kernel", v1::IMAGE_KIND_KERNEL, 2);
  v1::Image s2 = RecordOsImage(catalog_.get(), "os-services",
                               v1::IMAGE_KIND_OS_SERVICES, 2);
  auto release = [&](v1::OsFeed feed, const std::string& version,
                     std::vector<v1::Image> images) {
    v1::ReleaseOsRequest rel;
    rel.set_feed(feed);
    rel.set_version(version);
    for (const auto& i : images) rel.add_image_ids(i.id());
    return catalog_->ReleaseOs(platform_, rel);
  };
  ASSERT_TRUE(release(v1::RETAIL_EVAL, "2", {k2, s2}).ok());
  const std::string before = Dump();

  // "3" names a newer release but ships the version-1 kernel: a rollback.
  auto older = release(v1::RETAIL_EVAL, "3", {k1, s2});
  EXPECT_TRUE(absl::IsFailedPrecondition(older.status())) << older.status();
  EXPECT_THAT(std::string(older.status().message()),
              HasSubstr("would roll back kernel on feed RETAIL_EVAL from "
                        "version 2 (released in OS 2) to 1"));
  // A partial release cannot sneak an old component past the rule either.
  auto partial = release(v1::RETAIL_EVAL, "4", {s1});
  EXPECT_TRUE(absl::IsFailedPrecondition(partial.status())) << partial.status();
  // The same image twice in one release is malformed.
  auto twice = release(v1::RETAIL_EVAL, "5", {k2, k2});
  EXPECT_TRUE(absl::IsInvalidArgument(twice.status())) << twice.status();
  EXPECT_EQ(Dump(), before);

  // Feeds are independent: Retail has not shipped version 2 yet.
  EXPECT_TRUE(release(v1::RETAIL, "1", {k1, s1}).ok());
  // Re-releasing the same components under a new version is no rollback.
  EXPECT_TRUE(release(v1::RETAIL_EVAL, "2.1", {k2, s2}).ok());
}

TEST_F(CatalogTest, OperatorCredentialCarriesTenantClaim) {
  auto key = crypto::EcPrivateKey::Generate();
  auto pem = catalog_->IssueOperatorCredential(platform_, "Contoso", "alice",
                                               key.PublicKey());
  ASSERT_TRUE(pem.ok()) << pem.status();
  auto cert = crypto::ParseCertificate(*pem);
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->claims.tenant_id, contoso_.id());
  EXPECT_TRUE(cert->client_auth);
  EXPECT_TRUE(
      crypto::VerifyChain(*pem, "", root_pem_, clock_.Now(), true).ok());
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_
          ->IssueOperatorCredential(contoso_op_, "Contoso", "mallory",
                                    key.PublicKey())
          .status()));
}

// ---- Issue 8: limits, tenant-bound images, quotas, leaks ------------------

v1::Image AppImage(const std::string& tenant_id, const std::string& component,
                   uint32_t version, const std::string& bytes,
                   uint64_t size = 4096) {
  v1::Image app;
  app.set_id(crypto::HexEncode(crypto::Sha256(bytes)));
  app.set_tenant_id(tenant_id);
  app.set_component(component);
  app.set_version(version);
  app.set_kind(v1::IMAGE_KIND_APPLICATION);
  app.set_image_hash(crypto::Sha256(bytes));
  app.set_size(size);
  return app;
}

// Hole 1: ~127k copies of one image id committed, and the Watch event was
// larger than the 8 MiB channel limit: every follower stopped for good.
TEST_F(CatalogTest, Attack_DeploymentWith127kDuplicateImageIdsIsRefused) {
  v1::Image app = AppImage(contoso_.id(), "app:dw100", 1, "dw100 v1");
  ASSERT_TRUE(catalog_->RecordImage(contoso_op_, app).ok());
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Production");
  for (int i = 0; i < 127000; ++i) dep.add_image_ids(app.id());
  auto r = catalog_->CreateDeployment(contoso_op_, dep);
  ASSERT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("image_ids"));
  EXPECT_THAT(r.status().message(), HasSubstr("the limit is 32"));
  EXPECT_EQ(catalog_->revision(), revision);
  EXPECT_EQ(Dump(), before);
}

TEST_F(CatalogTest, DeploymentDropsRepeatedImageIds) {
  v1::Image app = AppImage(contoso_.id(), "app:dw100", 1, "dw100 v1");
  ASSERT_TRUE(catalog_->RecordImage(contoso_op_, app).ok());
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Production");
  for (int i = 0; i < 3; ++i) dep.add_image_ids(app.id());
  auto r = catalog_->CreateDeployment(contoso_op_, dep);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->image_ids_size(), 1);
}

// Hole 8: a failed CreateDeployment could still commit.
TEST_F(CatalogTest, Attack_FailedCreateDeploymentChangesNothing) {
  v1::Image app = AppImage(contoso_.id(), "app:dw100", 1, "dw100 v1");
  ASSERT_TRUE(catalog_->RecordImage(contoso_op_, app).ok());
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Production");
  dep.add_image_ids(app.id());
  dep.add_image_ids(crypto::HexEncode(crypto::Sha256("never uploaded")));
  EXPECT_TRUE(
      absl::IsNotFound(catalog_->CreateDeployment(contoso_op_, dep).status()));
  dep.set_image_ids(1, "\x1b[2J not an id");
  auto bad = catalog_->CreateDeployment(contoso_op_, dep);
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_EQ(std::string(bad.status().message()).find('\x1b'),
            std::string::npos);
  EXPECT_EQ(catalog_->revision(), revision);
  EXPECT_EQ(Dump(), before);
}

// Hole 6: a 7.9 MB tenant_id was echoed into every error (and log line).
TEST_F(CatalogTest, Attack_HugeTenantIdIsRefusedWithoutEcho) {
  const std::string before = Dump();
  const std::string huge(7900000, 'T');
  auto t = catalog_->GetTenant(platform_, huge);
  ASSERT_TRUE(absl::IsInvalidArgument(t.status())) << t.status().code();
  EXPECT_LT(t.status().message().size(), 200u);
  EXPECT_THAT(t.status().message(), HasSubstr("the limit is"));
  auto p = catalog_->CreateProduct(platform_, huge, "DW200", "");
  EXPECT_TRUE(absl::IsInvalidArgument(p.status()));
  EXPECT_LT(p.status().message().size(), 200u);
  auto own = catalog_->GetProduct(contoso_op_, "", huge);
  EXPECT_TRUE(absl::IsInvalidArgument(own.status()));
  EXPECT_LT(own.status().message().size(), 200u);
  EXPECT_EQ(Dump(), before);
}

// Hole 7: ESC codes reached the platform operator's terminal.
TEST_F(CatalogTest, Attack_ControlCharactersInIdsAreRefusedAndNotEchoed) {
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  for (const std::string component :
       {std::string("app:\x1b]0;pwned\a"), std::string("app:x\0y", 7),
        std::string("app:../../etc"), std::string(1 << 20, 'a')}) {
    v1::Image img = AppImage(contoso_.id(), component, 1, component);
    auto r = catalog_->RecordImage(contoso_op_, img);
    ASSERT_TRUE(absl::IsInvalidArgument(r.status()));
    EXPECT_EQ(std::string(r.status().message()).find('\x1b'),
              std::string::npos);
    EXPECT_EQ(std::string(r.status().message()).find('\0'), std::string::npos);
    EXPECT_LT(r.status().message().size(), 300u);
  }
  auto p = catalog_->CreateProduct(contoso_op_, "", "DW\x1b[31m", "");
  ASSERT_TRUE(absl::IsInvalidArgument(p.status()));
  EXPECT_EQ(std::string(p.status().message()).find('\x1b'), std::string::npos);
  auto g = catalog_->RevokeDevice(contoso_op_, "", ImportOne(77), "\x1b[2J");
  EXPECT_TRUE(absl::IsInvalidArgument(g.status()));
  EXPECT_EQ(catalog_->revision(), revision + 1);  // only the import
}

// Hole 3: a byte-identical upload by another tenant first made the owner's
// own upload fail with ALREADY_EXISTS.
TEST_F(CatalogTest, Attack_OtherTenantUploadsIdenticalBytesFirst) {
  v1::Image theirs = AppImage(fabrikam_.id(), "app:dw100", 1, "dw100 v1");
  ASSERT_TRUE(catalog_->RecordImage(fabrikam_op_, theirs).ok());
  v1::Image mine = AppImage(contoso_.id(), "app:dw100", 1, "dw100 v1");
  ASSERT_EQ(mine.id(), theirs.id());
  auto r = catalog_->RecordImage(contoso_op_, mine);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tenant_id(), contoso_.id());
  auto contoso_images = catalog_->ListImages(contoso_op_, {});
  ASSERT_TRUE(contoso_images.ok());
  ASSERT_EQ(contoso_images->images_size(), 1);
  EXPECT_EQ(contoso_images->images(0).tenant_id(), contoso_.id());
  EXPECT_EQ(catalog_->ListImages(fabrikam_op_, {})->images_size(), 1);
  EXPECT_EQ(catalog_->ListImages(platform_, {})->images_size(), 2);
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Production");
  dep.add_image_ids(mine.id());
  EXPECT_TRUE(catalog_->CreateDeployment(contoso_op_, dep).ok());
}

// Hole 3: Evil's "app:dw100" v999 must not become part of Contoso's fleet.
TEST_F(CatalogTest, Attack_OtherTenantAppWithSameComponentName) {
  v1::Image evil = AppImage(fabrikam_.id(), "app:dw100", 999, "evil v999");
  ASSERT_TRUE(catalog_->RecordImage(fabrikam_op_, evil).ok());
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Production");
  dep.add_image_ids(evil.id());
  auto r = catalog_->CreateDeployment(contoso_op_, dep);
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), Not(HasSubstr("Fabrikam")));
  EXPECT_EQ(catalog_->revision(), revision);
  EXPECT_EQ(Dump(), before);
  // Contoso's own app of that component name records and deploys normally.
  v1::Image mine = AppImage(contoso_.id(), "app:dw100", 1, "dw100 v1");
  ASSERT_TRUE(catalog_->RecordImage(contoso_op_, mine).ok());
  dep.set_image_ids(0, mine.id());
  EXPECT_TRUE(catalog_->CreateDeployment(contoso_op_, dep).ok());
}

// Hole 6: 15 uploads of 8 MB grew the image store by 120 MB in 5 s.
TEST_F(CatalogTest, Attack_ImageQuotaPerTenantCountAndBytes) {
  CatalogOptions options;
  options.max_images_per_tenant = 2;
  options.max_image_bytes_per_tenant = 10000;
  catalog_.reset();
  catalog_ = OpenCatalog(options);
  v1::Image a = AppImage(contoso_.id(), "app:a", 1, "a", 4000);
  v1::Image b = AppImage(contoso_.id(), "app:b", 1, "b", 4000);
  ASSERT_TRUE(catalog_->RecordImage(contoso_op_, a).ok());
  // Bytes: 4000 + 7000 > 10000.
  v1::Image big = AppImage(contoso_.id(), "app:big", 1, "big", 7000);
  std::string before = Dump();
  int64_t revision = catalog_->revision();
  auto r = catalog_->RecordImage(contoso_op_, big);
  ASSERT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("quota is 10000 bytes"));
  EXPECT_TRUE(absl::IsResourceExhausted(
      catalog_->CheckImageQuota(contoso_op_, "", 7000)));
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
  // Count: a third image is refused, a re-upload of a held one is free.
  ASSERT_TRUE(catalog_->RecordImage(contoso_op_, b).ok());
  before = Dump();
  revision = catalog_->revision();
  v1::Image c = AppImage(contoso_.id(), "app:c", 1, "c", 10);
  r = catalog_->RecordImage(contoso_op_, c);
  ASSERT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("quota is 2 images"));
  EXPECT_TRUE(catalog_->RecordImage(contoso_op_, a).ok());
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
  // Another tenant's quota is its own.
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->RecordImage(fabrikam_op_, c).status()));  // Contoso's
  v1::Image fc = AppImage(fabrikam_.id(), "app:c", 1, "c", 10);
  EXPECT_TRUE(catalog_->RecordImage(fabrikam_op_, fc).ok());
  // Oversized packages are refused before any work.
  EXPECT_TRUE(absl::IsInvalidArgument(catalog_->CheckImageQuota(
      fabrikam_op_, "", limits::kMaxImagePackageBytes + 1)));
}

// Hole 8: tenants could read the shard map.
TEST_F(CatalogTest, Attack_TenantCannotReadShardMap) {
  v1::Shard s0;
  s0.set_id("shard-0");
  s0.set_address("10.0.0.1:443");
  ASSERT_TRUE(catalog_->RegisterShard(Caller::Internal(), s0).ok());
  auto map = catalog_->GetShardMap(contoso_op_);
  EXPECT_TRUE(absl::IsPermissionDenied(map.status())) << map.status();
  EXPECT_THAT(map.status().message(), Not(HasSubstr("10.0.0.1")));
  EXPECT_TRUE(catalog_->GetShardMap(platform_).ok());
  EXPECT_TRUE(catalog_->GetShardMap(Caller::Internal()).ok());
}

// Hole 8: operator errors revealed whether a device exists, is unclaimed or
// belongs to someone else.
TEST_F(CatalogTest, Attack_OperatorErrorsDoNotRevealOtherDevices) {
  const std::string unclaimed = ImportOne(31);
  const std::string contosos = ImportOne(32);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", contosos).ok());
  const std::string missing = DeviceIdForKey(FakeDeviceKey(33));
  const std::string before = Dump();
  auto answer = [&](const std::string& id) {
    absl::Status s = catalog_->GetDevice(fabrikam_op_, "", id).status();
    return std::make_pair(s.code(),
                          absl::StrReplaceAll(s.message(), {{id, "<id>"}}));
  };
  EXPECT_EQ(answer(missing).first, absl::StatusCode::kNotFound);
  EXPECT_EQ(answer(unclaimed), answer(missing));
  EXPECT_EQ(answer(contosos), answer(missing));
  for (const std::string& id : {unclaimed, contosos, missing}) {
    EXPECT_TRUE(absl::IsNotFound(
        catalog_->AssignDevice(fabrikam_op_, "", id, "F1/Production")
            .status()));
    EXPECT_TRUE(absl::IsNotFound(
        catalog_->RevokeDevice(fabrikam_op_, "", id, "x").status()));
    EXPECT_TRUE(absl::IsFailedPrecondition(
        catalog_->AcceptDeviceTransfer(fabrikam_op_, "", id).status()));
  }
  EXPECT_EQ(Dump(), before);
}

// Found by fuzz/catalog_records_fuzzer: a store whose change log lacks the
// entries up to the catalog's revision (damaged or tampered on disk) made
// WatchStream::Next spin forever in replay. It must fail with DataLoss and
// change nothing.
TEST_F(CatalogTest, Fault_WatchReplayOverLogMissingEntriesFailsWithDataLoss) {
  const int64_t revision = catalog_->revision();
  ASSERT_GE(revision, 2);
  std::string log_key = std::to_string(revision);  // "%020d", as the log's
  log_key.insert(0, 20 - log_key.size(), '0');
  ASSERT_TRUE(store_->Delete("log", log_key).ok());
  const std::string before = Dump();

  auto stream = catalog_->OpenWatch(Caller::Internal(), 1, {});
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::vector<v1::WatchEvent> events;
  absl::Status s;
  // The first pages replay what is there; then the stream must end.
  for (int page = 0; page < 100 && s.ok(); ++page) {
    s = (*stream)->Next(1000, &events);
  }
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("revision ", revision)));
  EXPECT_EQ(events.size(), static_cast<size_t>(revision - 1));
  EXPECT_EQ(catalog_->revision(), revision);
}

// ---- Deletes
// ------------------------------------------------------------------

// AppImage records a Contoso application image named by `tag`.
v1::Image RecordAppImage(Catalog* catalog, const Caller& op,
                         const std::string& tenant_id, const std::string& tag) {
  v1::Image app;
  app.set_id(crypto::HexEncode(crypto::Sha256(tag)));
  app.set_tenant_id(tenant_id);
  app.set_component("dw100-app");
  app.set_version(1);
  app.set_kind(v1::IMAGE_KIND_APPLICATION);
  app.set_image_hash(crypto::Sha256(tag + " image"));
  auto r = catalog->RecordImage(op, app);
  EXPECT_TRUE(r.ok()) << r.status();
  return app;
}

TEST_F(CatalogTest, DeleteProductRemovesItAndItsEmptyGroupsWithEvents) {
  auto watch = Follow(platform_, catalog_->revision() + 1);
  auto p = catalog_->CreateProduct(contoso_op_, "", "DW200", "");
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string group = GroupId(*p, "Production");
  const size_t before = watch->events.size();
  ASSERT_TRUE(catalog_->DeleteProduct(contoso_op_, "", "DW200").ok());
  EXPECT_TRUE(absl::IsNotFound(
      catalog_->GetProduct(contoso_op_, "", p->id()).status()));
  EXPECT_TRUE(absl::IsNotFound(
      catalog_->GetDeviceGroup(contoso_op_, "", group).status()));
  // Five group deletions, then the product's, each its own revision.
  ASSERT_EQ(watch->events.size(), before + 6);
  int groups = 0;
  for (size_t i = before; i < watch->events.size(); ++i) {
    groups += !watch->events[i].deleted_device_group_id().empty();
  }
  EXPECT_EQ(groups, 5);
  EXPECT_EQ(watch->events.back().deleted_product_id(), p->id());
  EXPECT_EQ(watch->events.back().revision(), catalog_->revision());
}

TEST_F(CatalogTest, DeleteProductOrGroupInUseIsRefusedAndChangesNothing) {
  const std::string id = ImportOne(7001);
  ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
  ASSERT_TRUE(
      catalog_->AssignDevice(contoso_op_, "", id, "DW100/Production").ok());
  const std::string before = Dump();
  absl::Status s = catalog_->DeleteProduct(contoso_op_, "", "DW100");
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("still has devices"));
  s = catalog_->DeleteDeviceGroup(contoso_op_, "", "DW100/Production");
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr(id));
  // A group with a deployment is in use too.
  v1::Image app = RecordAppImage(catalog_.get(), contoso_op_, contoso_.id(),
                                 "delete-in-use");
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Development");
  dep.add_image_ids(app.id());
  auto d = catalog_->CreateDeployment(contoso_op_, dep);
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string with_deployment = Dump();
  s = catalog_->DeleteDeviceGroup(contoso_op_, "", "DW100/Development");
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("deployment delete"));
  // So is the image the deployment names.
  s = catalog_->DeleteImage(contoso_op_, "", app.id());
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr(d->id()));
  EXPECT_EQ(Dump(), with_deployment);
  // Once the deployment is gone, the group and the image can go.
  ASSERT_TRUE(catalog_->DeleteDeployment(contoso_op_, "", d->id()).ok());
  EXPECT_EQ(catalog_->ListDeployments(contoso_op_, {})->deployments_size(), 0);
  EXPECT_TRUE(catalog_->DeleteImage(contoso_op_, "", app.id()).ok());
  EXPECT_TRUE(
      catalog_->DeleteDeviceGroup(contoso_op_, "", "DW100/Development").ok());
  (void)before;
}

TEST_F(CatalogTest, Attack_DeleteOfAnotherTenantsObjectsIsNotFound) {
  v1::Image app = RecordAppImage(catalog_.get(), contoso_op_, contoso_.id(),
                                 "contoso-only");
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Development");
  dep.add_image_ids(app.id());
  auto d = catalog_->CreateDeployment(contoso_op_, dep);
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string group = GroupId(dw100_, "Field Test");
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  for (const absl::Status& s :
       {catalog_->DeleteProduct(fabrikam_op_, "", dw100_.id()),
        catalog_->DeleteDeviceGroup(fabrikam_op_, "", group),
        catalog_->DeleteDeployment(fabrikam_op_, "", d->id()),
        catalog_->DeleteImage(fabrikam_op_, "", app.id()),
        catalog_->DeleteImage(fabrikam_op_, "", std::string(64, 'a'))}) {
    EXPECT_TRUE(absl::IsNotFound(s)) << s;
    EXPECT_THAT(s.message(), Not(HasSubstr("Contoso")));
  }
  // Naming Contoso explicitly with Fabrikam's credential is denied as before.
  EXPECT_TRUE(absl::IsPermissionDenied(
      catalog_->DeleteProduct(fabrikam_op_, contoso_.id(), "DW100")));
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
}

TEST_F(CatalogTest, DeleteDeploymentReemitsTheGroupsPreviousDeployment) {
  v1::Image a = RecordAppImage(catalog_.get(), contoso_op_, contoso_.id(), "a");
  v1::Image b = RecordAppImage(catalog_.get(), contoso_op_, contoso_.id(), "b");
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Production");
  dep.add_image_ids(a.id());
  auto first = catalog_->CreateDeployment(contoso_op_, dep);
  ASSERT_TRUE(first.ok());
  dep.set_image_ids(0, b.id());
  auto second = catalog_->CreateDeployment(contoso_op_, dep);
  ASSERT_TRUE(second.ok());
  auto watch = Follow(platform_, catalog_->revision() + 1);
  ASSERT_TRUE(catalog_->DeleteDeployment(contoso_op_, "", second->id()).ok());
  ASSERT_EQ(watch->events.size(), 2u);
  EXPECT_EQ(watch->events[0].deleted_deployment_id(), second->id());
  EXPECT_EQ(watch->events[1].deployment().id(), first->id());
  // A second delete of the same deployment: NotFound, nothing emitted.
  EXPECT_TRUE(absl::IsNotFound(
      catalog_->DeleteDeployment(contoso_op_, "", second->id())));
  EXPECT_EQ(watch->events.size(), 2u);
}

TEST_F(CatalogTest, ReleasedOsImageCannotBeDeleted) {
  v1::Image os =
      RecordOsImage(catalog_.get(), "kernel", v1::IMAGE_KIND_KERNEL, 5);
  v1::ReleaseOsRequest rel;
  rel.set_feed(v1::RETAIL_EVAL);
  rel.set_version("5");
  rel.add_image_ids(os.id());
  ASSERT_TRUE(catalog_->ReleaseOs(platform_, rel).ok());
  const std::string before = Dump();
  absl::Status s = catalog_->DeleteImage(platform_, "", os.id());
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("OS release 5"));
  // Tenants cannot see platform images to delete them.
  EXPECT_TRUE(
      absl::IsNotFound(catalog_->DeleteImage(contoso_op_, "", os.id())));
  EXPECT_EQ(Dump(), before);
}

// ---- Tenant names ignoring case, tenant-keyed records, server-side paging --

TEST_F(CatalogTest, TenantNamesAreUniqueAndFoundIgnoringCase) {
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  // "contoso" is "Contoso": refused, nothing changed.
  auto again = catalog_->CreateTenant(platform_, "contoso");
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
  EXPECT_THAT(again.status().message(), HasSubstr("Contoso"));
  EXPECT_TRUE(absl::IsAlreadyExists(
      catalog_->CreateTenant(platform_, "CONTOSO").status()));
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
  // Looked up ignoring case, by platform and tenant operators alike.
  for (const char* name : {"Contoso", "contoso", "CONTOSO", "cOnToSo"}) {
    auto t = catalog_->GetTenant(platform_, name);
    ASSERT_TRUE(t.ok()) << name << ": " << t.status();
    EXPECT_EQ(t->id(), contoso_.id()) << name;
    auto own = catalog_->GetTenant(contoso_op_, name);
    ASSERT_TRUE(own.ok()) << name << ": " << own.status();
    EXPECT_EQ(own->id(), contoso_.id());
  }
  // Other references by name follow the same rule.
  auto product = catalog_->GetProduct(platform_, "contoso", "dw100");
  ASSERT_TRUE(product.ok()) << product.status();
  EXPECT_EQ(product->id(), dw100_.id());
  auto group =
      catalog_->GetDeviceGroup(platform_, "CONTOSO", "dw100/field test");
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ(group->name(), "Field Test");
  // A deleted product frees its name (the index goes with it).
  ASSERT_TRUE(catalog_->CreateProduct(contoso_op_, "", "Temp", "").ok());
  EXPECT_TRUE(absl::IsAlreadyExists(
      catalog_->CreateProduct(contoso_op_, "", "TEMP", "").status()));
  ASSERT_TRUE(catalog_->DeleteProduct(contoso_op_, "", "temp").ok());
  EXPECT_TRUE(catalog_->CreateProduct(contoso_op_, "", "TEMP", "").ok());
}

TEST_F(CatalogTest, RecordsAreKeyedByTenantThenProduct) {
  v1::Image app;
  app.set_id(crypto::HexEncode(crypto::Sha256("keyed app")));
  app.set_tenant_id(contoso_.id());
  app.set_component("app");
  app.set_kind(v1::IMAGE_KIND_APPLICATION);
  app.set_image_hash(crypto::Sha256("keyed app image"));
  ASSERT_TRUE(catalog_->RecordImage(contoso_op_, app).ok());
  v1::CreateDeploymentRequest dep;
  dep.set_device_group_id("DW100/Production");
  dep.add_image_ids(app.id());
  auto d = catalog_->CreateDeployment(contoso_op_, dep);
  ASSERT_TRUE(d.ok()) << d.status();
  auto keys = [&](const char* cf) {
    std::vector<std::string> out;
    EXPECT_TRUE(store_
                    ->Scan(cf, "",
                           [&](absl::string_view k, absl::string_view) {
                             out.emplace_back(k);
                             return true;
                           })
                    .ok());
    return out;
  };
  for (const std::string& k : keys("products")) {
    EXPECT_TRUE(absl::StartsWith(k, contoso_.id() + "/") ||
                absl::StartsWith(k, fabrikam_.id() + "/"))
        << k;
  }
  for (const std::string& k : keys("groups")) {
    EXPECT_TRUE(
        absl::StartsWith(k, contoso_.id() + "/" + dw100_.id() + "/") ||
        absl::StartsWith(k, fabrikam_.id() + "/" + fab_product_.id() + "/"))
        << k;
  }
  EXPECT_THAT(keys("deployments"),
              ::testing::ElementsAre(absl::StrCat(
                  contoso_.id(), "/", d->device_group_id(), "/", d->id())));
}

// PagedIds pages through one List with `page_size` and returns every id,
// in order, calling `between` after each page.
template <typename Response, typename Request, typename Call, typename Items>
std::vector<std::string> PagedIds(Request req, uint32_t page_size, Call call,
                                  Items items,
                                  const std::function<void()>& between) {
  std::vector<std::string> ids;
  req.set_page_size(page_size);
  for (int pages = 0; pages < 10000; ++pages) {
    absl::StatusOr<Response> r = call(req);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) break;
    for (const auto& item : items(*r)) ids.push_back(item.id());
    if (r->next_page_token().empty()) break;
    req.set_page_token(r->next_page_token());
    between();
  }
  return ids;
}

// ExactlyOnce: every id of `before` appears exactly once in `seen`, and
// nothing appears twice.
void ExpectExactlyOnce(const std::vector<std::string>& before,
                       const std::vector<std::string>& seen) {
  std::map<std::string, int> count;
  for (const std::string& id : seen) ++count[id];
  for (const auto& [id, n] : count) EXPECT_EQ(n, 1) << id << " listed twice";
  for (const std::string& id : before) {
    EXPECT_EQ(count[id], 1) << id << " missing from the listing";
  }
}

TEST_F(CatalogTest, EveryListPagesEachRecordExactlyOnceUnderConcurrentInserts) {
  // Records that exist for the whole listing.
  std::vector<std::string> tenants = {contoso_.id(), fabrikam_.id()};
  std::vector<std::string> products = {dw100_.id()};
  std::vector<std::string> devices;
  for (int i = 0; i < 12; ++i) {
    tenants.push_back(
        catalog_->CreateTenant(platform_, absl::StrCat("T", i))->id());
    products.push_back(
        catalog_->CreateProduct(contoso_op_, "", absl::StrCat("P", i), "")
            ->id());
    devices.push_back(ImportOne(9000 + i));
    ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", devices.back()).ok());
  }
  v1::ListDeviceGroupsRequest all_groups;
  std::vector<std::string> groups = PagedIds<v1::ListDeviceGroupsResponse>(
      all_groups, 1000,
      [&](const auto& r) { return catalog_->ListDeviceGroups(contoso_op_, r); },
      [](const auto& r) { return r.groups(); }, [] {});
  ASSERT_EQ(groups.size(), 5u * products.size());

  // While each listing pages, another thread inserts a bounded number of
  // records of the same kinds (so the listing ends); the listing must still
  // hold every old record exactly once.
  int next = 0;
  const auto concurrently = [&](const std::function<void()>& list) {
    const int first = next;
    next += 8;
    std::thread writer([&, first] {
      for (int n = first; n < first + 8; ++n) {
        EXPECT_TRUE(
            catalog_->CreateTenant(platform_, absl::StrCat("New", n)).ok());
        EXPECT_TRUE(
            catalog_->CreateProduct(contoso_op_, "", absl::StrCat("NP", n), "")
                .ok());
        const std::string d = ImportOne(20000 + n);
        EXPECT_TRUE(catalog_->ClaimDevice(contoso_op_, "", d).ok());
      }
    });
    list();
    writer.join();
  };
  const auto none = [] {};
  for (uint32_t page_size : {1u, 3u, 7u}) {
    concurrently([&] {
      ExpectExactlyOnce(tenants,
                        PagedIds<v1::ListTenantsResponse>(
                            v1::ListTenantsRequest(), page_size,
                            [&](const auto& r) {
                              return catalog_->ListTenants(platform_, r);
                            },
                            [](const auto& r) { return r.tenants(); }, none));
    });
    concurrently([&] {
      ExpectExactlyOnce(products,
                        PagedIds<v1::ListProductsResponse>(
                            v1::ListProductsRequest(), page_size,
                            [&](const auto& r) {
                              return catalog_->ListProducts(contoso_op_, r);
                            },
                            [](const auto& r) { return r.products(); }, none));
    });
    concurrently([&] {
      ExpectExactlyOnce(groups,
                        PagedIds<v1::ListDeviceGroupsResponse>(
                            v1::ListDeviceGroupsRequest(), page_size,
                            [&](const auto& r) {
                              return catalog_->ListDeviceGroups(contoso_op_, r);
                            },
                            [](const auto& r) { return r.groups(); }, none));
    });
    concurrently([&] {
      ExpectExactlyOnce(devices,
                        PagedIds<v1::ListDevicesResponse>(
                            v1::ListDevicesRequest(), page_size,
                            [&](const auto& r) {
                              return catalog_->ListDevices(contoso_op_, r);
                            },
                            [](const auto& r) { return r.devices(); }, none));
    });
  }
  // Every listing is a tenant's own: Fabrikam sees none of Contoso's.
  auto fab = catalog_->ListProducts(fabrikam_op_, {});
  ASSERT_TRUE(fab.ok());
  ASSERT_EQ(fab->products_size(), 1);
  EXPECT_EQ(fab->products(0).id(), fab_product_.id());
}

TEST_F(CatalogTest, ListPageSizeHasADefaultAndAMaximum) {
  std::vector<v1::FactoryDevice> batch(1100);
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i].set_public_key(FakeDeviceKey(30000 + static_cast<int>(i)));
  }
  ASSERT_TRUE(catalog_->ImportDevices(platform_, batch).ok());
  for (const v1::FactoryDevice& d : batch) {
    ASSERT_TRUE(
        catalog_->ClaimDevice(contoso_op_, "", DeviceIdForKey(d.public_key()))
            .ok());
  }
  v1::ListDevicesRequest req;
  auto first = catalog_->ListDevices(contoso_op_, req);  // page_size 0
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->devices_size(), 100);
  EXPECT_FALSE(first->next_page_token().empty());
  req.set_page_size(1000000);
  auto big = catalog_->ListDevices(contoso_op_, req);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->devices_size(), 1000);
  req.set_page_token(big->next_page_token());
  auto rest = catalog_->ListDevices(contoso_op_, req);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->devices_size(), 100);
  EXPECT_TRUE(rest->next_page_token().empty());
}

TEST_F(CatalogTest, Attack_MalformedOrForeignPageTokenIsRefused) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        catalog_->CreateProduct(contoso_op_, "", absl::StrCat("X", i), "")
            .ok());
    ASSERT_TRUE(
        catalog_->CreateProduct(fabrikam_op_, "", absl::StrCat("Y", i), "")
            .ok());
  }
  v1::ListProductsRequest req;
  req.set_page_size(1);
  auto page = catalog_->ListProducts(contoso_op_, req);
  ASSERT_TRUE(page.ok());
  const std::string contoso_token = page->next_page_token();
  ASSERT_FALSE(contoso_token.empty());
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  auto refused = [&](const absl::Status& s, const std::string& what) {
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << what << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr("page token")) << what;
  };
  // Malformed: not base64, base64 of garbage, too long, truncated.
  for (const std::string& bad :
       {std::string("not a token!"), std::string("Zm9vYmFy"),
        std::string(5000, 'A'),
        contoso_token.substr(0, contoso_token.size() / 2)}) {
    req.set_page_token(bad);
    refused(catalog_->ListProducts(contoso_op_, req).status(), bad);
  }
  // Foreign: Contoso's products token used by Fabrikam, by the platform for
  // Fabrikam, and for another listing (groups, devices, tenants, images).
  req.set_page_token(contoso_token);
  refused(catalog_->ListProducts(fabrikam_op_, req).status(), "fabrikam");
  req.set_tenant_id("Fabrikam");
  refused(catalog_->ListProducts(platform_, req).status(), "platform");
  v1::ListDeviceGroupsRequest groups;
  groups.set_page_token(contoso_token);
  refused(catalog_->ListDeviceGroups(contoso_op_, groups).status(), "groups");
  v1::ListDevicesRequest devices;
  devices.set_page_token(contoso_token);
  refused(catalog_->ListDevices(contoso_op_, devices).status(), "devices");
  v1::ListTenantsRequest tenants;
  tenants.set_page_token(contoso_token);
  refused(catalog_->ListTenants(platform_, tenants).status(), "tenants");
  v1::ListImagesRequest images;
  images.set_page_token(contoso_token);
  refused(catalog_->ListImages(contoso_op_, images).status(), "images");
  // Refused reads changed nothing.
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
  // A group-filtered devices token does not page the unfiltered listing.
  v1::ListDevicesRequest in_group;
  in_group.set_device_group_id("DW100/Production");
  in_group.set_page_size(1);
  for (int i = 0; i < 2; ++i) {
    const std::string id = ImportOne(40000 + i);
    ASSERT_TRUE(catalog_->ClaimDevice(contoso_op_, "", id).ok());
    ASSERT_TRUE(
        catalog_->AssignDevice(contoso_op_, "", id, "DW100/Production").ok());
  }
  auto grouped = catalog_->ListDevices(contoso_op_, in_group);
  ASSERT_TRUE(grouped.ok()) << grouped.status();
  ASSERT_FALSE(grouped->next_page_token().empty());
  devices.set_page_token(grouped->next_page_token());
  refused(catalog_->ListDevices(contoso_op_, devices).status(), "unfiltered");
  in_group.set_page_token(grouped->next_page_token());
  EXPECT_TRUE(catalog_->ListDevices(contoso_op_, in_group).ok());
  EXPECT_EQ(catalog_->ListProducts(contoso_op_, {})->products_size(), 4);
}

}  // namespace
}  // namespace sphere::management
