// Process-level crash tests in the spirit of RocksDB's db_crashtest: write
// under load from several client threads, SIGKILL the server process at a
// random moment, restart (or open its database offline), and compare with
// the record of what was acknowledged. Plus an at-rest check that no file a
// whole cluster run leaves behind holds a tenant name, product name or device
// id in plaintext.
//
// Every wait is a blocking read or a condition on recorded state (a pipe until
// the server logs "serving", a mutex condition until N acknowledgements), never
// a sleep. The kill points are random; the seed is printed with each run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/crypto/crypto.h"
#include "common/store/keyring.h"
#include "common/store/store.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/image.h"
#include "securitysvc/attestation/attestation.h"
#include "securitysvc/management/catalog.h"
#include "securitysvc/pki/pki.h"
#include "securitysvc/records.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/kill_under_load.h"
#include "tests/twin_helpers.h"
#include "twin/attestation_client.h"

namespace sphere::testing {
namespace {

// ---------------------------------------------------------------------------
// ManagementProcess runs the management binary on a state directory whose PKI
// was bootstrapped. Its stdout+stderr go to a pipe that a reader thread drains
// until EOF (so the server never blocks on logging); Start blocks until the
// "serving" log line or EOF.
class ManagementProcess {
 public:
  explicit ManagementProcess(std::string state_dir)
      : dir_(std::move(state_dir)) {}
  ~ManagementProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      Reap();
    }
  }

  absl::Status Start() {
    const std::string port_file = dir_ + "/run/management.port";
    std::filesystem::create_directories(dir_ + "/run");
    unlink(port_file.c_str());
    auto child = SpawnPiped({BinaryPath("securitysvc/management/management"),
                             absl::StrCat("--state-dir=", dir_), "--port=0",
                             absl::StrCat("--port-file=", port_file)});
    if (!child.ok()) return child.status();
    pid_ = child->pid;
    {
      absl::MutexLock lock(&mu_);
      serving_ = eof_ = false;
      output_.clear();
    }
    reader_ = std::thread([this, fd = child->out_fd] { Drain(fd); });
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](ManagementProcess* p) { return p->serving_ || p->eof_; }, this));
    if (!serving_) {
      return absl::UnavailableError(
          absl::StrCat("management exited before serving: ", output_));
    }
    auto text = util::ReadFile(port_file);
    int port = 0;
    if (!text.ok() ||
        !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port)) {
      return absl::InternalError("management served without a port file");
    }
    address_ = absl::StrCat("127.0.0.1:", port);
    return absl::OkStatus();
  }

  // Kill sends SIGKILL and reaps the process.
  void Kill() {
    kill(pid_, SIGKILL);
    Reap();
  }
  // Stop sends SIGTERM (graceful) and returns whether it exited 0.
  bool Stop() {
    kill(pid_, SIGTERM);
    return Reap() == 0;
  }

  const std::string& address() const { return address_; }
  std::string output() {
    absl::MutexLock lock(&mu_);
    return output_;
  }

 private:
  void Drain(int fd) {
    char buf[4096];
    std::string line;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
      absl::MutexLock lock(&mu_);
      output_.append(buf, n);
      if (!serving_ && absl::StrContains(output_, "\"msg\":\"serving\"")) {
        serving_ = true;
      }
    }
    close(fd);
    absl::MutexLock lock(&mu_);
    eof_ = true;
  }

  int Reap() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (reader_.joinable()) reader_.join();
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  const std::string dir_;
  pid_t pid_ = -1;
  std::string address_;
  std::thread reader_;
  absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
  std::string output_ ABSL_GUARDED_BY(mu_);
};

// Acknowledged is the record of every management write that returned OK.
struct Acknowledged {
  struct Product {
    std::string tenant_id, id, name;
  };
  struct Device {
    std::string tenant_id, id;
  };
  std::map<std::string, std::string> tenants;  // id -> name
  std::vector<Product> products;
  std::vector<std::string> imported_keys;  // public keys, import acked
  std::vector<Device> claimed;
  int64_t max_revision = 0;
  int count = 0;  // acknowledged writes, all cycles
};

// ManagementLoad drives one kill cycle: `threads` clients create tenants and
// products and import + claim devices as fast as they can, recording each
// acknowledgement; after `kill_after` acknowledgements the server is SIGKILLed
// and the clients stop at their next failure.
void ManagementLoad(ManagementProcess* mgmt, const rpc::TlsFiles& tls,
                    int cycle, int threads, int kill_after,
                    Acknowledged* acked) {
  // The load stops at `kill_after` acknowledgements, or early if every
  // client gave up (a failure before the kill, already reported).
  KillUnderLoad load(threads, kill_after);
  auto ack = [&](auto&& record) {
    load.Ack([&] {
      record();
      ++acked->count;
    });
  };
  load.Run(
      [&](int t) {
        auto stub = v1::ManagementService::NewStub(
            rpc::NewChannel(mgmt->address(), tls));
        auto failed = [&](const absl::Status& s, const char* what) {
          if (!load.killed()) {
            ADD_FAILURE() << what << " failed before the kill: " << s;
          }
        };
        auto run = [&] {
          for (int i = 0; !load.killed(); ++i) {
            v1::CreateTenantRequest treq;
            treq.set_name(absl::StrCat("c", cycle, "-t", t, "-", i));
            auto tenant = UnaryCall<v1::Tenant>(
                [&](auto* c, auto& r, auto* o) {
                  return stub->CreateTenant(c, r, o);
                },
                treq);
            if (!tenant.ok()) return failed(tenant.status(), "CreateTenant");
            ack([&] {
              acked->tenants[tenant->id()] = tenant->name();
              acked->max_revision =
                  std::max(acked->max_revision, tenant->create_revision());
            });

            v1::CreateProductRequest preq;
            preq.set_tenant_id(tenant->id());
            preq.set_name(absl::StrCat("p", cycle, "-", t, "-", i));
            auto product = UnaryCall<v1::Product>(
                [&](auto* c, auto& r, auto* o) {
                  return stub->CreateProduct(c, r, o);
                },
                preq);
            if (!product.ok()) return failed(product.status(), "CreateProduct");
            ack([&] {
              acked->products.push_back(
                  {tenant->id(), product->id(), product->name()});
            });

            for (int d = 0; d < 2; ++d) {
              std::string key = "\x04" + crypto::RandomBytes(64);
              {
                grpc::ClientContext ctx;
                ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
                v1::ImportDevicesResponse resp;
                auto writer = stub->ImportDevices(&ctx, &resp);
                v1::ImportDevicesRequest req;
                req.add_devices()->set_public_key(key);
                writer->Write(req);
                writer->WritesDone();
                auto s = rpc::FromGrpcStatus(writer->Finish());
                if (!s.ok()) return failed(s, "ImportDevices");
                if (resp.imported() != 1) {
                  ADD_FAILURE()
                      << "fresh key not imported: " << resp.ShortDebugString();
                  return;
                }
              }
              ack([&] { acked->imported_keys.push_back(key); });

              v1::ClaimDeviceRequest creq;
              creq.set_tenant_id(tenant->id());
              creq.set_device_id(management::DeviceIdForKey(key));
              auto device = UnaryCall<v1::Device>(
                  [&](auto* c, auto& r, auto* o) {
                    return stub->ClaimDevice(c, r, o);
                  },
                  creq);
              if (!device.ok()) return failed(device.status(), "ClaimDevice");
              ack([&] {
                acked->claimed.push_back({tenant->id(), device->id()});
              });
            }
            // The revision after our acknowledged writes: the restarted
            // catalog must be at least here.
            auto rev = UnaryCall<v1::CatalogRevision>(
                [&](auto* c, auto& r, auto* o) {
                  return stub->GetCatalogRevision(c, r, o);
                },
                v1::GetCatalogRevisionRequest());
            if (!rev.ok()) return failed(rev.status(), "GetCatalogRevision");
            load.WithLock([&] {
              acked->max_revision =
                  std::max(acked->max_revision, rev->revision());
            });
          }
        };
        run();
      },
      [&] { mgmt->Kill(); });
}

// VerifyManagement checks a restarted management server against `acked`:
// every acknowledged tenant, product and claim is there, the revision has not
// gone back, Watch from 0 replays a consistent snapshot that holds them all,
// and every acknowledged import is still known.
void VerifyManagement(const std::string& address, const rpc::TlsFiles& tls,
                      const Acknowledged& acked) {
  auto stub = v1::ManagementService::NewStub(rpc::NewChannel(address, tls));
  auto rev = UnaryCall<v1::CatalogRevision>(
      [&](auto* c, auto& r, auto* o) {
        return stub->GetCatalogRevision(c, r, o);
      },
      v1::GetCatalogRevisionRequest());
  ASSERT_TRUE(rev.ok()) << rev.status();
  EXPECT_GE(rev->revision(), acked.max_revision);

  for (const auto& [id, name] : acked.tenants) {
    v1::GetTenantRequest req;
    req.set_tenant_id(id);
    auto t = UnaryCall<v1::Tenant>(
        [&](auto* c, auto& r, auto* o) { return stub->GetTenant(c, r, o); },
        req);
    ASSERT_TRUE(t.ok()) << "acknowledged tenant " << name
                        << " lost: " << t.status();
    EXPECT_EQ(t->name(), name);
  }
  for (const auto& p : acked.products) {
    v1::GetProductRequest req;
    req.set_tenant_id(p.tenant_id);
    req.set_product(p.id);
    auto got = UnaryCall<v1::Product>(
        [&](auto* c, auto& r, auto* o) { return stub->GetProduct(c, r, o); },
        req);
    ASSERT_TRUE(got.ok()) << "acknowledged product " << p.name
                          << " lost: " << got.status();
    EXPECT_EQ(got->name(), p.name);
    EXPECT_EQ(got->tenant_id(), p.tenant_id);
  }
  for (const auto& d : acked.claimed) {
    v1::GetDeviceRequest req;
    req.set_tenant_id(d.tenant_id);
    req.set_device_id(d.id);
    auto got = UnaryCall<v1::Device>(
        [&](auto* c, auto& r, auto* o) { return stub->GetDevice(c, r, o); },
        req);
    ASSERT_TRUE(got.ok()) << "acknowledged claim of " << d.id
                          << " lost: " << got.status();
    EXPECT_EQ(got->state(), v1::CLAIMED) << d.id;
    EXPECT_EQ(got->tenant_id(), d.tenant_id) << d.id;
  }

  // Watch from 0: a snapshot, all at the current revision (nothing writes
  // now), closed by snapshot_end, holding every acknowledged object, with no
  // object twice and no product or device pointing at a missing tenant.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(20)));
    v1::WatchRequest req;
    req.set_start_revision(0);
    auto reader = stub->Watch(&ctx, req);
    std::map<std::string, v1::Tenant> tenants;
    std::map<std::string, v1::Product> products;
    std::map<std::string, v1::Device> devices;
    v1::WatchEvent e;
    bool ended = false;
    int events = 0;
    while (reader->Read(&e)) {
      ++events;
      EXPECT_TRUE(e.snapshot()) << e.ShortDebugString();
      EXPECT_EQ(e.revision(), rev->revision());
      if (e.snapshot_end()) {
        ended = true;
        break;
      }
      if (e.has_tenant()) {
        EXPECT_TRUE(tenants.emplace(e.tenant().id(), e.tenant()).second)
            << "tenant twice in snapshot: " << e.tenant().id();
      } else if (e.has_product()) {
        EXPECT_TRUE(products.emplace(e.product().id(), e.product()).second)
            << "product twice in snapshot: " << e.product().id();
      } else if (e.has_device()) {
        EXPECT_TRUE(devices.emplace(e.device().id(), e.device()).second)
            << "device twice in snapshot: " << e.device().id();
      }
    }
    ctx.TryCancel();
    reader->Finish().ok();
    ASSERT_TRUE(ended) << "no snapshot_end after " << events << " events";
    for (const auto& [id, name] : acked.tenants) {
      ASSERT_TRUE(tenants.count(id)) << "snapshot lacks tenant " << name;
      EXPECT_EQ(tenants[id].name(), name);
    }
    for (const auto& p : acked.products) {
      ASSERT_TRUE(products.count(p.id)) << "snapshot lacks product " << p.name;
    }
    for (const auto& d : acked.claimed) {
      ASSERT_TRUE(devices.count(d.id)) << "snapshot lacks device " << d.id;
      EXPECT_EQ(devices[d.id].state(), v1::CLAIMED);
      EXPECT_EQ(devices[d.id].tenant_id(), d.tenant_id);
    }
    for (const auto& [id, p] : products) {
      EXPECT_TRUE(tenants.count(p.tenant_id()))
          << "snapshot product " << id << " has no tenant";
    }
    for (const auto& [id, d] : devices) {
      if (!d.tenant_id().empty()) {
        EXPECT_TRUE(tenants.count(d.tenant_id()))
            << "snapshot device " << id << " has no tenant";
      }
    }
  }

  // Re-importing every acknowledged key finds each one already known (and so
  // changes nothing).
  if (!acked.imported_keys.empty()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
    v1::ImportDevicesResponse resp;
    auto writer = stub->ImportDevices(&ctx, &resp);
    v1::ImportDevicesRequest req;
    for (const auto& k : acked.imported_keys) {
      req.add_devices()->set_public_key(k);
    }
    writer->Write(req);
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
    EXPECT_EQ(resp.imported(), 0u);
    EXPECT_EQ(resp.already_known(), acked.imported_keys.size());
  }
}

TEST(DurabilityTest, ManagementSurvivesKill9UnderLoad) {
  const std::string dir = TestTmpDir("durability-management");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto pki = pki::Bootstrap(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  auto tls = pki->TlsFor("operator");
  ASSERT_TRUE(tls.ok()) << tls.status();

  Acknowledged acked;
  constexpr int kCycles = 3;
  for (int cycle = 0; cycle <= kCycles; ++cycle) {
    ManagementProcess mgmt(dir);
    ASSERT_TRUE(mgmt.Start().ok()) << mgmt.output();
    if (cycle > 0) {
      VerifyManagement(mgmt.address(), *tls, acked);
      if (HasFatalFailure()) return;
      std::cout << "cycle " << cycle << ": after kill -9, all " << acked.count
                << " acknowledged writes present (" << acked.tenants.size()
                << " tenants, " << acked.products.size() << " products, "
                << acked.imported_keys.size() << " imports, "
                << acked.claimed.size()
                << " claims; revision >= " << acked.max_revision << ")"
                << std::endl;
    }
    if (cycle == kCycles) {
      EXPECT_TRUE(mgmt.Stop()) << mgmt.output();
      break;
    }
    const int kill_after = RandomKillPoint(50, 300);
    ManagementLoad(&mgmt, *tls, cycle, /*threads=*/4, kill_after, &acked);
    if (HasFailure()) {
      std::cout << mgmt.output();
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// Cluster helpers.

// NewDevice manufactures an in-process device with the cluster's factory
// images, imports and claims it for `tenant_id`.
std::unique_ptr<mcu::Device> NewDevice(LocalCluster* cluster,
                                       const std::string& tenant_id,
                                       const std::string& seed) {
  auto dev = ManufactureGenuine(*cluster, seed);
  if (dev != nullptr) RegisterAndClaim(cluster, tenant_id, *dev);
  return dev;
}

// OpenShardDb opens a stopped shard's encrypted database offline.
absl::StatusOr<std::unique_ptr<store::Store>> OpenShardDb(
    const std::string& cluster_dir, const std::string& shard_id) {
  std::string sdir = absl::StrCat(cluster_dir, "/shards/", shard_id);
  auto key = store::LoadOrCreateDataKey(cluster_dir + "/pki/master.key",
                                        sdir + "/data.key.wrapped");
  if (!key.ok()) return key.status();
  store::RocksOptions o;
  o.data_key = *key;
  return store::OpenRocksStore(sdir + "/db", attestation::ColumnFamilies(), o);
}

// An acknowledged attestation: the shard answered OK with this serial.
struct AckedAttestation {
  std::string device_id;
  std::string serial;
};

TEST(DurabilityTest, ShardKeepsEveryAcknowledgedAttestationAcrossKill9) {
  auto started = LocalCluster::Start("durability-shard", 1);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<LocalCluster> cluster = std::move(*started);
  auto tenant = cluster->CreateTenant("Fabrikam");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  ASSERT_TRUE(cluster->CreateProduct(tenant->id(), "FW200").ok());

  constexpr int kThreads = 2;
  constexpr int kDevicesPerThread = 8;
  std::vector<std::vector<std::unique_ptr<mcu::Device>>> devices(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kDevicesPerThread; ++i) {
      devices[t].push_back(NewDevice(cluster.get(), tenant->id(),
                                     absl::StrCat("crash-", t, "-", i)));
      ASSERT_NE(devices[t].back(), nullptr);
    }
  }
  auto revision = cluster->ManagementRevision();
  ASSERT_TRUE(revision.ok()) << revision.status();
  // Every claim applied before the load: a challenge parked by the shard's
  // revision gate gives up after 5 s, and a failure before the kill fails
  // the test.
  ASSERT_TRUE(WaitForShardRevision(*cluster, 0, *revision).ok());
  auto pid = cluster->ChildPid("shard-0");
  ASSERT_TRUE(pid.ok()) << pid.status();

  KillUnderLoad load(kThreads, RandomKillPoint(30, 150));
  std::vector<AckedAttestation> acked;  // guarded by load's lock
  std::set<std::string> in_flight;      // device per thread at the kill
  load.Run(
      [&](int t) {
        auto stub = cluster->ShardStub(0, cluster->GatewayTls());
        auto run = [&]() -> std::string {
          for (int i = 0; !load.killed(); ++i) {
            mcu::Device* dev = devices[t][i % kDevicesPerThread].get();
            auto fail = [&](const std::string& what) {
              if (!load.killed()) ADD_FAILURE() << what << " before the kill";
              return dev->device_id();
            };
            v1::GetChallengeResponse challenge;
            {
              grpc::ClientContext ctx;
              ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
              v1::GetChallengeRequest req;
              req.set_device_id(dev->device_id());
              req.set_min_catalog_revision(*revision);
              grpc::Status st = stub->GetChallenge(&ctx, req, &challenge);
              if (!st.ok()) return fail("GetChallenge: " + st.error_message());
            }
            auto quote = dev->Quote(challenge.nonce());
            if (!quote.ok()) return fail(quote.status().ToString());
            v1::AttestRequest req;
            req.set_device_id(dev->device_id());
            *req.mutable_quote() = *quote;
            v1::AttestResponse resp;
            grpc::ClientContext ctx;
            ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
            grpc::Status st = stub->Attest(&ctx, req, &resp);
            if (!st.ok()) return fail("Attest: " + st.error_message());
            if (resp.certificate_serial().empty()) {
              return fail("Attest OK without a certificate serial");
            }
            load.Ack([&] {
              acked.push_back({dev->device_id(), resp.certificate_serial()});
            });
          }
          return "";
        };
        std::string interrupted = run();
        if (!interrupted.empty()) {
          load.WithLock([&] { in_flight.insert(interrupted); });
        }
      },
      [&] { ASSERT_EQ(kill(*pid, SIGKILL), 0); });
  ASSERT_FALSE(HasFailure());
  // local_cluster stops the rest of the cluster (and exits non-zero) when it
  // notices the dead shard; either way every process is gone after Stop().
  cluster->Stop().IgnoreError();

  // Offline: every acknowledged (device, serial) is in the history, and each
  // device's latest record carries its last acknowledged serial (or, for a
  // device whose attestation was in flight at the kill, a later one that is
  // itself in the history).
  auto db = OpenShardDb(cluster->dir(), "shard-0");
  ASSERT_TRUE(db.ok()) << db.status();
  std::map<std::string, std::set<std::string>> history;  // device -> serials
  ASSERT_TRUE((*db)
                  ->Scan(attestation::kHistoryCf, "",
                         [&](absl::string_view, absl::string_view v) {
                           v1::AttestationRecord r;
                           EXPECT_TRUE(r.ParseFromArray(v.data(), v.size()));
                           if (r.success()) {
                             history[r.device_id()].insert(
                                 r.certificate_serial());
                           }
                           return true;
                         })
                  .ok());
  std::map<std::string, std::string> last_acked;
  for (const auto& a : acked) {
    EXPECT_TRUE(history[a.device_id].count(a.serial))
        << "acknowledged attestation of " << a.device_id << " (serial "
        << a.serial << ") lost";
    last_acked[a.device_id] = a.serial;
  }
  for (const auto& [id, serial] : last_acked) {
    auto bytes = (*db)->Get(attestation::kDevicesCf, id);
    ASSERT_TRUE(bytes.ok()) << "device record of " << id << " lost";
    v1::AttestationRecord r;
    ASSERT_TRUE(r.ParseFromString(*bytes));
    EXPECT_TRUE(r.success());
    if (r.certificate_serial() != serial) {
      EXPECT_TRUE(in_flight.count(id))
          << id << ": latest record has serial " << r.certificate_serial()
          << ", last acknowledged " << serial;
      EXPECT_TRUE(history[id].count(r.certificate_serial()));
    }
  }
  std::cout << "shard kill -9 after " << acked.size()
            << " acknowledged attestations of " << last_acked.size()
            << " devices: all in the shard database" << std::endl;
}

// ScanForPlaintext reports every file under `root` containing any marker,
// adding the names of the files it read to `scanned`.
std::vector<std::string> ScanForPlaintext(
    const std::string& root, const std::map<std::string, std::string>& markers,
    std::vector<std::string>* scanned) {
  std::vector<std::string> hits;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)),
                      std::istreambuf_iterator<char>());
    scanned->push_back(entry.path().filename().string());
    for (const auto& [label, marker] : markers) {
      if (bytes.find(marker) != std::string::npos) {
        hits.push_back(absl::StrCat(entry.path().string(), " holds ", label));
      }
    }
  }
  return hits;
}

TEST(DurabilityTest, DatabasesHoldNoPlaintextTenantOrDeviceIds) {
  auto started = LocalCluster::Start("durability-atrest", 2);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<LocalCluster> cluster = std::move(*started);
  auto tenant = cluster->CreateTenant("Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  ASSERT_TRUE(cluster->CreateProduct(tenant->id(), "DW100").ok());

  std::map<std::string, std::string> markers = {{"\"Contoso\"", "Contoso"},
                                                {"\"DW100\"", "DW100"}};
  std::vector<std::unique_ptr<mcu::Device>> devices;
  for (int i = 0; i < 6; ++i) {
    devices.push_back(
        NewDevice(cluster.get(), tenant->id(), absl::StrCat("atrest-", i)));
    ASSERT_NE(devices.back(), nullptr);
    const std::string& id = devices.back()->device_id();
    auto raw = crypto::HexDecode(id);
    ASSERT_TRUE(raw.ok());
    ASSERT_EQ(raw->size(), 32u);
    markers[absl::StrCat("device id ", id)] = id;
    markers[absl::StrCat("raw device id ", id)] = *raw;
  }
  auto revision = cluster->ManagementRevision();
  ASSERT_TRUE(revision.ok());
  twin::AttestationClient client(cluster->config().shards,
                                 cluster->GatewayTls());
  for (auto& dev : devices) {
    mcu::Device* d = dev.get();
    auto r = client.Attest(
        d->device_id(), [d](absl::string_view n) { return d->Quote(n); },
        *revision);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);
  }
  ASSERT_TRUE(cluster->Stop().ok());

  const std::string dir = cluster->dir();
  // Positive control: the scanner finds a marker (the last one: a raw 32-byte
  // device id) planted mid-file.
  {
    const std::string canary = TestTmpDir("durability-canary");
    std::filesystem::create_directories(canary);
    ASSERT_TRUE(
        util::WriteFile(
            canary + "/f",
            absl::StrCat("xyz", std::prev(markers.end())->second, "abc"))
            .ok());
    std::vector<std::string> scanned;
    EXPECT_EQ(ScanForPlaintext(canary, markers, &scanned).size(), 1u);
  }
  auto count = [](const std::vector<std::string>& names, auto&& predicate) {
    return std::count_if(names.begin(), names.end(), predicate);
  };
  auto scan_all = [&](const char* phase) {
    std::vector<std::string> scanned;
    for (const char* sub : {"/management", "/shards"}) {
      for (const auto& hit : ScanForPlaintext(dir + sub, markers, &scanned)) {
        ADD_FAILURE() << phase << ": " << hit;
      }
    }
    // Every kind of file a RocksDB keeps was among them: per database
    // (management + 2 shards) a WAL, a MANIFEST and the plaintext info LOG.
    EXPECT_GE(
        count(scanned,
              [](const std::string& f) { return absl::EndsWith(f, ".log"); }),
        3)
        << phase;
    EXPECT_GE(count(scanned,
                    [](const std::string& f) {
                      return absl::StartsWith(f, "MANIFEST-");
                    }),
              3)
        << phase;
    EXPECT_GE(count(scanned, [](const std::string& f) { return f == "LOG"; }),
              3)
        << phase;
    std::cout << phase << ": " << scanned.size() << " files, " << markers.size()
              << " markers, no plaintext" << std::endl;
    return scanned;
  };
  // As the processes left them: the records are in the WALs.
  scan_all("after shutdown");

  // Open every database offline, check the markers really are in there
  // (decrypted), and flush the memtables so the records are in SST files too.
  auto mgmt_key = store::LoadOrCreateDataKey(
      dir + "/pki/master.key", dir + "/management/data.key.wrapped");
  ASSERT_TRUE(mgmt_key.ok()) << mgmt_key.status();
  {
    store::RocksOptions o;
    o.data_key = *mgmt_key;
    auto db = store::OpenRocksStore(dir + "/management/db",
                                    management::Catalog::ColumnFamilies(), o);
    ASSERT_TRUE(db.ok()) << db.status();
    bool found = false;
    ASSERT_TRUE((*db)
                    ->Scan("tenants", "",
                           [&](absl::string_view, absl::string_view v) {
                             found |= absl::StrContains(v, "Contoso");
                             return true;
                           })
                    .ok());
    EXPECT_TRUE(found) << "the management DB does not hold the tenant";
    ASSERT_TRUE((*db)->Flush().ok());
  }
  int device_records = 0;
  for (const auto& s : cluster->config().shards) {
    auto db = OpenShardDb(dir, s.id);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Scan(attestation::kDevicesCf, "",
                           [&](absl::string_view, absl::string_view) {
                             ++device_records;
                             return true;
                           })
                    .ok());
    ASSERT_TRUE((*db)->Flush().ok());
  }
  EXPECT_EQ(device_records, static_cast<int>(devices.size()));
  // Now the records are in SST files (management + 2 shards, at least one
  // each).
  auto scanned = scan_all("after offline flush");
  EXPECT_GE(
      count(scanned,
            [](const std::string& f) { return absl::EndsWith(f, ".sst"); }),
      3);
}

}  // namespace
}  // namespace sphere::testing
