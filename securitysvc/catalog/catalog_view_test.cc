#include "securitysvc/catalog/catalog_view.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "common/util/clock.h"

namespace sphere::catalog {
namespace {

v1::Image Kernel(uint32_t version) {
  v1::Image i;
  const std::string tag = absl::StrCat("kernel/", version);
  i.set_id(crypto::HexEncode(crypto::Sha256(tag)));
  i.set_component("kernel");
  i.set_version(version);
  i.set_kind(v1::IMAGE_KIND_KERNEL);
  i.set_image_hash(crypto::Sha256(tag));
  return i;
}

v1::OsRelease Release(const std::string& version, const v1::Image& image,
                      int64_t revision) {
  v1::OsRelease r;
  r.set_feed(v1::RETAIL);
  r.set_version(version);
  r.add_image_ids(image.id());
  r.set_create_revision(revision);
  return r;
}

// A snapshot lists a feed's releases in key order ("RETAIL/10" before
// "RETAIL/9"); the view must still expect the one released last.
TEST(InMemoryCatalogTest, LatestOsReleaseIsTheLastPublishedNotTheLastApplied) {
  InMemoryCatalog view(crypto::RandomBytes(32));
  view.PutImage(Kernel(9));
  view.PutImage(Kernel(10));
  view.PutOsRelease(Release("10", Kernel(10), /*revision=*/20));
  view.PutOsRelease(Release("9", Kernel(9), /*revision=*/10));
  v1::Device device;
  auto expected = view.ExpectedImages(device);
  ASSERT_EQ(expected.count("kernel"), 1u);
  EXPECT_EQ(expected["kernel"].version(), 10u);

  // A later live event replaces it.
  view.PutImage(Kernel(11));
  view.PutOsRelease(Release("11", Kernel(11), /*revision=*/30));
  EXPECT_EQ(view.ExpectedImages(device)["kernel"].version(), 11u);
}

v1::Image App(const std::string& tenant, const std::string& tag,
              uint32_t version) {
  v1::Image i;
  i.set_image_hash(crypto::Sha256(tag));
  i.set_id(crypto::HexEncode(i.image_hash()));
  i.set_tenant_id(tenant);
  i.set_component("app:dw100");
  i.set_version(version);
  i.set_kind(v1::IMAGE_KIND_APPLICATION);
  return i;
}

// Images are bound to their owner: the same bytes uploaded by two tenants
// are two images, and a tenant's lookup never yields another tenant's app.
TEST(InMemoryCatalogTest, Attack_OtherTenantsAppIsNotTheTenantsImage) {
  InMemoryCatalog view(crypto::RandomBytes(32));
  const v1::Image evil = App("evil", "evil v999", 999);
  view.PutImage(evil);
  auto r = view.FindImageForTenant(evil.image_hash(), "contoso");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(std::string(r.status().message()).find("evil\""),
            std::string::npos);
  EXPECT_TRUE(view.FindImageForTenant(evil.image_hash(), "evil").ok());
  EXPECT_TRUE(absl::IsNotFound(
      view.FindImageForTenant(crypto::Sha256("unknown"), "contoso").status()));

  // Same bytes for Contoso: its own record, and a deployment of Contoso's
  // names Contoso's image, not Evil's.
  v1::Image mine = App("contoso", "evil v999", 1);
  view.PutImage(mine);
  EXPECT_EQ(view.FindImageForTenant(mine.image_hash(), "contoso")->version(),
            1u);
  EXPECT_EQ(view.FindImageForTenant(mine.image_hash(), "evil")->version(),
            999u);
  v1::Deployment dep;
  dep.set_id("d1");
  dep.set_tenant_id("contoso");
  dep.set_device_group_id("g1");
  dep.add_image_ids(mine.id());
  view.PutDeployment(dep);
  v1::Device device;
  device.set_device_group_id("g1");
  EXPECT_EQ(view.ExpectedImages(device)["app:dw100"].version(), 1u);
}

// Snapshot events are staged: nothing is visible, and the revision does not
// move, until snapshot_end.
TEST(InMemoryCatalogTest, SnapshotIsAppliedAtomicallyAtItsEnd) {
  InMemoryCatalog view(crypto::RandomBytes(32));
  view.RequireSnapshot();
  v1::WatchEvent e;
  e.set_revision(7);
  e.set_snapshot(true);
  e.mutable_device()->set_id("d1");
  ASSERT_TRUE(view.Apply(e).ok());
  EXPECT_EQ(view.revision(), 0);
  EXPECT_FALSE(view.synced());
  EXPECT_TRUE(absl::IsNotFound(view.GetDevice("d1").status()));
  v1::WatchEvent end;
  end.set_revision(7);
  end.set_snapshot(true);
  end.set_snapshot_end(true);
  ASSERT_TRUE(view.Apply(end).ok());
  EXPECT_EQ(view.revision(), 7);
  EXPECT_TRUE(view.synced());
  EXPECT_TRUE(view.GetDevice("d1").ok());
  // An aborted re-snapshot leaves the served state as it was.
  e.set_revision(9);
  e.mutable_device()->set_id("d2");
  ASSERT_TRUE(view.Apply(e).ok());
  view.AbortSnapshot();
  EXPECT_TRUE(view.GetDevice("d1").ok());
  EXPECT_TRUE(absl::IsNotFound(view.GetDevice("d2").status()));
  EXPECT_EQ(view.revision(), 7);
}

// A bulk claim (ManagementService.ClaimDevices) is one revision carrying
// every claimed device: each becomes readable at that revision.
TEST(InMemoryCatalogTest, BulkClaimEventAppliesEveryDeviceAtOneRevision) {
  InMemoryCatalog view(crypto::RandomBytes(32));
  v1::WatchEvent e;
  e.set_revision(12);
  for (int i = 0; i < 3; ++i) {
    v1::Device* d = e.mutable_claimed_devices()->add_devices();
    d->set_id(absl::StrCat("d", i));
    d->set_tenant_id("t1");
    d->set_device_group_id("g1");
    d->set_state(v1::CLAIMED);
  }
  ASSERT_TRUE(view.Apply(e).ok());
  EXPECT_EQ(view.revision(), 12);
  for (int i = 0; i < 3; ++i) {
    auto d = view.GetDevice(absl::StrCat("d", i));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->tenant_id(), "t1");
    EXPECT_EQ(d->device_group_id(), "g1");
    EXPECT_EQ(d->state(), v1::CLAIMED);
  }
}

// Found by fuzz/watch_event_fuzzer: a snapshot ending below the view's
// revision swapped older state in and moved the revision backwards.
TEST(InMemoryCatalogTest, Fault_OlderSnapshotIsRefusedAndChangesNothing) {
  InMemoryCatalog view(crypto::RandomBytes(32));
  v1::WatchEvent live;
  live.set_revision(10);
  live.mutable_device()->set_id("d1");
  ASSERT_TRUE(view.Apply(live).ok());
  v1::WatchEvent old_end;
  old_end.set_revision(4);
  old_end.set_snapshot(true);
  old_end.set_snapshot_end(true);
  old_end.mutable_device()->set_id("d0");
  absl::Status s = view.Apply(old_end);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(std::string(s.message()),
              ::testing::HasSubstr("older than this view's revision 10"));
  EXPECT_EQ(view.revision(), 10);
  EXPECT_TRUE(view.GetDevice("d1").ok());
  EXPECT_TRUE(absl::IsNotFound(view.GetDevice("d0").status()));
}

}  // namespace
}  // namespace sphere::catalog

namespace sphere::catalog {
namespace {

TEST(InMemoryCatalogTest, StalenessBoundOnTheInjectedClock) {
  FakeClock clock;
  InMemoryCatalog view(crypto::RandomBytes(32));
  EXPECT_TRUE(view.CheckFresh().ok()) << "no bound: always fresh";
  view.SetStalenessLimit(&clock, absl::Seconds(10));
  clock.Advance(absl::Seconds(10));
  EXPECT_TRUE(view.CheckFresh().ok()) << "exactly the bound is still fresh";
  clock.Advance(absl::Milliseconds(1));
  absl::Status stale = view.CheckFresh();
  EXPECT_TRUE(absl::IsUnavailable(stale)) << stale;
  EXPECT_THAT(stale.message(), ::testing::HasSubstr("catalog stale"));
  EXPECT_THAT(stale.message(),
              ::testing::HasSubstr("--max_catalog_staleness of 10s"));
  view.MarkHeard();
  EXPECT_TRUE(view.CheckFresh().ok());
  view.SetStalenessLimit(&clock, absl::ZeroDuration());  // bound removed
  clock.Advance(absl::Hours(1));
  EXPECT_TRUE(view.CheckFresh().ok());
}

}  // namespace
}  // namespace sphere::catalog
