// Bulk claims (Catalog::ClaimDevices): one transaction, one revision and one
// claimed_devices event per batch; the batch is atomic, so a bad id refuses
// all of it and changes nothing.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/crypto/crypto.h"
#include "common/store/forwarding_store.h"
#include "common/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_test_support.h"

namespace sphere::management {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class CatalogClaimsTest : public CatalogFixture {
 protected:
  void SetUp() override {
    CatalogFixture::SetUp();
    if (HasFatalFailure()) return;
    dw100_ = *catalog_->CreateProduct(contoso_op_, "", "DW100", "dishwasher");
  }

  // Import registers devices first..first+n-1 and returns their ids.
  std::vector<std::string> Import(uint64_t first, size_t n) {
    return ImportFakeDevices(catalog_.get(), first, n);
  }

  // Events returns every change event after `after` (a replayed watch).
  std::vector<v1::WatchEvent> EventsAfter(int64_t after) {
    auto stream = catalog_->OpenWatch(Caller::Internal(), after + 1,
                                      Catalog::WatchOptions{});
    EXPECT_TRUE(stream.ok()) << stream.status();
    std::vector<v1::WatchEvent> events;
    if (!stream.ok()) return events;
    while (true) {
      const size_t before = events.size();
      EXPECT_TRUE((*stream)->Next(100, &events).ok());
      if (events.size() == before) break;
    }
    return events;
  }

  v1::Product dw100_;
};

TEST_F(CatalogClaimsTest, BatchIsOneRevisionOneEventAndJoinsTheGroup) {
  const std::vector<std::string> ids = Import(1, 50);
  const int64_t before = catalog_->revision();
  auto r = catalog_->ClaimDevices(contoso_op_, "", ids, "DW100/Field Test");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->claimed, 50u);
  EXPECT_EQ(r->already_claimed, 0u);
  EXPECT_EQ(catalog_->revision(), before + 1);
  EXPECT_EQ(r->revision, before + 1);

  auto group = catalog_->GetDeviceGroup(contoso_op_, "", "DW100/Field Test");
  ASSERT_TRUE(group.ok()) << group.status();
  // One event carries every claimed device, as stored.
  std::vector<v1::WatchEvent> events = EventsAfter(before);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].revision(), before + 1);
  ASSERT_TRUE(events[0].has_claimed_devices());
  ASSERT_EQ(events[0].claimed_devices().devices_size(), 50);
  for (int i = 0; i < 50; ++i) {
    const v1::Device& e = events[0].claimed_devices().devices(i);
    EXPECT_EQ(e.id(), ids[i]);
    auto stored = catalog_->GetDevice(contoso_op_, "", ids[i]);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->state(), v1::CLAIMED);
    EXPECT_EQ(stored->tenant_id(), contoso_.id());
    EXPECT_EQ(stored->device_group_id(), group->id());
    EXPECT_EQ(stored->product_id(), dw100_.id());
    EXPECT_EQ(stored->SerializeAsString(), e.SerializeAsString());
  }
  // The tenant and group indexes hold them: list by tenant and by group.
  v1::ListDevicesRequest list;
  list.set_page_size(1000);
  auto all = catalog_->ListDevices(contoso_op_, list);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->devices_size(), 50);
  list.set_device_group_id(group->id());
  auto in_group = catalog_->ListDevices(contoso_op_, list);
  ASSERT_TRUE(in_group.ok()) << in_group.status();
  EXPECT_EQ(in_group->devices_size(), 50);
  // A group is a group: the assigned devices keep it from being deleted.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      catalog_->DeleteDeviceGroup(contoso_op_, "", group->id())));
}

TEST_F(CatalogClaimsTest, WithoutAGroupDevicesAreClaimedUnassigned) {
  const std::vector<std::string> ids = Import(100, 3);
  auto r = catalog_->ClaimDevices(contoso_op_, contoso_.name(), ids, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->claimed, 3u);
  for (const std::string& id : ids) {
    auto d = catalog_->GetDevice(contoso_op_, "", id);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->state(), v1::CLAIMED);
    EXPECT_TRUE(d->device_group_id().empty());
    // A single claim of the same device now says it is already claimed.
    EXPECT_TRUE(absl::IsAlreadyExists(
        catalog_->ClaimDevice(contoso_op_, "", id).status()));
  }
}

TEST_F(CatalogClaimsTest, RetriedBatchCountsAlreadyClaimedAndChangesNothing) {
  const std::vector<std::string> ids = Import(200, 10);
  ASSERT_TRUE(
      catalog_->ClaimDevices(contoso_op_, "", ids, "DW100/Production").ok());
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  // The same batch again (a lost answer retried), into another group even:
  // devices the tenant owns are left as they are.
  auto again =
      catalog_->ClaimDevices(contoso_op_, "", ids, "DW100/Development");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->claimed, 0u);
  EXPECT_EQ(again->already_claimed, 10u);
  EXPECT_EQ(again->revision, revision);
  EXPECT_EQ(catalog_->revision(), revision);
  EXPECT_EQ(Dump(), before);

  // Half old, half new: only the new ones are claimed, in one revision.
  std::vector<std::string> mixed(ids.begin(), ids.begin() + 5);
  for (const std::string& id : Import(300, 5)) mixed.push_back(id);
  auto part = catalog_->ClaimDevices(contoso_op_, "", mixed, "");
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->claimed, 5u);
  EXPECT_EQ(part->already_claimed, 5u);
  EXPECT_EQ(catalog_->revision(), revision + 2);  // the import, the claim
}

TEST_F(CatalogClaimsTest, OneUnregisteredIdRefusesTheWholeBatch) {
  std::vector<std::string> ids = Import(400, 4);
  const std::string missing = DeviceIdForKey(FakeDeviceKey(999999));
  ids.insert(ids.begin() + 2, missing);
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  auto r = catalog_->ClaimDevices(contoso_op_, "", ids, "DW100/Production");
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(missing));
  EXPECT_THAT(r.status().message(), HasSubstr("nothing in this batch"));
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
  EXPECT_TRUE(EventsAfter(revision).empty());
}

TEST_F(CatalogClaimsTest, Attack_AnotherTenantsDeviceInABatchChangesNothing) {
  const std::vector<std::string> contoso_ids = Import(500, 2);
  ASSERT_TRUE(catalog_->ClaimDevices(contoso_op_, "", contoso_ids, "").ok());
  // Fabrikam slips one of Contoso's devices into a batch of its own.
  std::vector<std::string> batch = Import(600, 3);
  batch.insert(batch.begin() + 1, contoso_ids[0]);
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  auto r = catalog_->ClaimDevices(fabrikam_op_, "", batch, "");
  ASSERT_TRUE(absl::IsNotFound(r.status())) << r.status();
  // Answered exactly like a device the factory never registered.
  const std::string missing = DeviceIdForKey(FakeDeviceKey(777777));
  std::vector<std::string> with_missing = batch;
  with_missing[1] = missing;
  auto unknown = catalog_->ClaimDevices(fabrikam_op_, "", with_missing, "");
  ASSERT_TRUE(absl::IsNotFound(unknown.status()));
  EXPECT_EQ(
      std::string(unknown.status().message()),
      absl::StrReplaceAll(r.status().message(), {{contoso_ids[0], missing}}));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("Contoso")));
  EXPECT_THAT(r.status().message(), Not(HasSubstr(contoso_.id())));
  // Nothing changed: Contoso still owns it, Fabrikam's devices stay
  // unclaimed, no revision, no event.
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
  EXPECT_EQ(catalog_->GetDevice(contoso_op_, "", contoso_ids[0])->tenant_id(),
            contoso_.id());
  EXPECT_EQ(catalog_->GetDevice(platform_, "", batch[0])->state(),
            v1::UNCLAIMED);
}

TEST_F(CatalogClaimsTest, Attack_AnotherTenantsGroupOrTenantIsRefused) {
  const std::vector<std::string> ids = Import(700, 2);
  auto group = catalog_->GetDeviceGroup(contoso_op_, "", "DW100/Production");
  ASSERT_TRUE(group.ok());
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  // Fabrikam names Contoso's group by id: it looks missing.
  auto r = catalog_->ClaimDevices(fabrikam_op_, "", ids, group->id());
  EXPECT_TRUE(absl::IsNotFound(r.status())) << r.status();
  // Fabrikam claims into Contoso's tenant: denied without a lookup.
  auto t = catalog_->ClaimDevices(fabrikam_op_, contoso_.id(), ids, "");
  EXPECT_TRUE(absl::IsPermissionDenied(t.status())) << t.status();
  // A shard (internal caller) may not claim at all.
  auto s = catalog_->ClaimDevices(Caller::Internal(), contoso_.id(), ids, "");
  EXPECT_TRUE(absl::IsPermissionDenied(s.status())) << s.status();
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
}

TEST_F(CatalogClaimsTest, Attack_OversizedOrEmptyBatchIsRefused) {
  const std::vector<std::string> ids = Import(800, 2);
  std::vector<std::string> big(limits::kMaxDevicesPerClaim + 1, ids[0]);
  for (size_t i = 0; i < big.size(); ++i) {
    big[i] = DeviceIdForKey(FakeDeviceKey(10000 + i));
  }
  big[0] = ids[0];
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  auto r = catalog_->ClaimDevices(contoso_op_, "", big, "");
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("1001"));
  EXPECT_THAT(r.status().message(), HasSubstr("the limit is 1000"));
  auto empty = catalog_->ClaimDevices(contoso_op_, "", {}, "");
  EXPECT_TRUE(absl::IsInvalidArgument(empty.status())) << empty.status();
  // Exactly the limit is accepted as far as the size goes (then refused
  // for its unregistered ids, which is NotFound, not InvalidArgument).
  big.pop_back();
  EXPECT_TRUE(absl::IsNotFound(
      catalog_->ClaimDevices(contoso_op_, "", big, "").status()));
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
  EXPECT_EQ(catalog_->GetDevice(platform_, "", ids[0])->state(), v1::UNCLAIMED);
}

TEST_F(CatalogClaimsTest, Attack_MalformedOrRepeatedIdRefusesTheBatch) {
  const std::vector<std::string> ids = Import(900, 3);
  const std::string before = Dump();
  const int64_t revision = catalog_->revision();
  std::vector<std::string> bad = ids;
  bad[1] = "not-a-device-id";
  auto r = catalog_->ClaimDevices(contoso_op_, "", bad, "");
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("#1"));
  std::vector<std::string> upper = ids;
  upper[2] = absl::AsciiStrToUpper(ids[2]);
  EXPECT_TRUE(absl::IsInvalidArgument(
      catalog_->ClaimDevices(contoso_op_, "", upper, "").status()));
  std::vector<std::string> repeated = ids;
  repeated.push_back(ids[0]);
  auto rep = catalog_->ClaimDevices(contoso_op_, "", repeated, "");
  EXPECT_TRUE(absl::IsInvalidArgument(rep.status())) << rep.status();
  EXPECT_THAT(rep.status().message(), HasSubstr("#3 repeats #0"));
  std::vector<std::string> huge = ids;
  huge[0] = std::string(1 << 20, 'a');
  EXPECT_TRUE(absl::IsInvalidArgument(
      catalog_->ClaimDevices(contoso_op_, "", huge, "").status()));
  EXPECT_EQ(Dump(), before);
  EXPECT_EQ(catalog_->revision(), revision);
}

// RacingStore: a ForwardingStore (a MemoryStore). After Arm(n, race), the n-th
// read of the devices column family reads, then runs `race`: a bulk claim of n
// devices reads them before it takes the catalog mutex, so `race` plays
// another request that commits between the claim's reads and its checks.
class RacingStore : public store::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  void Arm(int reads, std::function<void()> race) {
    reads_left_ = reads;
    race_ = std::move(race);
  }
  bool armed() const { return race_ != nullptr; }

 protected:
  void AfterGet(absl::string_view cf, absl::string_view) override {
    if (race_ != nullptr && cf == "devices" && --reads_left_ == 0) {
      std::function<void()> race = std::move(race_);
      race_ = nullptr;
      race();
    }
  }

 private:
  std::function<void()> race_;
  int reads_left_ = 0;
};

class ClaimRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto inner = store::MemoryStore::Create(Catalog::ColumnFamilies());
    ASSERT_TRUE(inner.ok()) << inner.status();
    store_ = std::make_unique<RacingStore>(*std::move(inner));
    const TestCatalogKeys keys = TestCatalogKeys::Create(clock_.Now());
    auto c = Catalog::Open(store_.get(), &clock_, keys.Fill());
    ASSERT_TRUE(c.ok()) << c.status();
    catalog_ = *std::move(c);
    auto contoso =
        catalog_->CreateTenant(Caller::PlatformOperator(), "Contoso");
    auto fabrikam =
        catalog_->CreateTenant(Caller::PlatformOperator(), "Fabrikam");
    ASSERT_TRUE(contoso.ok() && fabrikam.ok());
    contoso_ = Caller::TenantOperator(contoso->id());
    fabrikam_ = Caller::TenantOperator(fabrikam->id());
    fabrikam_id_ = fabrikam->id();
  }
  std::string Dump() { return DumpCatalog(store_->inner()); }

  FakeClock clock_;
  std::unique_ptr<RacingStore> store_;
  std::unique_ptr<Catalog> catalog_;
  Caller contoso_, fabrikam_;
  std::string fabrikam_id_;
};

TEST_F(ClaimRaceTest, Attack_ClaimRacingAnotherTenantsClaimKeepsItsOwner) {
  const std::vector<std::string> ids = ImportFakeDevices(catalog_.get(), 1, 3);
  // Fabrikam claims ids[1] after Contoso's batch read it as unclaimed.
  std::string after_race;
  int64_t revision = 0;
  store_->Arm(3, [&] {
    ASSERT_TRUE(catalog_->ClaimDevices(fabrikam_, "", {ids[1]}, "").ok());
    after_race = Dump();
    revision = catalog_->revision();
  });
  auto r = catalog_->ClaimDevices(contoso_, "", ids, "");
  EXPECT_FALSE(store_->armed());  // the race ran
  ASSERT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(ids[1]));
  // Contoso's batch changed nothing: Fabrikam still owns ids[1].
  EXPECT_EQ(Dump(), after_race);
  EXPECT_EQ(catalog_->revision(), revision);
  auto d = catalog_->GetDevice(fabrikam_, "", ids[1]);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->tenant_id(), fabrikam_id_);
}

TEST_F(ClaimRaceTest, Attack_ClaimRacingAClaimAndALargeImportKeepsTheOwner) {
  const std::vector<std::string> ids = ImportFakeDevices(catalog_.get(), 1, 3);
  // The import writes more devices than the catalog remembers per commit,
  // so the claim can no longer tell which of its reads are stale.
  std::string after_race;
  store_->Arm(3, [&] {
    ASSERT_TRUE(catalog_->ClaimDevices(fabrikam_, "", {ids[2]}, "").ok());
    ImportFakeDevices(catalog_.get(), 1000, 16385);
    after_race = Dump();
  });
  auto r = catalog_->ClaimDevices(contoso_, "", ids, "");
  EXPECT_FALSE(store_->armed());
  ASSERT_TRUE(absl::IsNotFound(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(ids[2]));
  EXPECT_EQ(Dump(), after_race);
  EXPECT_EQ(catalog_->GetDevice(fabrikam_, "", ids[2])->tenant_id(),
            fabrikam_id_);
}

TEST_F(ClaimRaceTest, ClaimSeesADeviceRegisteredAfterItsRead) {
  const std::vector<std::string> ids = ImportFakeDevices(catalog_.get(), 1, 2);
  const std::string late = DeviceIdForKey(FakeDeviceKey(50));
  store_->Arm(3, [&] { ImportFakeDevices(catalog_.get(), 50, 1); });
  auto r = catalog_->ClaimDevices(contoso_, "", {ids[0], late, ids[1]}, "");
  EXPECT_FALSE(store_->armed());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->claimed, 3u);
  auto d = catalog_->GetDevice(contoso_, "", late);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->state(), v1::CLAIMED);
}

TEST_F(ClaimRaceTest, ACommitOfOtherDevicesBetweenReadAndCheckIsHarmless) {
  const std::vector<std::string> ids = ImportFakeDevices(catalog_.get(), 1, 4);
  // A commit in between that touches other devices: the batch's early
  // reads still hold, and the claim succeeds on them.
  store_->Arm(3, [&] {
    ASSERT_TRUE(catalog_->ClaimDevices(fabrikam_, "", {ids[3]}, "").ok());
  });
  auto r = catalog_->ClaimDevices(contoso_, "", {ids[0], ids[1], ids[2]}, "");
  EXPECT_FALSE(store_->armed());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->claimed, 3u);
  // A retried batch: every device is already Contoso's.
  auto again =
      catalog_->ClaimDevices(contoso_, "", {ids[0], ids[1], ids[2]}, "");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->already_claimed, 3u);
  EXPECT_EQ(again->claimed, 0u);
}

}  // namespace
}  // namespace sphere::management
