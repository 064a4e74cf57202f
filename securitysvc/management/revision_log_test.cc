// One suite, two backends: every test runs on the embedded log (MemoryStore)
// and on a real etcd member started by the fixture on loopback (data in
// TEST_TMPDIR, killed when the suite ends). Without /usr/bin/etcd the etcd
// instantiation is skipped with a message. A second part runs the catalog
// itself on both backends, and two catalogs (two management replicas) on one
// etcd.
#include "securitysvc/management/revision_log.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
#include "common/store/memory_store.h"
#include "common/util/clock.h"
#include "gtest/gtest.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/management/catalog_test_support.h"
#include "securitysvc/management/compactor.h"
#include "securitysvc/management/etcd_cluster.h"
#include "securitysvc/management/etcd_revision_log.h"
#include "securitysvc/management/leader_election.h"
#include "securitysvc/management/shard_leases.h"

namespace sphere::management {
namespace {

std::string TmpDir(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return absl::StrCat(t ? t : "/tmp", "/", name);
}

// Shared etcd member for the whole binary: started on first use, killed by
// the test environment's TearDown when the suite ends.
std::unique_ptr<EtcdCluster>& SharedEtcdSlot() {
  static auto* slot = new std::unique_ptr<EtcdCluster>();
  return *slot;
}

class EtcdEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { SharedEtcdSlot().reset(); }
};
[[maybe_unused]] ::testing::Environment* const kEtcdEnvironment =
    ::testing::AddGlobalTestEnvironment(new EtcdEnvironment);

EtcdCluster* SharedEtcd() {
  static bool tried = false;
  if (!tried) {
    tried = true;
    if (EtcdCluster::BinaryAvailable()) {
      EtcdClusterOptions o;
      o.data_dir = TmpDir("etcd-suite");
      auto c = EtcdCluster::Start(o);
      if (c.ok()) {
        SharedEtcdSlot() = *std::move(c);
      } else {
        ADD_FAILURE() << c.status();
      }
    }
  }
  return SharedEtcdSlot().get();
}

int next_prefix = 0;

// Backend owns one RevisionLog (and its store) per test.
struct EmbeddedBackend {
  static constexpr bool kShared = false;
  EtcdOptions options;  // unused: keeps the typed tests uniform
  std::unique_ptr<store::Store> store;
  std::unique_ptr<RevisionLog> log;
  absl::Status Open() {
    auto s = store::OpenMemoryStore(Catalog::ColumnFamilies());
    if (!s.ok()) return s.status();
    store = *std::move(s);
    auto l = EmbeddedRevisionLog::Open(store.get());
    if (!l.ok()) return l.status();
    log = *std::move(l);
    return absl::OkStatus();
  }
  std::unique_ptr<RevisionLog> Another() { return nullptr; }
};

struct EtcdBackend {
  static constexpr bool kShared = true;
  std::unique_ptr<RevisionLog> log;
  EtcdOptions options;
  absl::Status Open() {
    EtcdCluster* etcd = SharedEtcd();
    if (etcd == nullptr) return absl::FailedPreconditionError("no etcd");
    options.endpoints = etcd->client_endpoints();
    // A fresh key prefix per test: tests never see each other's keys.
    options.prefix = absl::StrCat("/test", ++next_prefix, "/");
    options.max_txn_ops = 1024;
    auto l = EtcdRevisionLog::Connect(options);
    if (!l.ok()) return l.status();
    log = *std::move(l);
    return absl::OkStatus();
  }
  std::unique_ptr<RevisionLog> Another() {
    auto l = EtcdRevisionLog::Connect(options);
    return l.ok() ? std::unique_ptr<RevisionLog>(l->release()) : nullptr;
  }
};

template <typename Backend>
class RevisionLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Backend::kShared) {
      ASSERT_TRUE(backend_.Open().ok());
      return;
    }
    if (!EtcdCluster::BinaryAvailable()) {
      GTEST_SKIP() << "/usr/bin/etcd is absent (install etcd-server with "
                      "./sphere deps); the etcd backend is not tested";
    }
    absl::Status s = backend_.Open();
    ASSERT_TRUE(s.ok()) << s;
  }
  RevisionLog* log() { return backend_.log.get(); }
  Backend backend_;
};

using Backends = ::testing::Types<EmbeddedBackend, EtcdBackend>;
TYPED_TEST_SUITE(RevisionLogTest, Backends);

store::WriteBatch Put(const std::string& cf, const std::string& key,
                      const std::string& value) {
  store::WriteBatch b;
  b.Put(cf, key, value);
  return b;
}

TYPED_TEST(RevisionLogTest, TxnAssignsIncreasingRevisionsAndModRevisions) {
  RevisionLog* log = this->log();
  auto r1 = log->Txn({}, Put("meta", "a", "1"));
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_TRUE(r1->succeeded);
  auto r2 = log->Txn({}, Put("meta", "b", "2"));
  ASSERT_TRUE(r2.ok());
  EXPECT_GT(r2->revision, r1->revision);
  auto a = log->Stat("meta", "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mod_revision, r1->revision);
  EXPECT_EQ(a->value, "1");
  EXPECT_GE(a->revision, r2->revision);
  auto missing = log->Stat("meta", "nope");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->mod_revision, 0);
  EXPECT_EQ(*log->Revision(), r2->revision);
}

TYPED_TEST(RevisionLogTest, StaleCompareFailsAndChangesNothing) {
  RevisionLog* log = this->log();
  auto first = log->Txn({}, Put("meta", "revision", "1"));
  ASSERT_TRUE(first.ok());
  auto second = log->Txn({{"meta", "revision", first->revision}},
                         Put("meta", "revision", "2"));
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(second->succeeded);
  // A writer that still believes the first mod revision loses.
  store::WriteBatch loser = Put("meta", "revision", "X");
  loser.Put("devices", "d1", "claimed-by-loser");
  auto stale = log->Txn({{"meta", "revision", first->revision}}, loser);
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(*log->Get("meta", "revision"), "2");
  EXPECT_TRUE(absl::IsNotFound(log->Get("devices", "d1").status()));
  EXPECT_EQ(*log->Revision(), second->revision);
}

TYPED_TEST(RevisionLogTest, CompareAbsentIsCreateOnce) {
  RevisionLog* log = this->log();
  auto a = log->Txn({{"devices", "d1", 0}}, Put("devices", "d1", "first"));
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->succeeded);
  auto b = log->Txn({{"devices", "d1", 0}}, Put("devices", "d1", "second"));
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->succeeded);
  EXPECT_EQ(*log->Get("devices", "d1"), "first");
}

TYPED_TEST(RevisionLogTest, ScanPagesInKeyOrderFromStart) {
  RevisionLog* log = this->log();
  store::WriteBatch b;
  for (int i = 0; i < 1200; ++i) {
    b.Put("log", absl::StrFormat("%020d", i), absl::StrCat(i));
  }
  b.Put("tenants", "other", "not in log/");
  for (size_t off = 0; off < b.ops().size(); off += 1000) {
    store::WriteBatch part;
    for (size_t i = off; i < std::min(off + 1000, b.ops().size()); ++i) {
      part.Put(b.ops()[i].cf, b.ops()[i].key, b.ops()[i].value);
    }
    ASSERT_TRUE(log->Txn({}, part).ok());
  }
  std::vector<std::string> seen;
  ASSERT_TRUE(log->Scan(
                     "log", "",
                     [&](absl::string_view, absl::string_view v) {
                       seen.emplace_back(v);
                       return true;
                     },
                     absl::StrFormat("%020d", 100))
                  .ok());
  ASSERT_EQ(seen.size(), 1100u);
  EXPECT_EQ(seen.front(), "100");
  EXPECT_EQ(seen.back(), "1199");
}

TYPED_TEST(RevisionLogTest, SnapshotReadsOneRevision) {
  RevisionLog* log = this->log();
  ASSERT_TRUE(log->Txn({}, Put("tenants", "t1", "old")).ok());
  auto snap = log->NewSnapshot();
  ASSERT_TRUE(snap.ok());
  ASSERT_TRUE(log->Txn({}, Put("tenants", "t1", "new")).ok());
  ASSERT_TRUE(log->Txn({}, Put("tenants", "t2", "added")).ok());
  EXPECT_EQ(*(*snap)->Get("tenants", "t1"), "old");
  int n = 0;
  ASSERT_TRUE((*snap)
                  ->Scan("tenants", "",
                         [&](absl::string_view, absl::string_view) {
                           ++n;
                           return true;
                         })
                  .ok());
  EXPECT_EQ(n, 1);
  EXPECT_EQ(*log->Get("tenants", "t1"), "new");
}

// WatchRecorder collects watch deliveries and lets the test wait for them.
struct WatchRecorder {
  absl::Mutex mu;
  std::vector<std::pair<int64_t, RevisionLog::Change>> got;
  absl::Status error;
  RevisionLog::WatchCallbacks Callbacks() {
    RevisionLog::WatchCallbacks cb;
    cb.on_changes = [this](int64_t rev,
                           const std::vector<RevisionLog::Change>& ch) {
      absl::MutexLock lock(&mu);
      for (const auto& c : ch) got.push_back({rev, c});
    };
    cb.on_error = [this](const absl::Status& s) {
      absl::MutexLock lock(&mu);
      error = s;
    };
    return cb;
  }
  bool WaitFor(size_t n) {
    absl::MutexLock lock(&mu);
    return mu.AwaitWithTimeout(
        absl::Condition(
            +[](WatchRecorder* r) { return r->got.size() >= r->n_wanted; },
            SetWanted(n)),
        absl::Seconds(20));
  }
  WatchRecorder* SetWanted(size_t n) {
    n_wanted = n;
    return this;
  }
  size_t n_wanted = 0;
};

TYPED_TEST(RevisionLogTest, WatchDeliversEveryLaterTxnInOrder) {
  RevisionLog* log = this->log();
  ASSERT_TRUE(log->Txn({}, Put("meta", "before", "x")).ok());
  WatchRecorder rec;
  auto w = log->Watch(*log->Revision() + 1, rec.Callbacks());
  ASSERT_TRUE(w.ok()) << w.status();
  std::vector<int64_t> revs;
  for (int i = 0; i < 5; ++i) {
    store::WriteBatch b = Put("devices", absl::StrCat("d", i), "v");
    // Deletes of existing keys only: etcd reports no event for deleting an
    // absent key.
    if (i == 0) {
      b.Delete("meta", "before");
    } else {
      b.Delete("devices", absl::StrCat("d", i - 1));
    }
    auto r = log->Txn({}, b);
    ASSERT_TRUE(r.ok());
    revs.push_back(r->revision);
  }
  ASSERT_TRUE(rec.WaitFor(10));
  absl::MutexLock lock(&rec.mu);
  ASSERT_EQ(rec.got.size(), 10u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(rec.got[2 * i].first, revs[i]);
    EXPECT_EQ(rec.got[2 * i].second.cf, "devices");
    EXPECT_EQ(rec.got[2 * i].second.key, absl::StrCat("d", i));
    EXPECT_EQ(rec.got[2 * i].second.value, "v");
    EXPECT_TRUE(rec.got[2 * i + 1].second.is_delete);
  }
}

TYPED_TEST(RevisionLogTest, WatchFromCompactedRevisionIsOutOfRange) {
  RevisionLog* log = this->log();
  ASSERT_TRUE(log->Txn({}, Put("meta", "a", "1")).ok());
  auto r = log->Txn({}, Put("meta", "a", "2"));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(log->Compact(r->revision).ok());
  WatchRecorder rec;
  auto w = log->Watch(r->revision - 1, rec.Callbacks());
  if (!w.ok()) {
    EXPECT_TRUE(absl::IsOutOfRange(w.status())) << w.status();
    return;
  }
  // etcd reports it on the stream.
  absl::MutexLock lock(&rec.mu);
  ASSERT_TRUE(rec.mu.AwaitWithTimeout(
      absl::Condition(
          +[](absl::Status* s) { return !s->ok(); }, &rec.error),
      absl::Seconds(20)));
  EXPECT_TRUE(absl::IsOutOfRange(rec.error)) << rec.error;
}

// ---- The catalog on both backends ----------------------------------------

template <typename Backend>
class CatalogOnLogTest : public RevisionLogTest<Backend> {
 protected:
  void SetUp() override {
    RevisionLogTest<Backend>::SetUp();
    if (this->IsSkipped() || this->HasFatalFailure()) return;
    keys_ = TestCatalogKeys::Create(clock_.Now());
  }
  std::unique_ptr<Catalog> Open(RevisionLog* log) {
    return OpenTestCatalog(log, &clock_, keys_);
  }
  std::vector<std::string> Import(Catalog* c, int n) {
    return ImportTestDevices(c, n);
  }

  FakeClock clock_;
  TestCatalogKeys keys_;
};

TYPED_TEST_SUITE(CatalogOnLogTest, Backends);

// Drain reads a watch until it is live and empty.
std::vector<v1::WatchEvent> Drain(Catalog::WatchStream* w) {
  std::vector<v1::WatchEvent> all;
  while (true) {
    std::vector<v1::WatchEvent> page;
    absl::Status s = w->Next(100, &page);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok() || page.empty()) return all;
    for (auto& e : page) all.push_back(std::move(e));
  }
}

TYPED_TEST(CatalogOnLogTest, ClaimWatchCompactThenSnapshot) {
  auto c = this->Open(this->log());
  ASSERT_NE(c, nullptr);
  const Caller op = Caller::PlatformOperator();
  auto tenant = c->CreateTenant(op, "Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  auto ids = this->Import(c.get(), 3);
  auto claimed = c->ClaimDevice(op, tenant->id(), ids[0]);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  const int64_t rev = c->revision();
  EXPECT_EQ(rev, 3);  // tenant, import, claim: one revision per event

  auto w = c->OpenWatch(Caller::Internal(), 2, {});
  ASSERT_TRUE(w.ok());
  auto events = Drain(w->get());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].revision(), 2);
  EXPECT_EQ(events[1].device().id(), ids[0]);

  ASSERT_TRUE(c->Compact(rev + 1).ok());
  EXPECT_EQ(c->compacted_revision(), rev + 1);
  auto after = c->OpenWatch(Caller::Internal(), 2, {});
  ASSERT_TRUE(after.ok());
  auto snap = Drain(after->get());
  ASSERT_FALSE(snap.empty());
  EXPECT_TRUE(snap.front().snapshot());
  EXPECT_EQ(snap.front().revision(), rev);
  EXPECT_TRUE(snap.back().snapshot_end());
  int devices = 0;
  for (const auto& e : snap) devices += e.has_device() ? 1 : 0;
  EXPECT_EQ(devices, 1);  // only the claimed one

  // Reopening (a management restart) reads the same state.
  c.reset();
  auto again = this->Open(this->log());
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->revision(), rev);
  EXPECT_EQ(again->compacted_revision(), rev + 1);
  auto d = again->GetDevice(op, tenant->id(), ids[0]);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->state(), v1::CLAIMED);
}

struct NotLeader final : LeaderElection {
  bool IsLeader() const override { return false; }
  std::string id() const override { return "follower"; }
};

// Compaction is once-only work: the leader compacts, a follower does not.
TYPED_TEST(CatalogOnLogTest, CompactorRunsOnlyOnTheLeader) {
  auto c = this->Open(this->log());
  ASSERT_NE(c, nullptr);
  const Caller op = Caller::PlatformOperator();
  for (const char* name : {"A", "B", "C", "D", "E"}) {
    ASSERT_TRUE(c->CreateTenant(op, name).ok());
  }
  Compactor::Options o;
  o.interval = absl::ZeroDuration();  // RunOnce only: no thread
  o.keep_revisions = 2;
  NotLeader follower;
  Compactor idle(c.get(), &follower, o);
  EXPECT_EQ(*idle.RunOnce(), 0);
  EXPECT_EQ(c->compacted_revision(), 0);
  SoleLeader leader;
  Compactor active(c.get(), &leader, o);
  EXPECT_EQ(*active.RunOnce(), 4);  // keeps revisions 4 and 5
  EXPECT_EQ(c->compacted_revision(), 4);
  auto w = c->OpenWatch(Caller::Internal(), 2, {});
  ASSERT_TRUE(w.ok());
  auto events = Drain(w->get());
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events.front().snapshot());  // older than the compacted log
  auto recent = c->OpenWatch(Caller::Internal(), 4, {});
  ASSERT_TRUE(recent.ok());
  auto replay = Drain(recent->get());
  ASSERT_EQ(replay.size(), 2u);
  EXPECT_EQ(replay[0].revision(), 4);
}

// A shard that stops renewing its lease leaves the shard map; the others
// stay. Embedded: renewals on a FakeClock. etcd: a real 1 s etcd lease; the
// test waits for etcd's delete of the lease key (a watch event), not a time.
TYPED_TEST(CatalogOnLogTest, ExpiredShardLeaseLeavesTheRing) {
  auto c = this->Open(this->log());
  ASSERT_NE(c, nullptr);
  const Caller shard = Caller::Internal();
  for (const char* id : {"shard-0", "shard-1"}) {
    v1::Shard s;
    s.set_id(id);
    s.set_address("127.0.0.1:1");
    ASSERT_TRUE(c->RegisterShard(shard, s).ok());
  }
  std::unique_ptr<ShardLeases> leases;
  WatchRecorder rec;
  std::unique_ptr<RevisionLog::Watcher> watch;
  if (TypeParam::kShared) {
    auto channel = EtcdChannel(this->backend_.options);
    ASSERT_TRUE(channel.ok());
    auto w = this->log()->Watch(*this->log()->Revision() + 1, rec.Callbacks());
    ASSERT_TRUE(w.ok());
    watch = *std::move(w);
    leases = std::make_unique<EtcdShardLeases>(*channel,
                                               this->backend_.options.prefix,
                                               absl::Seconds(1), &this->clock_);
  } else {
    leases =
        std::make_unique<MemoryShardLeases>(&this->clock_, absl::Seconds(1));
  }
  ASSERT_TRUE(leases->Renew("shard-0").ok());
  ASSERT_TRUE(leases->Renew("shard-1").ok());
  SoleLeader leader;
  ShardSweeper sweeper(c.get(), leases.get(), &leader, absl::ZeroDuration());
  EXPECT_TRUE(sweeper.SweepOnce()->empty());  // both live

  // shard-1 stops renewing; shard-0 keeps renewing.
  this->clock_.Advance(absl::Seconds(2));  // past the start-up grace
  if (TypeParam::kShared) {
    // Wait for etcd to expire shard-1's lease (it deletes the key).
    absl::MutexLock lock(&rec.mu);
    ASSERT_TRUE(
        rec.mu.AwaitWithTimeout(absl::Condition(
                                    +[](WatchRecorder* r) {
                                      for (const auto& [rev, ch] : r->got) {
                                        if (ch.is_delete && ch.key == "shard-1")
                                          return true;
                                      }
                                      return false;
                                    },
                                    &rec),
                                absl::Seconds(20)));
  }
  ASSERT_TRUE(leases->Renew("shard-0").ok());
  auto removed = sweeper.SweepOnce();
  ASSERT_TRUE(removed.ok()) << removed.status();
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ(removed->front(), "shard-1");
  auto map = c->GetShardMap(shard);
  ASSERT_TRUE(map.ok());
  ASSERT_EQ(map->shards_size(), 1);
  EXPECT_EQ(map->shards(0).id(), "shard-0");
  // A follower replica removes nothing.
  NotLeader follower;
  ShardSweeper idle(c.get(), leases.get(), &follower, absl::ZeroDuration());
  EXPECT_TRUE(idle.SweepOnce()->empty());
}

// Tenant-keyed records, case-insensitive names and server-side paging work
// the same on both backends (on etcd the name index is a key comparison in
// the Txn, so a second replica cannot create "CONTOSO" either).
TYPED_TEST(CatalogOnLogTest, NamesIgnoreCaseAndListsPageOnEveryBackend) {
  auto c = this->Open(this->log());
  ASSERT_NE(c, nullptr);
  const Caller op = Caller::PlatformOperator();
  auto contoso = c->CreateTenant(op, "Contoso");
  ASSERT_TRUE(contoso.ok()) << contoso.status();
  ASSERT_TRUE(c->CreateTenant(op, "Fabrikam").ok());
  const int64_t revision = c->revision();
  EXPECT_TRUE(absl::IsAlreadyExists(c->CreateTenant(op, "contoso").status()));
  EXPECT_EQ(c->revision(), revision);
  auto found = c->GetTenant(op, "CONTOSO");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->id(), contoso->id());
  if (TypeParam::kShared) {
    auto other_log = this->backend_.Another();
    ASSERT_NE(other_log, nullptr);
    auto b = this->Open(other_log.get());
    ASSERT_NE(b, nullptr);
    EXPECT_TRUE(absl::IsAlreadyExists(b->CreateTenant(op, "cOnToSo").status()));
    EXPECT_EQ(b->GetTenant(op, "contoso")->id(), contoso->id());
  }
  std::set<std::string> created;
  for (int i = 0; i < 7; ++i) {
    auto p = c->CreateProduct(op, "Contoso", absl::StrCat("P", i), "");
    ASSERT_TRUE(p.ok()) << p.status();
    created.insert(p->id());
  }
  ASSERT_TRUE(c->CreateProduct(op, "Fabrikam", "F", "").ok());
  v1::ListProductsRequest req;
  req.set_tenant_id("contoso");
  req.set_page_size(3);
  std::multiset<std::string> seen;
  int pages = 0;
  while (pages++ < 10) {
    auto page = c->ListProducts(op, req);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->products_size(), 3);
    for (const v1::Product& p : page->products()) seen.insert(p.id());
    if (page->next_page_token().empty()) break;
    req.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), created);
  EXPECT_EQ(seen.size(), created.size());
  req.set_page_token("bogus");
  EXPECT_TRUE(absl::IsInvalidArgument(c->ListProducts(op, req).status()));
}

// Two management replicas on one etcd: racing claims of one device, exactly
// one wins; the other replica's watchers see the winner's events.
TYPED_TEST(CatalogOnLogTest, TwoReplicasNeverBothWinAClaim) {
  if (!TypeParam::kShared) GTEST_SKIP() << "the embedded log has one writer";
  auto other_log = this->backend_.Another();
  ASSERT_NE(other_log, nullptr);
  auto a = this->Open(this->log());
  auto b = this->Open(other_log.get());
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const Caller op = Caller::PlatformOperator();
  auto contoso = a->CreateTenant(op, "Contoso");
  ASSERT_TRUE(contoso.ok());
  auto fabrikam = a->CreateTenant(op, "Fabrikam");
  ASSERT_TRUE(fabrikam.ok());
  // b's live watcher must see what a commits.
  absl::Mutex wake_mu;
  bool woken = false;
  Catalog::WatchOptions wopts;
  wopts.wakeup = [&] {
    absl::MutexLock lock(&wake_mu);
    woken = true;
  };
  auto wb = b->OpenWatch(Caller::Internal(), 0, wopts);
  ASSERT_TRUE(wb.ok());
  Drain(wb->get());

  constexpr int kDevices = 8;
  auto ids = this->Import(a.get(), kDevices);
  int a_wins = 0, b_wins = 0;
  for (const std::string& id : ids) {
    absl::StatusOr<v1::Device> ra, rb;
    std::thread ta([&] {
      for (int i = 0; i < 20; ++i) {
        ra = a->ClaimDevice(op, contoso->id(), id);
        if (!absl::IsAborted(ra.status())) break;
      }
    });
    std::thread tb([&] {
      for (int i = 0; i < 20; ++i) {
        rb = b->ClaimDevice(op, fabrikam->id(), id);
        if (!absl::IsAborted(rb.status())) break;
      }
    });
    ta.join();
    tb.join();
    EXPECT_NE(ra.ok(), rb.ok()) << ra.status() << " / " << rb.status();
    if (!ra.ok()) {
      EXPECT_TRUE(absl::IsNotFound(ra.status())) << ra.status();
    }
    if (!rb.ok()) {
      EXPECT_TRUE(absl::IsNotFound(rb.status())) << rb.status();
    }
    a_wins += ra.ok();
    b_wins += rb.ok();
    // The stored owner is the winner.
    auto stored =
        a->GetDevice(op, ra.ok() ? contoso->id() : fabrikam->id(), id);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->tenant_id(), ra.ok() ? contoso->id() : fabrikam->id());
  }
  EXPECT_EQ(a_wins + b_wins, kDevices);
  // Both catalogs converge on one revision, and b's watcher saw every event.
  const int64_t final_rev = std::max(a->revision(), b->revision());
  std::vector<v1::WatchEvent> seen;
  for (int i = 0;
       i < 1000 && (seen.empty() || seen.back().revision() < final_rev); ++i) {
    auto page = Drain(wb->get());  // arms the wakeup when it comes back empty
    seen.insert(seen.end(), page.begin(), page.end());
    if (!seen.empty() && seen.back().revision() >= final_rev) break;
    absl::MutexLock lock(&wake_mu);
    wake_mu.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(10));
    woken = false;
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().revision(), final_rev);
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].revision(), seen[i - 1].revision() + 1);
  }
}

// Two replicas campaign; exactly one leads; when it goes (its lease is
// revoked) the other takes over.
TEST(EtcdLeaderElectionTest, OneLeaderAndFailover) {
  if (!EtcdCluster::BinaryAvailable()) {
    GTEST_SKIP() << "/usr/bin/etcd is absent (install etcd-server)";
  }
  EtcdCluster* etcd = SharedEtcd();
  ASSERT_NE(etcd, nullptr);
  EtcdOptions o;
  o.endpoints = etcd->client_endpoints();
  auto channel = EtcdChannel(o);
  ASSERT_TRUE(channel.ok());
  absl::Mutex mu;
  int leaders = 0;
  auto make = [&](const std::string& id) {
    EtcdElectionOptions e;
    e.key = "/test-election/leader";
    e.candidate_id = id;
    e.ttl = absl::Seconds(3);
    e.on_change = [&](bool leader) {
      absl::MutexLock lock(&mu);
      leaders += leader ? 1 : -1;
    };
    return *EtcdLeaderElection::Start(*channel, e);
  };
  auto a = make("a");
  auto b = make("b");
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(
                                +[](int* n) { return *n == 1; }, &leaders),
                            absl::Seconds(20)));
  }
  EXPECT_NE(a->IsLeader(), b->IsLeader());
  auto& leader = a->IsLeader() ? a : b;
  auto& follower = a->IsLeader() ? b : a;
  leader.reset();  // revokes its lease
  {
    absl::MutexLock lock(&mu);
    ASSERT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(
                                +[](int* n) { return *n == 1; }, &leaders),
                            absl::Seconds(20)));
  }
  EXPECT_TRUE(follower->IsLeader());
}

}  // namespace
}  // namespace sphere::management
