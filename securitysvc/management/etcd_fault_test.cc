// etcd backend under faults, with real etcd members on loopback (data in
// TEST_TMPDIR; every member is killed when the test ends). Skipped with a
// message when /usr/bin/etcd is absent.
//  - mTLS: a client without a certificate the etcd CA signed is refused.
//  - kill -9 one of three members under a stream of claims: claims continue
//    and every acknowledged one is in the catalog afterwards (Jepsen's "no
//    acknowledged write is lost").
//  - two management replicas (two catalogs) on one etcd: one is destroyed
//    (a killed replica), the other serves reads and writes.
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
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

struct Pki {
  crypto::EcPrivateKey ca_key = crypto::EcPrivateKey::Generate();
  std::string ca_pem;
  Pki() {
    crypto::CertificateSpec spec;
    spec.common_name = "etcd test CA";
    spec.subject_public_key = ca_key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    spec.usage = crypto::KeyUsage::kCa;
    ca_pem = *crypto::IssueCertificate(spec, ca_key, "");
  }
  std::pair<std::string, std::string> Issue(const std::string& cn,
                                            crypto::KeyUsage usage) {
    crypto::EcPrivateKey key = crypto::EcPrivateKey::Generate();
    crypto::CertificateSpec spec;
    spec.common_name = cn;
    spec.subject_public_key = key.PublicKey();
    spec.not_before = absl::Now() - absl::Hours(1);
    spec.not_after = absl::Now() + absl::Hours(24);
    spec.usage = usage;
    spec.dns_sans = {"localhost"};
    spec.ip_sans = {"127.0.0.1"};
    return {*crypto::IssueCertificate(spec, ca_key, ca_pem), key.ToPem()};
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

// kill -9 one of three etcd members while two writers claim devices through
// one catalog; every acknowledged claim survives, and claims go on after the
// kill.
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
  std::vector<std::string> ids = Import(catalog.get(), kDevices);
  ASSERT_EQ(ids.size(), static_cast<size_t>(kDevices));

  absl::Mutex mu;
  std::vector<std::string> acked;
  int acked_after_kill = 0;
  bool killed = false;
  std::atomic<int> next{0};
  auto claimer = [&] {
    while (true) {
      int i = next.fetch_add(1);
      if (i >= kDevices) return;
      // Retry what is retryable (Aborted, Unavailable); an AlreadyExists
      // after an Unavailable means our earlier attempt did apply.
      for (int attempt = 0; attempt < 50; ++attempt) {
        auto r = catalog->ClaimDevice(op, tenant->id(), ids[i]);
        if (r.ok() || absl::IsAlreadyExists(r.status())) {
          absl::MutexLock lock(&mu);
          acked.push_back(ids[i]);
          if (killed) ++acked_after_kill;
          break;
        }
        if (!absl::IsAborted(r.status()) &&
            !absl::IsUnavailable(r.status())) {
          ADD_FAILURE() << r.status();
          break;
        }
      }
    }
  };
  std::thread a(claimer), b(claimer);
  {
    // Kill once a third of the claims are acknowledged.
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(
        absl::Condition(
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
  absl::MutexLock lock(&mu);
  EXPECT_EQ(acked.size(), static_cast<size_t>(kDevices));
  EXPECT_GT(acked_after_kill, 0);
  // Every acknowledged claim is there, read through a fresh client and a
  // fresh catalog (another replica) on the surviving members.
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
