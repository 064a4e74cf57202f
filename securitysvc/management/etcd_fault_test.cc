// etcd backend under faults, with real etcd members on loopback (data in
// TEST_TMPDIR; every member is killed when the test ends). Skipped with a
// message when /usr/bin/etcd is absent.
//  - mTLS: a client without a certificate the etcd CA signed is refused.
//  - kill -9 one of three members under a stream of claims: claims continue
//    and every acknowledged one is in the catalog afterwards (Jepsen's "no
//    acknowledged write is lost").
//  - two management replicas (two catalogs) on one etcd: one is destroyed
//    (a killed replica), the other serves reads and writes.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/testing/test_pki.h"
#include "common/util/clock.h"
#include "gtest/gtest.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_test_support.h"
#include "securitysvc/management/etcd_cluster.h"
#include "securitysvc/management/etcd_revision_log.h"

namespace sphere::management {
namespace {

std::string TmpDir(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return absl::StrCat(t ? t : "/tmp", "/", name);
}

// Pki: a throw-away CA (//common/testing:test_pki) issuing etcd's and its
// clients' certificates (for localhost and 127.0.0.1).
struct Pki {
  test_support::TestPki ca;
  std::string ca_pem = ca.root_pem;
  std::pair<std::string, std::string> Issue(const std::string& cn,
                                            crypto::KeyUsage usage) const {
    rpc::TlsFiles f = ca.Leaf(cn, usage);
    return {f.cert_pem, f.key_pem};
  }
};

class EtcdFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!EtcdCluster::BinaryAvailable()) {
      GTEST_SKIP() << "/usr/bin/etcd is absent (install etcd-server with "
                      "./sphere deps); etcd fault tests not run";
    }
    keys_ = TestCatalogKeys::Create(clock_.Now());
  }
  std::unique_ptr<Catalog> OpenCatalog(RevisionLog* log) {
    return OpenTestCatalog(log, &clock_, keys_);
  }
  std::vector<std::string> Import(Catalog* c, int n) {
    return ImportTestDevices(c, n);
  }

  FakeClock clock_;
  TestCatalogKeys keys_;
};

TEST_F(EtcdFaultTest, Attack_ClientWithoutTrustedCertificateIsRefused) {
  Pki pki;
  auto [server_pem, server_key] =
      pki.Issue("etcd", crypto::KeyUsage::kServerAndClientAuth);
  auto [client_pem, client_key] =
      pki.Issue("management", crypto::KeyUsage::kClientAuth);
  EtcdClusterOptions co;
  co.data_dir = TmpDir("etcd-mtls");
  co.ca_pem = pki.ca_pem;
  co.server_cert_pem = server_pem;
  co.server_key_pem = server_key;
  co.client_cert_pem = client_pem;
  co.client_key_pem = client_key;
  auto etcd = EtcdCluster::Start(co);
  ASSERT_TRUE(etcd.ok()) << etcd.status();

  EtcdOptions good;
  good.endpoints = (*etcd)->client_endpoints();
  good.ca_pem = pki.ca_pem;
  good.cert_pem = client_pem;
  good.key_pem = client_key;
  good.server_name = "127.0.0.1";
  auto log = EtcdRevisionLog::Connect(good);
  ASSERT_TRUE(log.ok()) << log.status();
  store::WriteBatch b;
  b.Put("meta", "k", "v");
  ASSERT_TRUE((*log)->Txn({}, b).ok());
  const int64_t rev = *(*log)->Revision();

  // A certificate from another CA (an attacker's) is refused, as is
  // plaintext; nothing they attempt changes the store.
  Pki other;
  auto [rogue_pem, rogue_key] =
      other.Issue("rogue", crypto::KeyUsage::kClientAuth);
  EtcdOptions rogue = good;
  rogue.cert_pem = rogue_pem;
  rogue.key_pem = rogue_key;
  rogue.rpc_timeout = absl::Seconds(2);
  auto refused = EtcdRevisionLog::Connect(rogue);
  EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  EtcdOptions plain;
  plain.endpoints = good.endpoints;
  plain.rpc_timeout = absl::Seconds(2);
  auto refused_plain = EtcdRevisionLog::Connect(plain);
  EXPECT_TRUE(absl::IsUnavailable(refused_plain.status()))
      << refused_plain.status();
  EXPECT_EQ(*(*log)->Revision(), rev);
  EXPECT_EQ(*(*log)->Get("meta", "k"), "v");
}

TEST_F(EtcdFaultTest, Attack_OversizedTransactionIsRefusedBeforeSending) {
  EtcdClusterOptions co;
  co.data_dir = TmpDir("etcd-limits");
  auto etcd = EtcdCluster::Start(co);
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  EtcdOptions o;
  o.endpoints = (*etcd)->client_endpoints();
  auto log = EtcdRevisionLog::Connect(o);
  ASSERT_TRUE(log.ok());
  const int64_t rev = *(*log)->Revision();
  store::WriteBatch big;
  big.Put("images", "huge", std::string(2 * 1024 * 1024, 'x'));
  auto r = (*log)->Txn({}, big);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_NE(r.status().message().find("max-request-bytes"), std::string::npos);
  store::WriteBatch many;
  for (int i = 0; i < 200; ++i) many.Put("devices", absl::StrCat(i), "v");
  r = (*log)->Txn({}, many);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  EXPECT_EQ(*(*log)->Revision(), rev);
  EXPECT_TRUE(absl::IsNotFound((*log)->Get("images", "huge").status()));
  EXPECT_TRUE(absl::IsNotFound((*log)->Get("devices", "0").status()));
}

// kill -9 one of three etcd members under a mixed write stream through one
// catalog: two writers claim devices while a third publishes OS releases
// (each a platform kernel image, then a release carrying it; the catalog
// refuses a release that rolls a component back, so release order is a
// monotonicity check) interleaved with the claims, before and after the
// kill. Every acknowledged claim and release survives; nothing that was not
// acknowledged is half-applied: the catalog read back on the survivors holds
// exactly the acknowledged claims and releases, each release's image, and
// release versions that only go up.
TEST_F(EtcdFaultTest, Fault_KillOneEtcdMemberUnderClaimsLosesNoAckedWrite) {
  EtcdClusterOptions co;
  co.members = 3;
  co.data_dir = TmpDir("etcd-kill");
  auto etcd = EtcdCluster::Start(co);
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  EtcdOptions o;
  o.endpoints = (*etcd)->client_endpoints();
  o.rpc_timeout = absl::Seconds(10);
  o.max_txn_ops = co.max_txn_ops;  // the members run with --max-txn-ops 1024
  auto log = EtcdRevisionLog::Connect(o);
  ASSERT_TRUE(log.ok()) << log.status();
  auto catalog = OpenCatalog(log->get());
  ASSERT_NE(catalog, nullptr);
  const Caller op = Caller::PlatformOperator();
  auto tenant = catalog->CreateTenant(op, "Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  constexpr int kDevices = 300;
  constexpr int kReleases = 12;
  std::vector<std::string> ids = Import(catalog.get(), kDevices);
  ASSERT_EQ(ids.size(), static_cast<size_t>(kDevices));

  absl::Mutex mu;
  std::vector<std::string> acked;
  std::vector<std::string> acked_releases;  // versions
  int acked_after_kill = 0;
  int releases_after_kill = 0;
  bool killed = false;
  // Retry what is retryable (Aborted: lost a compare, nothing changed;
  // Unavailable: a member died mid-call, outcome unknown); an AlreadyExists
  // after an Unavailable means our earlier attempt did apply.
  auto retry = [](const std::function<absl::Status()>& write) {
    absl::Status s;
    for (int attempt = 0; attempt < 50; ++attempt) {
      s = write();
      if (s.ok() || absl::IsAlreadyExists(s)) return absl::OkStatus();
      if (!absl::IsAborted(s) && !absl::IsUnavailable(s)) return s;
    }
    return s;
  };
  std::atomic<int> next{0};
  auto claimer = [&] {
    while (true) {
      int i = next.fetch_add(1);
      if (i >= kDevices) return;
      absl::Status s = retry([&] {
        return catalog->ClaimDevice(op, tenant->id(), ids[i]).status();
      });
      if (!s.ok()) {
        ADD_FAILURE() << s;
        continue;
      }
      absl::MutexLock lock(&mu);
      acked.push_back(ids[i]);
      if (killed) ++acked_after_kill;
    }
  };
  auto Kernel = [](int v) {
    v1::Image image;
    image.set_image_hash(crypto::Sha256(absl::StrCat("kernel ", v)));
    image.set_id(crypto::HexEncode(image.image_hash()));
    image.set_component("kernel");
    image.set_version(v);
    image.set_kind(v1::IMAGE_KIND_KERNEL);
    image.set_size(1024);
    return image;
  };
  // Release v goes out once v/kReleases of the claims are acknowledged, so
  // releases are spread over the whole stream, across the kill.
  auto releaser = [&] {
    for (int v = 1; v <= kReleases; ++v) {
      {
        absl::MutexLock lock(&mu);
        auto due = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) {
          return acked.size() >=
                 static_cast<size_t>((v - 1) * kDevices / kReleases);
        };
        mu.AwaitWithTimeout(absl::Condition(&due), absl::Seconds(60));
      }
      const v1::Image image = Kernel(v);
      absl::Status s =
          retry([&] { return catalog->RecordImage(op, image).status(); });
      ASSERT_TRUE(s.ok()) << s;
      v1::ReleaseOsRequest req;
      req.set_feed(v1::RETAIL);
      req.set_version(absl::StrCat("1.", v));
      req.add_image_ids(image.id());
      s = retry([&] { return catalog->ReleaseOs(op, req).status(); });
      ASSERT_TRUE(s.ok()) << s;
      absl::MutexLock lock(&mu);
      acked_releases.push_back(req.version());
      if (killed) ++releases_after_kill;
    }
  };
  std::thread a(claimer), b(claimer), r(releaser);
  {
    // Kill once a third of the claims are acknowledged.
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(
                            +[](std::vector<std::string>* v) {
                              return v->size() >= kDevices / 3;
                            },
                            &acked),
                        absl::Seconds(60));
  }
  // The member the client is most likely connected to (pick_first: the
  // first address) dies.
  ASSERT_TRUE((*etcd)->Kill(0).ok());
  {
    absl::MutexLock lock(&mu);
    killed = true;
  }
  a.join();
  b.join();
  r.join();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(acked.size(), static_cast<size_t>(kDevices));
  EXPECT_EQ(acked_releases.size(), static_cast<size_t>(kReleases));
  EXPECT_GT(acked_after_kill, 0);
  EXPECT_GT(releases_after_kill, 0) << "no release was written after the kill";
  // Read back through a fresh client and a fresh catalog (another replica)
  // on the surviving members.
  EtcdOptions survivors = o;
  survivors.endpoints = {(*etcd)->client_endpoints()[1],
                         (*etcd)->client_endpoints()[2]};
  auto log2 = EtcdRevisionLog::Connect(survivors);
  ASSERT_TRUE(log2.ok()) << log2.status();
  auto fresh = OpenCatalog(log2->get());
  ASSERT_NE(fresh, nullptr);
  for (const std::string& id : acked) {
    auto d = fresh->GetDevice(op, tenant->id(), id);
    ASSERT_TRUE(d.ok()) << id << ": " << d.status();
    EXPECT_EQ(d->state(), v1::CLAIMED);
    EXPECT_EQ(d->tenant_id(), tenant->id());
  }
  // The whole catalog as a shard would receive it: exactly the acknowledged
  // claims and releases, nothing else, no half-applied write.
  auto watch = fresh->OpenWatch(Caller::Internal(), 0, {});
  ASSERT_TRUE(watch.ok()) << watch.status();
  std::set<std::string> claimed, released, images;
  std::vector<v1::OsRelease> releases;
  bool ended = false;
  while (!ended) {
    std::vector<v1::WatchEvent> page;
    ASSERT_TRUE((*watch)->Next(256, &page).ok());
    ASSERT_FALSE(page.empty()) << "snapshot ended without snapshot_end";
    for (const v1::WatchEvent& e : page) {
      if (e.snapshot_end()) ended = true;
      if (e.has_device() && e.device().state() == v1::CLAIMED) {
        EXPECT_EQ(e.device().tenant_id(), tenant->id());
        claimed.insert(e.device().id());
      }
      if (e.has_image()) images.insert(e.image().id());
      if (e.has_os_release()) {
        released.insert(e.os_release().version());
        releases.push_back(e.os_release());
      }
    }
  }
  EXPECT_EQ(claimed, std::set<std::string>(acked.begin(), acked.end()));
  EXPECT_EQ(released, std::set<std::string>(acked_releases.begin(),
                                            acked_releases.end()));
  std::sort(releases.begin(), releases.end(),
            [](const v1::OsRelease& x, const v1::OsRelease& y) {
              return x.create_revision() < y.create_revision();
            });
  for (size_t i = 0; i < releases.size(); ++i) {
    ASSERT_EQ(releases[i].image_ids_size(), 1);
    EXPECT_TRUE(images.count(releases[i].image_ids(0)))
        << "release " << releases[i].version() << " without its image";
    // Published in order: versions 1.1, 1.2, ... by create revision.
    EXPECT_EQ(releases[i].version(), absl::StrCat("1.", i + 1));
  }
}

// Two management replicas; one dies (destroyed: its process is gone); the
// other serves reads and writes, including what the dead one committed.
TEST_F(EtcdFaultTest, Fault_KillOneManagementReplicaOtherServes) {
  EtcdClusterOptions co;
  co.data_dir = TmpDir("etcd-replicas");
  auto etcd = EtcdCluster::Start(co);
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  EtcdOptions o;
  o.endpoints = (*etcd)->client_endpoints();
  auto log_a = EtcdRevisionLog::Connect(o);
  auto log_b = EtcdRevisionLog::Connect(o);
  ASSERT_TRUE(log_a.ok());
  ASSERT_TRUE(log_b.ok());
  auto a = OpenCatalog(log_a->get());
  auto b = OpenCatalog(log_b->get());
  const Caller op = Caller::PlatformOperator();
  auto tenant = a->CreateTenant(op, "Contoso");
  ASSERT_TRUE(tenant.ok());
  auto ids = Import(a.get(), 4);
  ASSERT_TRUE(a->ClaimDevice(op, tenant->id(), ids[0]).ok());
  a.reset();
  log_a->reset();
  // b serves what a wrote and goes on writing. Its first write may meet a
  // revision it has not followed yet: Aborted, then the retry succeeds.
  auto t = b->GetTenant(op, "Contoso");
  ASSERT_TRUE(t.ok()) << t.status();
  auto d0 = b->GetDevice(op, tenant->id(), ids[0]);
  ASSERT_TRUE(d0.ok()) << d0.status();
  absl::StatusOr<v1::Device> d1;
  for (int i = 0; i < 3; ++i) {
    d1 = b->ClaimDevice(op, tenant->id(), ids[1]);
    if (!absl::IsAborted(d1.status())) break;
  }
  ASSERT_TRUE(d1.ok()) << d1.status();
  EXPECT_EQ(b->revision(), 4);  // tenant, import, claim by a, claim by b
}

}  // namespace
}  // namespace sphere::management
