// The load generator as a correctness check: a small fleet through every
// phase this cluster serves, against a real local cluster (management + 2
// shards on port 0), and the shard-restart fault scenario.
//
// Beyond loadgen's own report (whose schema is checked), the devices are
// checked independently: management lists the tenant's devices (all
// claimed), and the shards' DeviceStatusService records a successful
// attestation for every one of them.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/attestation_client.h"
#include "client/shard_ring.h"
#include "common/util/file.h"
#include "tests/cluster_fixture.h"

namespace sphere::testing {
namespace {

std::vector<std::string> TenantDevices(LocalCluster* cluster,
                                       const std::string& tenant) {
  std::vector<std::string> ids;
  std::string token;
  do {
    v1::ListDevicesRequest req;
    req.set_tenant_id(tenant);
    req.set_page_size(1000);
    req.set_page_token(token);
    auto page = UnaryCall<v1::ListDevicesResponse>(
        [&](auto* c, auto& r, auto* o) {
          return cluster->management()->ListDevices(c, r, o);
        },
        req);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) break;
    for (const auto& d : page->devices()) {
      EXPECT_EQ(d.state(), v1::CLAIMED) << d.id();
      ids.push_back(d.id());
    }
    token = page->next_page_token();
  } while (!token.empty());
  return ids;
}

struct OwnerRecords {
  size_t attested = 0;           // a successful attestation recorded
  size_t installed_loadgen = 0;  // last update: loadgen's app INSTALLED
};

// OnOwner reads what the owning shard of each of `ids` records.
OwnerRecords OnOwner(LocalCluster* cluster,
                     const std::vector<std::string>& ids) {
  OwnerRecords out;
  client::ShardRing ring(
      client::ShardMapFromEndpoints(cluster->config().shards));
  for (const auto& shard : cluster->config().shards) {
    std::vector<std::string> mine;
    for (const auto& id : ids) {
      if (ring.Owner(id).id() == shard.id) mine.push_back(id);
    }
    auto stub = v1::DeviceStatusService::NewStub(
        rpc::NewChannel(shard.address, cluster->OperatorTls()));
    for (size_t i = 0; i < mine.size(); i += 500) {
      v1::GetDeviceStatusRequest req;
      for (size_t k = i; k < std::min(mine.size(), i + 500); ++k) {
        req.add_device_ids(mine[k]);
      }
      auto resp = UnaryCall<v1::GetDeviceStatusResponse>(
          [&](auto* c, auto& r, auto* o) {
            return stub->GetDeviceStatus(c, r, o);
          },
          req);
      EXPECT_TRUE(resp.ok()) << resp.status();
      if (!resp.ok()) continue;
      for (const auto& d : resp->devices()) {
        out.attested += d.last_attested_unix_ms() > 0;
        out.installed_loadgen +=
            d.last_update_result() == "INSTALLED" &&
            absl::StrContains(d.last_update_component(), "loadgen-app");
      }
    }
  }
  return out;
}

size_t AttestedOnOwner(LocalCluster* cluster,
                       const std::vector<std::string>& ids) {
  return OnOwner(cluster, ids).attested;
}

// FleetAppsvc is an appsvc serving the fleet's tenant and product
// "loadgen" (the cluster's own appsvc, if any, serves Contoso/DW100), so
// the telemetry phase runs; stopped (SIGTERM, reaped) on destruction.
class FleetAppsvc {
 public:
  static absl::StatusOr<std::unique_ptr<FleetAppsvc>> Start(
      LocalCluster* cluster, const std::string& tenant) {
    const std::string dir = TestTmpDir("suite-appsvc");
    const std::string port_file = dir + "/port";
    auto child = SpawnPiped({BinaryPath("appsvc/appsvc"),
                             "--state_dir=" + cluster->config().state_dir,
                             "--db_dir=" + dir + "/db",
                             "--management=" + cluster->config().management,
                             "--tenant=" + tenant, "--product=loadgen",
                             "--web_port=-1", "--port_file=" + port_file});
    if (!child.ok()) return child.status();
    std::unique_ptr<FleetAppsvc> a(new FleetAppsvc(*child));
    // Ready once it logs "appsvc serving" (after the port file): read its
    // output until then; EOF means it exited.
    std::string out;
    char buf[4096];
    while (!absl::StrContains(out, "appsvc serving")) {
      const ssize_t n = ::read(child->out_fd, buf, sizeof buf);
      if (n <= 0) return absl::InternalError("appsvc exited: " + out);
      out.append(buf, n);
    }
    // Keep draining its output so its logging never blocks on the pipe.
    a->drain_ = std::thread([fd = child->out_fd] {
      char b[4096];
      while (::read(fd, b, sizeof b) > 0) {
      }
    });
    auto port = util::ReadFile(port_file);
    if (!port.ok()) return port.status();
    a->address_ = "127.0.0.1:" + *port;
    return a;
  }
  ~FleetAppsvc() {
    ::kill(child_.pid, SIGTERM);
    ::waitpid(child_.pid, nullptr, 0);
    if (drain_.joinable()) drain_.join();  // EOF once the child exited
    ::close(child_.out_fd);
  }
  const std::string& address() const { return address_; }

 private:
  explicit FleetAppsvc(PipedChild child) : child_(child) {}
  PipedChild child_;
  std::thread drain_;
  std::string address_;
};

nlohmann::json RunLoadgen(LocalCluster* cluster, const std::string& report,
                          const std::vector<std::string>& extra, int* rc) {
  std::vector<std::string> argv = {BinaryPath("loadgen/loadgen"),
                                   "--cluster",
                                   cluster->cluster_file(),
                                   "--report",
                                   report,
                                   "--floor-seconds",
                                   "0.2",
                                   "--phase-timeout",
                                   "600"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto [code, out] = RunCommand(argv);
  *rc = code;
  EXPECT_EQ(code, 0) << out;
  auto text = util::ReadFile(report + "/report.json");
  EXPECT_TRUE(text.ok()) << text.status() << "\n" << out;
  if (!text.ok()) return nlohmann::json::object();
  return nlohmann::json::parse(*text);
}

void ExpectSchema(const nlohmann::json& j) {
  for (const char* k : {"twins", "shards", "cores", "wall_s",
                        "rss_bytes_per_twin", "phases", "floors", "service"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  for (const char* p :
       {"manufacture", "register", "claim", "attest", "update_check",
        "update_install", "telemetry", "error_report"}) {
    ASSERT_TRUE(j["phases"].contains(p)) << p;
    for (const char* k : {"ops", "ops_per_s", "p50_ms", "p99_ms", "p999_ms",
                          "errors", "skipped"}) {
      EXPECT_TRUE(j["phases"][p].contains(k)) << p << "." << k;
    }
  }
  for (const char* k :
       {"ecdsa_sign_per_s", "ecdsa_verify_per_s", "attest_crypto_bound_per_s",
        "echo_rpc_per_s", "rocksdb_synced_writes_per_s"}) {
    EXPECT_GT(j["floors"][k].get<double>(), 0) << k;
  }
  EXPECT_TRUE(j["service"].contains("rss_bytes_per_device"));
}

// Small on purpose (the suite must stay well under a minute on a loaded
// 2-core machine): every served phase still runs on every twin, and
// update_install on kTwins * kUpdateFraction of them.
TEST(LoadgenSuiteTest, SmallFleetThroughEveryServedPhase) {
  constexpr int kTwins = 300;
  constexpr double kUpdateFraction = 0.02;  // 6 twins install
  auto started = LocalCluster::Start("loadgen-suite", 2);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<LocalCluster> cluster = std::move(*started);
  auto appsvc = FleetAppsvc::Start(cluster.get(), "LoadSuite");
  ASSERT_TRUE(appsvc.ok()) << appsvc.status();
  const std::string report = TestTmpDir("suite-report");
  int rc = 0;
  // telemetry: one batch of 100 readings per twin (one op per twin); every
  // second twin drops the certificate it kept from the attest phase, so it
  // attests again before proving (the path of an expired or never-kept
  // certificate) while the others prove with theirs.
  const nlohmann::json j =
      RunLoadgen(cluster.get(), report,
                 {"--twins", absl::StrCat(kTwins), "--tenant", "LoadSuite",
                  "--update-fraction", absl::StrCat(kUpdateFraction),
                  "--appsvc", (*appsvc)->address(), "--telemetry-batches", "1",
                  "--telemetry-batch", "100", "--prove-reattest-every", "2"},
                 &rc);
  ASSERT_EQ(rc, 0);
  ExpectSchema(j);
  EXPECT_EQ(j["twins"], kTwins);
  EXPECT_EQ(j["shards"], 2);
  EXPECT_EQ(j["mode"], "closed");
  EXPECT_EQ(j["transport"], "gateway");
  EXPECT_FALSE(j.contains("fault"));
  int ran = 0;
  for (const auto& [name, p] : j["phases"].items()) {
    if (p["skipped"].get<bool>()) {
      // Never faked: a skipped phase did nothing and says why.
      EXPECT_EQ(p["ops"], 0) << name;
      EXPECT_FALSE(p["skip_reason"].get<std::string>().empty()) << name;
      continue;
    }
    ++ran;
    if (name == "update_install") {
      // A fraction installs: one operation per installing twin.
      const int selected = static_cast<int>(kTwins * kUpdateFraction);
      EXPECT_EQ(p["ops"], selected);
      EXPECT_EQ(p["metrics"]["twins_selected"], selected);
      EXPECT_EQ(p["metrics"]["installed"], selected);
      // The end check: the shards' deployment counts match the twins.
      EXPECT_EQ(p["metrics"]["installed_on_service"], selected);
      // The fraction kept the session tokens of the attest phase (a catalog
      // barrier per shard, no re-attestation before the check); each twin
      // still re-attested after its install reboot, or it would not count.
      EXPECT_EQ(p["metrics"]["setup_reattested"], 0);
      // At least the app image (64 KiB payload) per twin came down.
      EXPECT_GE(p["metrics"]["bytes"].get<double>(), selected * 64.0 * 1024);
      EXPECT_GT(p["metrics"]["mb_per_s"].get<double>(), 0);
    } else {
      EXPECT_EQ(p["ops"], kTwins) << name;
    }
    EXPECT_TRUE(p["errors"].empty()) << name << ": " << p["errors"].dump();
    EXPECT_GT(p["ops_per_s"].get<double>(), 0) << name;
    EXPECT_LE(p["p50_ms"].get<double>(), p["p99_ms"].get<double>()) << name;
    EXPECT_LE(p["p99_ms"].get<double>(), p["p999_ms"].get<double>()) << name;
  }
  // update_check verifies every answer's signed metadata; error_report
  // checks every acknowledged event against QueryErrors (a failed check
  // fails the run: rc != 0 above).
  for (const char* p :
       {"manufacture", "register", "claim", "attest", "update_check",
        "update_install", "telemetry", "error_report"}) {
    EXPECT_FALSE(j["phases"][p]["skipped"].get<bool>()) << p;
  }
  EXPECT_GE(ran, 8);
  // telemetry's end check (appsvc's CountTelemetry) passed: every
  // acknowledged reading is stored, and every twin's batch was acknowledged.
  // error_report counts events (issue 12's target unit), not uploads: every
  // twin's 3 app crashes (--error-events default) acknowledged = durable.
  const auto& em = j["phases"]["error_report"]["metrics"];
  EXPECT_GE(em["acknowledged"].get<double>(), kTwins * 3.0);
  EXPECT_GT(em["events_per_s"].get<double>(), 0);
  const auto& tm = j["phases"]["telemetry"]["metrics"];
  EXPECT_EQ(tm["acknowledged"], kTwins * 100);
  EXPECT_EQ(tm["stored"], kTwins * 100);
  EXPECT_EQ(tm["twins_proven"], kTwins);
  EXPECT_EQ(tm["prove_from_kept_certificate"], kTwins / 2);
  EXPECT_EQ(tm["prove_reattested"], kTwins / 2);
  EXPECT_LT(tm["token_bytes_per_twin"].get<double>(), 1024);
  // Proving ran with the default bounded window (concurrent, not one
  // twin at a time), in appsvc's batch calls (ProveBatch, 128 per call).
  EXPECT_EQ(tm["prove_window"], 32);
  EXPECT_EQ(tm["prove_batch"], 128);
  EXPECT_GT(tm["proven_per_s"].get<double>(), 0);
  // CPU per operation in each process, for every phase (runner's PhaseCpu;
  // a small fleet may use less than one clock tick: present, not positive).
  for (const char* p : {"manufacture", "register", "claim", "update_check"}) {
    for (const char* k : {"loadgen_cpu_us_per_op", "shards_cpu_us_per_op",
                          "management_cpu_us_per_op"}) {
      ASSERT_TRUE(j["phases"][p]["metrics"].contains(k)) << p << " " << k;
      EXPECT_GE(j["phases"][p]["metrics"][k].get<double>(), 0) << p << " " << k;
    }
  }
  // Memory: idle twins measured after manufacture, and RSS after each phase.
  // (300 twins may fit in pages the allocator already held: only present.)
  EXPECT_TRUE(j.contains("rss_bytes_per_idle_twin"));
  for (const char* p : {"manufacture", "attest", "telemetry"}) {
    EXPECT_GT(j["phases"][p]["metrics"]["loadgen_rss_bytes"].get<double>(), 0)
        << p;
    EXPECT_GT(j["phases"][p]["metrics"]["shards_rss_bytes"].get<double>(), 0)
        << p;
  }

  // Independently of loadgen's counts: every device is claimed by the
  // tenant and its owning shard recorded the attestation; exactly the
  // fraction reported loadgen's app installed.
  const auto ids = TenantDevices(cluster.get(), "LoadSuite");
  EXPECT_EQ(ids.size(), static_cast<size_t>(kTwins));
  const OwnerRecords records = OnOwner(cluster.get(), ids);
  EXPECT_EQ(records.attested, ids.size());
  EXPECT_EQ(records.installed_loadgen,
            static_cast<size_t>(kTwins * kUpdateFraction));

  auto html = util::ReadFile(report + "/report.html");
  ASSERT_TRUE(html.ok());
  EXPECT_NE(html->find("aria-label='attest throughput'"), std::string::npos);
  EXPECT_NE(html->find("aria-label='latency percentiles'"), std::string::npos);
}

// The claim window at both of its batch sizes (D2: one window, k devices
// per step): k = 1 is ClaimDevice + AssignDevice per device, k = 7 is
// ClaimDevices with a short last batch (37 = 5 * 7 + 2). --last-phase claim
// stops the run after claim: the later phases are reported skipped (never
// faked), and management holds every device claimed into the fleet's group.
TEST(LoadgenSuiteTest, SmallFleetClaimWindowPerDeviceAndInBatchesThenStops) {
  constexpr int kTwins = 37;
  auto started = LocalCluster::Start("loadgen-claim", 2);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<LocalCluster> cluster = std::move(*started);
  struct Case {
    const char* tenant;
    const char* batch;
    const char* window;
  };
  for (const Case& c :
       {Case{"ClaimOne", "1", "4"}, Case{"ClaimSeven", "7", "64"}}) {
    SCOPED_TRACE(c.tenant);
    const std::string report = TestTmpDir(absl::StrCat("claim-", c.tenant));
    int rc = 0;
    const nlohmann::json j = RunLoadgen(
        cluster.get(), report,
        {"--twins", absl::StrCat(kTwins), "--tenant", c.tenant, "--claim-batch",
         c.batch, "--claim-window", c.window, "--last-phase", "claim"},
        &rc);
    ASSERT_EQ(rc, 0);
    ExpectSchema(j);
    for (const char* p : {"manufacture", "register", "claim"}) {
      EXPECT_FALSE(j["phases"][p]["skipped"].get<bool>()) << p;
      EXPECT_EQ(j["phases"][p]["ops"], kTwins) << p;
      EXPECT_TRUE(j["phases"][p]["errors"].empty())
          << p << ": " << j["phases"][p]["errors"].dump();
    }
    for (const char* p : {"attest", "update_check", "update_install",
                          "telemetry", "error_report"}) {
      EXPECT_TRUE(j["phases"][p]["skipped"].get<bool>()) << p;
      EXPECT_EQ(j["phases"][p]["ops"], 0) << p;
      EXPECT_EQ(j["phases"][p]["skip_reason"],
                "not selected: --last-phase claim")
          << p;
    }
    // Independently of loadgen: every device claimed, each exactly once,
    // and in the fleet's device group.
    const auto ids = TenantDevices(cluster.get(), c.tenant);
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(),
              static_cast<size_t>(kTwins));
    for (const std::string& id : ids) {
      v1::GetDeviceRequest req;
      req.set_tenant_id(c.tenant);
      req.set_device_id(id);
      auto d = UnaryCall<v1::Device>(
          [&](auto* ctx, auto& r, auto* o) {
            return cluster->management()->GetDevice(ctx, r, o);
          },
          req);
      ASSERT_TRUE(d.ok()) << d.status();
      EXPECT_FALSE(d->device_group_id().empty()) << id;
    }
  }
  // A phase name loadgen does not have is refused before anything runs.
  auto [code, out] = RunCommand({BinaryPath("loadgen/loadgen"), "--cluster",
                                 cluster->cluster_file(), "--twins", "1",
                                 "--last-phase", "claims"});
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("--last-phase"), std::string::npos) << out;
  EXPECT_EQ(TenantDevices(cluster.get(), "ClaimOne").size(),
            static_cast<size_t>(kTwins));
}

TEST(LoadgenSuiteTest, Fault_RestartShardMidAttestLosesNoAcknowledgedWrite) {
  constexpr int kTwins = 300;  // small: the target stays well under a minute
  auto started = LocalCluster::Start("loadgen-fault", 2);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<LocalCluster> cluster = std::move(*started);
  auto pid_before = cluster->ChildPid("shard-0");
  ASSERT_TRUE(pid_before.ok());
  const std::string report = TestTmpDir("fault-report");
  int rc = 0;
  const nlohmann::json j =
      RunLoadgen(cluster.get(), report,
                 {"--twins", absl::StrCat(kTwins), "--tenant", "LoadFault",
                  "--fault", "restart-shard", "--fault-at", "0.3"},
                 &rc);
  ASSERT_EQ(rc, 0);
  ExpectSchema(j);
  ASSERT_TRUE(j.contains("fault"));
  const auto& f = j["fault"];
  EXPECT_EQ(f["kind"], "restart-shard");
  EXPECT_EQ(f["shard"], "shard-0");
  EXPECT_GE(f["recover_s"].get<double>(), 0);  // the shard served again
  EXPECT_EQ(f["acknowledged"], kTwins);
  EXPECT_EQ(f["verified"], kTwins);
  EXPECT_EQ(f["lost"], 0);
  EXPECT_EQ(j["phases"]["attest"]["ops"], kTwins);
  // Only the failures a restart causes, each retried by the twins.
  for (const auto& [code, n] : j["phases"]["attest"]["errors"].items()) {
    EXPECT_TRUE(code == "UNAVAILABLE" || code == "DEADLINE_EXCEEDED" ||
                code == "UNAUTHENTICATED")
        << code << " " << n;
  }
  // The shard really was killed and restarted by local_cluster.
  auto pid_after = cluster->ChildPid("shard-0");
  ASSERT_TRUE(pid_after.ok());
  EXPECT_NE(*pid_after, *pid_before);
  const auto ids = TenantDevices(cluster.get(), "LoadFault");
  EXPECT_EQ(ids.size(), static_cast<size_t>(kTwins));
  EXPECT_EQ(AttestedOnOwner(cluster.get(), ids), ids.size());
}

}  // namespace
}  // namespace sphere::testing
