// GroupMetadataCache: signed once per change of a group's inputs, re-signed
// at half-life, versions monotonic, app update policy and rollout variants.
#include "securitysvc/update/group_metadata.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crypto/crypto.h"
#include "securitysvc/catalog/catalog_view.h"

namespace sphere::update {
namespace {

constexpr char kTenant[] = "tenant-a";
constexpr char kGroup[] = "group-a";

std::string IdFor(absl::string_view name) {
  return crypto::HexEncode(crypto::Sha256(name));
}

class GroupMetadataTest : public ::testing::Test {
 protected:
  GroupMetadataTest()
      : key_(crypto::EcPrivateKey::Generate()),
        signer_(key_),
        catalog_(crypto::RandomBytes(32)),
        clock_(absl::FromUnixSeconds(1700000000)),
        source_([this](absl::string_view id) -> absl::StatusOr<std::string> {
          ++loads_;
          auto it = packages_.find(std::string(id));
          if (it == packages_.end()) return absl::NotFoundError("no package");
          return it->second;
        }),
        cache_(&source_, 1 << 20),
        metadata_(&catalog_, &cache_, &signer_, &clock_, {}) {
    v1::DeviceGroup g;
    g.set_id(kGroup);
    g.set_tenant_id(kTenant);
    g.set_os_feed(v1::RETAIL);
    Apply(1, [&](v1::WatchEvent& e) { *e.mutable_device_group() = g; });
    os1_ = AddImage("", "kernel", 1);
    Release(2, "24.10", {os1_});
  }

  template <typename F>
  void Apply(int64_t revision, F fill) {
    v1::WatchEvent e;
    e.set_revision(revision);
    fill(e);
    ASSERT_TRUE(catalog_.Apply(e).ok());
  }
  std::string AddImage(const std::string& tenant, const std::string& component,
                       uint32_t version) {
    v1::Image img;
    const std::string name = absl::StrCat(tenant, component, version);
    img.set_id(IdFor(name));
    img.set_image_hash(crypto::Sha256(name));
    img.set_tenant_id(tenant);
    img.set_component(component);
    img.set_version(version);
    img.set_size(100 + version);
    catalog_.PutImage(img);
    packages_[img.id()] = absl::StrCat("package of ", name);
    return img.id();
  }
  void Release(int64_t revision, const std::string& version,
               std::vector<std::string> ids) {
    v1::OsRelease r;
    r.set_feed(v1::RETAIL);
    r.set_version(version);
    for (auto& id : ids) r.add_image_ids(id);
    r.set_create_revision(revision);
    Apply(revision, [&](v1::WatchEvent& e) { *e.mutable_os_release() = r; });
  }
  v1::Deployment Deploy(int64_t revision, const std::string& id,
                        std::vector<std::string> ids, double fraction = 0,
                        bool halted = false) {
    v1::Deployment d;
    d.set_id(id);
    d.set_tenant_id(kTenant);
    d.set_device_group_id(kGroup);
    for (auto& i : ids) d.add_image_ids(i);
    d.set_create_revision(revision);
    d.set_rollout_fraction(fraction);
    d.set_halted(halted);
    Apply(revision, [&](v1::WatchEvent& e) { *e.mutable_deployment() = d; });
    return d;
  }
  v1::UpdateMetadata Verified(const GroupMetadata& g) {
    auto m =
        VerifySignedMetadata(key_.PublicKey(), g.response.signed_metadata());
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *m : v1::UpdateMetadata();
  }
  std::shared_ptr<const GroupMetadata> Built(GroupVariant v = {kGroup, true}) {
    auto g = metadata_.Build(v);
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? *g : nullptr;
  }

  crypto::EcPrivateKey key_;
  KeyMetadataSigner signer_;
  catalog::InMemoryCatalog catalog_;
  FakeClock clock_;
  std::map<std::string, std::string> packages_;
  int loads_ = 0;
  FunctionPackageSource source_;
  PackageCache cache_;
  GroupMetadataCache metadata_;
  std::string os1_;
};

TEST_F(GroupMetadataTest, SignedTargetsCarryPackageLengthHashAndHardware) {
  auto g = Built();
  ASSERT_NE(g, nullptr);
  v1::UpdateMetadata m = Verified(*g);
  EXPECT_EQ(m.format_version(), 1u);
  EXPECT_EQ(m.device_group_id(), kGroup);
  EXPECT_EQ(m.tenant_id(), kTenant);
  EXPECT_EQ(m.metadata_version(), 2u);  // the release's revision
  EXPECT_EQ(m.expires_unix_ms() - m.issued_unix_ms(),
            absl::ToInt64Milliseconds(absl::Hours(24 * 7)));
  ASSERT_EQ(m.targets_size(), 1);
  const v1::UpdateTarget& t = m.targets(0);
  EXPECT_EQ(t.image_id(), os1_);
  EXPECT_EQ(t.package_size(), packages_[os1_].size());
  EXPECT_EQ(t.package_sha256(), crypto::Sha256(packages_[os1_]));
  ASSERT_EQ(t.hardware_size(), 1);
  EXPECT_EQ(t.hardware(0), "mt3620");
  // The targets travel once, signed: no unsigned copy in the answer.
  EXPECT_EQ(g->response.targets_size(), 0);
  v1::GetUpdatesResponse wire;
  ASSERT_TRUE(wire.ParseFromString(g->response_bytes));
  EXPECT_EQ(wire.targets_size(), 0);
  EXPECT_EQ(wire.signed_metadata().metadata(),
            g->response.signed_metadata().metadata());
  ASSERT_NE(g->Find(os1_), nullptr);
  EXPECT_EQ(g->Find(os1_)->SerializeAsString(), t.SerializeAsString());
}

TEST_F(GroupMetadataTest, SignedOncePerChangeNotPerRequest) {
  EXPECT_EQ(*metadata_.Get({kGroup, true}), nullptr);  // needs a package read
  auto first = Built();
  ASSERT_NE(first, nullptr);
  for (int i = 0; i < 100; ++i) {
    auto again = metadata_.Get({kGroup, true});
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->get(), first.get());
  }
  EXPECT_EQ(metadata_.signatures(), 1u);
  EXPECT_EQ(loads_, 1);
  // A catalog change that does not touch the group: no new signature.
  v1::Device other;
  other.set_id(IdFor("other"));
  Apply(3, [&](v1::WatchEvent& e) { *e.mutable_device() = other; });
  auto same = metadata_.Get({kGroup, true});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->get(), first.get());
  EXPECT_EQ(metadata_.signatures(), 1u);
  // A new release of the group's feed: signed again, newer version.
  const std::string os2 = AddImage("", "kernel", 2);
  Release(4, "24.11", {os2});
  auto next = Built();
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(metadata_.signatures(), 2u);
  v1::UpdateMetadata m = Verified(*next);
  EXPECT_EQ(m.metadata_version(), 4u);
  ASSERT_EQ(m.targets_size(), 1);
  EXPECT_EQ(m.targets(0).image_id(), os2);
}

TEST_F(GroupMetadataTest, ResignedAtHalfLifeWithSameVersion) {
  auto first = Built();
  ASSERT_NE(first, nullptr);
  clock_.Advance(absl::Hours(24 * 3));
  EXPECT_EQ(metadata_.Get({kGroup, true})->get(), first.get());
  clock_.Advance(absl::Hours(13));  // past 3.5 days
  auto resigned = metadata_.Get({kGroup, true});
  ASSERT_TRUE(resigned.ok());
  ASSERT_NE(*resigned, nullptr);
  EXPECT_NE(resigned->get(), first.get());
  EXPECT_EQ(metadata_.signatures(), 2u);
  v1::UpdateMetadata a = Verified(*first), b = Verified(**resigned);
  EXPECT_EQ(b.metadata_version(), a.metadata_version());
  EXPECT_GT(b.expires_unix_ms(), a.expires_unix_ms());
  EXPECT_EQ(b.issued_unix_ms(), absl::ToUnixMillis(clock_.Now()));
}

TEST_F(GroupMetadataTest, DeploymentAppsAndPolicy) {
  const std::string app = AddImage(kTenant, "app:dw100", 1);
  Deploy(5, "dep-1", {app});
  v1::UpdateMetadata m = Verified(*Built());
  EXPECT_EQ(m.deployment_id(), "dep-1");
  EXPECT_EQ(m.metadata_version(), 5u);
  EXPECT_EQ(m.rollout_stage(), 100u);
  ASSERT_EQ(m.targets_size(), 2);
  // OS-only policy: the app disappears, the version still increases.
  v1::DeviceGroup g = *catalog_.GetDeviceGroup(kGroup);
  g.set_app_update_policy(v1::NO_3RD_PARTY_APP_UPDATES);
  Apply(6, [&](v1::WatchEvent& e) { *e.mutable_device_group() = g; });
  v1::UpdateMetadata os_only = Verified(*Built());
  ASSERT_EQ(os_only.targets_size(), 1);
  EXPECT_EQ(os_only.targets(0).image_id(), os1_);
  EXPECT_TRUE(os_only.deployment_id().empty());
  EXPECT_GT(os_only.metadata_version(), m.metadata_version());
  g.set_app_update_policy(v1::NO_UPDATES);
  Apply(7, [&](v1::WatchEvent& e) { *e.mutable_device_group() = g; });
  v1::UpdateMetadata none = Verified(*Built());
  EXPECT_EQ(none.targets_size(), 0);
  EXPECT_GT(none.metadata_version(), os_only.metadata_version());
}

TEST_F(GroupMetadataTest, HaltedDeploymentDropsItsAppsWithNewerVersion) {
  const std::string app = AddImage(kTenant, "app:dw100", 1);
  Deploy(5, "dep-1", {app});
  v1::UpdateMetadata running = Verified(*Built());
  ASSERT_EQ(running.targets_size(), 2);
  Deploy(5, "dep-1", {app}, 0, /*halted=*/true);  // same create_revision
  Apply(6, [&](v1::WatchEvent& e) {
    v1::Device d;
    d.set_id(IdFor("bump"));
    *e.mutable_device() = d;
  });
  v1::UpdateMetadata halted = Verified(*Built());
  EXPECT_EQ(halted.targets_size(), 1);
  EXPECT_GT(halted.metadata_version(), running.metadata_version());
}

// The rollout fraction is remembered per catalog revision: a stage that
// moves (a new revision) is seen by the very next call.
TEST_F(GroupMetadataTest, VariantFollowsTheRolloutFractionAtTheNextRevision) {
  const std::string app = AddImage(kTenant, "app:dw100", 1);
  Deploy(5, "dep-1", {app}, 0.1);
  std::string id;
  for (int i = 0; id.empty() && i < 1000; ++i) {
    const std::string c = IdFor(absl::StrCat("device-", i));
    if (!InRolloutStage(c, 0.1) && InRolloutStage(c, 0.5)) id = c;
  }
  ASSERT_FALSE(id.empty());
  EXPECT_FALSE(metadata_.VariantFor(kGroup, id).in_stage);
  EXPECT_FALSE(metadata_.VariantFor(kGroup, id).in_stage);  // remembered
  Deploy(6, "dep-1", {app}, 0.5);
  EXPECT_TRUE(metadata_.VariantFor(kGroup, id).in_stage);
  Deploy(7, "dep-1", {app}, 0.5, /*halted=*/true);
  EXPECT_TRUE(metadata_.VariantFor(kGroup, id).in_stage);  // halted: group
  Deploy(8, "dep-1", {app}, 0.1);
  EXPECT_FALSE(metadata_.VariantFor(kGroup, id).in_stage);
}

TEST_F(GroupMetadataTest, RolloutVariantsByStableDeviceHash) {
  const std::string app = AddImage(kTenant, "app:dw100", 1);
  Deploy(5, "dep-1", {app}, 0.1);
  int in10 = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string id = IdFor(absl::StrCat("device-", i));
    const bool a = InRolloutStage(id, 0.1);
    EXPECT_EQ(a, InRolloutStage(id, 0.1));  // stable
    if (a) {
      ++in10;
      EXPECT_TRUE(InRolloutStage(id, 0.5));  // stays in larger stages
    }
    EXPECT_EQ(metadata_.VariantFor(kGroup, id).in_stage, a);
  }
  EXPECT_GT(in10, 140);  // about 200 of 2000
  EXPECT_LT(in10, 260);
  v1::UpdateMetadata in = Verified(*Built({kGroup, true}));
  v1::UpdateMetadata out = Verified(*Built({kGroup, false}));
  EXPECT_EQ(in.targets_size(), 2);
  EXPECT_EQ(in.rollout_stage(), 10u);
  EXPECT_EQ(in.deployment_id(), "dep-1");
  EXPECT_EQ(out.targets_size(), 1);
  EXPECT_EQ(out.rollout_stage(), 0u);
  EXPECT_TRUE(out.deployment_id().empty());
}

TEST_F(GroupMetadataTest, Fault_UnknownGroupOrMissingPackageSignsNothing) {
  EXPECT_TRUE(
      absl::IsNotFound(metadata_.Build({"no-such-group", true}).status()));
  const std::string bytes = packages_[os1_];
  packages_.erase(os1_);
  auto g = metadata_.Build({kGroup, true});
  EXPECT_TRUE(absl::IsFailedPrecondition(g.status())) << g.status();
  EXPECT_TRUE(absl::StrContains(g.status().message(), os1_));
  EXPECT_EQ(metadata_.signatures(), 0u);
  EXPECT_FALSE(cache_.CachedInfo(os1_).has_value());
  EXPECT_EQ(*metadata_.Get({kGroup, true}), nullptr);  // nothing cached
  // The store comes back: the next build signs once.
  packages_[os1_] = bytes;
  ASSERT_NE(Built(), nullptr);
  EXPECT_EQ(metadata_.signatures(), 1u);
}

TEST(PackageCacheTest, EvictsWithinBudgetAndRefusesChangedBytes) {
  std::map<std::string, std::string> bytes = {{"a", std::string(600, 'a')},
                                              {"b", std::string(600, 'b')}};
  int loads = 0;
  FunctionPackageSource src(
      [&](absl::string_view id) -> absl::StatusOr<std::string> {
        ++loads;
        return bytes.at(std::string(id));
      });
  PackageCache cache(&src, 1000);
  ASSERT_TRUE(cache.Load("a").ok());
  ASSERT_TRUE(cache.Load("a").ok());
  EXPECT_EQ(loads, 1);
  ASSERT_TRUE(cache.Load("b").ok());  // evicts a
  EXPECT_LE(cache.cached_bytes(), 1000u);
  EXPECT_EQ(cache.Cached("a"), nullptr);
  ASSERT_TRUE(cache.CachedInfo("a").has_value());  // info is kept
  bytes["a"] = std::string(600, 'x');
  auto changed = cache.Load("a");
  EXPECT_TRUE(absl::IsDataLoss(changed.status())) << changed.status();
  EXPECT_EQ(cache.Cached("a"), nullptr);
}

}  // namespace
}  // namespace sphere::update
