// Metrics, logs and supervision of a real local cluster:
//  * every /metrics address in cluster.json serves Prometheus text that a
//    real parser (python3-prometheus-client) accepts, with per-method
//    counters that count exactly the calls made;
//  * logs are JSON lines (0640) with request ids and callers; every state
//    change is one audit event; echoed input is bounded;
//  * local_cluster restarts a SIGKILLed shard, which then attests devices.
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "mcu-model/device.h"
#include "protos/management.grpc.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/twin_helpers.h"

namespace sphere::testing {
namespace {

constexpr absl::string_view kMgmt = "/sphere.v1.ManagementService/";

// Scrape fetches http://ADDRESS/metrics and parses it with the Prometheus
// text parser of python3-prometheus-client (Debian's python3).
absl::StatusOr<nlohmann::json> Scrape(const std::string& address) {
  auto [rc, out] = RunCommand({"/usr/bin/python3",
                               BinaryPath("common/util/prometheus_scrape.py"),
                               absl::StrCat("http://", address, "/metrics")});
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("scrape of ", address, " failed: ", out.substr(0, 2000)));
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (!j.is_array()) return absl::InternalError("scraper printed no JSON");
  return j;
}

// Value sums the samples named `name` whose labels include `labels`.
double Value(const nlohmann::json& samples, const std::string& name,
             const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (const auto& s : samples) {
    if (s["name"] != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      match &= s["labels"].contains(k) && s["labels"][k] == v;
    }
    if (match && s["value"].is_number()) sum += s["value"].get<double>();
  }
  return sum;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// WaitForLog polls `path` (written asynchronously by local_cluster's log
// pump) until a line contains `needle`; returns the whole file.
std::string WaitForLog(const std::string& path, const std::string& needle) {
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  std::string text;
  while (absl::Now() < deadline) {
    text = ReadAll(path);
    if (absl::StrContains(text, needle)) return text;
    absl::SleepFor(absl::Milliseconds(10));  // poll with a deadline
  }
  ADD_FAILURE() << "no log line with " << needle << " in " << path;
  return text;
}

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "not a JSON object: " << line.substr(0, 300);
    if (j.is_object()) out.push_back(j);
  }
  return out;
}

// ListTenantsWithRequestId makes a harmless call carrying `request_id`.
void ListTenantsWithRequestId(LocalCluster& c, const std::string& request_id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(60)));  // shared CPUs
  ctx.AddMetadata("x-request-id", request_id);
  v1::ListTenantsResponse resp;
  grpc::Status st =
      c.management()->ListTenants(&ctx, v1::ListTenantsRequest(), &resp);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
}

// Health asks grpc.health.v1.Health/Check("") and waits for the channel to
// connect (wait_for_ready) up to `timeout`: true when SERVING.
bool Serving(const std::string& address, const rpc::TlsFiles& tls,
             absl::Duration timeout) {
  grpc::GenericStub stub(rpc::NewChannel(address, tls));
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(timeout));
  ctx.set_wait_for_ready(true);
  grpc::CompletionQueue cq;
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  auto call =
      stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) return false;
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const auto& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes == std::string("\x08\x01", 2);  // status: SERVING
}

TEST(MetricsE2eTest, EveryMetricsAddressParsesAndCountsCallsPerMethod) {
  auto c = LocalCluster::Start("obs-metrics", 2);
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& config = (*c)->config();
  ASSERT_EQ(config.metrics.size(), 3u);  // management + 2 shards
  ASSERT_TRUE(config.metrics.count("management"));
  ASSERT_TRUE(config.metrics.count("shard-0"));
  ASSERT_TRUE(config.metrics.count("shard-1"));

  auto tenant = (*c)->CreateTenant("Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  ASSERT_TRUE((*c)->CreateProduct(tenant->id(), "DW100").ok());
  for (int i = 0; i < 3; ++i) {
    v1::GetTenantRequest req;
    req.set_tenant_id("no-such-tenant");
    auto t = UnaryCall<v1::Tenant>(
        [&](auto* ctx, auto& r, auto* o) {
          return (*c)->management()->GetTenant(ctx, r, o);
        },
        req);
    EXPECT_FALSE(t.ok());
  }
  auto dev = ManufactureGenuine(**c, "obs-metrics-1");
  ASSERT_NE(dev, nullptr);
  RegisterAndClaim(c->get(), tenant->id(), *dev);
  auto attested = AttestViaClient(c->get(), dev.get());
  ASSERT_TRUE(attested.ok()) << attested.status();

  auto mgmt = Scrape(config.metrics.at("management"));
  ASSERT_TRUE(mgmt.ok()) << mgmt.status();
  const std::string handled = "grpc_server_handled_total";
  EXPECT_EQ(Value(*mgmt, handled,
                  {{"grpc_method", absl::StrCat(kMgmt, "CreateTenant")},
                   {"grpc_code", "OK"}}),
            1);
  EXPECT_EQ(Value(*mgmt, handled,
                  {{"grpc_method", absl::StrCat(kMgmt, "CreateProduct")},
                   {"grpc_code", "OK"}}),
            1);
  EXPECT_EQ(Value(*mgmt, handled,
                  {{"grpc_method", absl::StrCat(kMgmt, "ClaimDevice")},
                   {"grpc_code", "OK"}}),
            1);
  EXPECT_EQ(Value(*mgmt, handled,
                  {{"grpc_method", absl::StrCat(kMgmt, "GetTenant")},
                   {"grpc_code", "NOT_FOUND"}}),
            3);
  EXPECT_EQ(Value(*mgmt, "grpc_server_handling_seconds_count",
                  {{"grpc_method", absl::StrCat(kMgmt, "CreateTenant")}}),
            1);
  EXPECT_EQ(Value(*mgmt, "grpc_server_handling_seconds_bucket",
                  {{"grpc_method", absl::StrCat(kMgmt, "CreateTenant")},
                   {"le", "+Inf"}}),
            1);

  // The device attested once, on its owner shard: summed over the shards,
  // exactly one successful Attest.
  double attests = 0, challenges = 0;
  for (const auto& shard : config.shards) {
    auto samples = Scrape(config.metrics.at(shard.id));
    ASSERT_TRUE(samples.ok()) << samples.status();
    attests += Value(*samples, handled,
                     {{"grpc_method", "/sphere.v1.AttestationService/Attest"},
                      {"grpc_code", "OK"}});
    challenges +=
        Value(*samples, handled,
              {{"grpc_method", "/sphere.v1.AttestationService/GetChallenge"},
               {"grpc_code", "OK"}});
  }
  EXPECT_EQ(attests, 1);
  EXPECT_GE(challenges, 1);

  // Catalog lag per follower and store statistics on every shard.
  for (const auto& shard : config.shards) {
    auto samples = Scrape(config.metrics.at(shard.id));
    ASSERT_TRUE(samples.ok()) << samples.status();
    bool lag = false, applied = false, store = false;
    for (const auto& s : *samples) {
      if (s["name"] == "sphere_catalog_lag_revisions") {
        lag = true;
        EXPECT_EQ(s["labels"]["follower"], shard.id);
        EXPECT_GE(s["value"].get<double>(), 0);  // management answered
      }
      if (s["name"] == "sphere_catalog_applied_revision") {
        applied = true;
        EXPECT_GT(s["value"].get<double>(), 0);
      }
      store |= s["name"] == "sphere_store_estimated_keys";
    }
    EXPECT_TRUE(lag && applied && store) << shard.id;
  }
  EXPECT_TRUE(absl::c_any_of(*mgmt, [](const nlohmann::json& s) {
    return s["name"] == "sphere_store_estimated_keys";
  }));

  // The sphere.v1.Metrics gRPC endpoint serves the same registry.
  auto text = (*c)->Metrics(config.management);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(absl::StrContains(
      *text, absl::StrCat("grpc_server_handled_total{grpc_code=\"OK\","
                          "grpc_method=\"",
                          kMgmt, "CreateTenant\"} 1")))
      << text->substr(0, 3000);
}

TEST(LogsE2eTest, JsonLinesWithRequestIdsCallersAndOneAuditEventPerChange) {
  auto c = LocalCluster::Start("obs-logs", 1);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string log = (*c)->dir() + "/logs/management.log";
  auto tenant = (*c)->CreateTenant("Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  auto dev = ManufactureGenuine(**c, "obs-logs-1");
  ASSERT_NE(dev, nullptr);
  RegisterAndClaim(c->get(), tenant->id(), *dev);
  ASSERT_TRUE((*c)->Revoke(tenant->id(), dev->device_id()).ok());
  ListTenantsWithRequestId(**c, "obs-marker-1");

  std::string text = WaitForLog(log, "obs-marker-1");
  struct stat st;
  ASSERT_EQ(stat(log.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640);
  std::map<std::string, int> audits;
  bool saw_marker = false;
  for (const auto& j : JsonLines(text)) {
    ASSERT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg"));
    if (j["msg"] == "request") {
      EXPECT_TRUE(j.contains("request_id")) << j.dump();
      EXPECT_TRUE(j.contains("caller")) << j.dump();
      if (j["request_id"] == "obs-marker-1") {
        saw_marker = true;
        EXPECT_EQ(j["caller"], "CN=platform-operator");
        EXPECT_EQ(j["method"], absl::StrCat(kMgmt, "ListTenants"));
      }
    }
    if (j.contains("audit")) {
      EXPECT_EQ(j["audit"], true);
      EXPECT_FALSE(j["who"].get<std::string>().empty()) << j.dump();
      ++audits[j["what"]];
      if (j["what"] == "ClaimDevice" || j["what"] == "RevokeDevice") {
        EXPECT_TRUE(
            absl::StrContains(j["object"].get<std::string>(), dev->device_id()))
            << j.dump();
      }
      if (j["what"] == "CreateTenant") {
        EXPECT_TRUE(
            absl::StrContains(j["object"].get<std::string>(), tenant->id()))
            << j.dump();
      }
    }
    // The 5-second heartbeats are debug lines, off by default.
    EXPECT_NE(j["msg"], "shard registered") << j.dump();
  }
  EXPECT_TRUE(saw_marker);
  EXPECT_EQ(audits["CreateTenant"], 1);
  EXPECT_EQ(audits["ClaimDevice"], 1);
  EXPECT_EQ(audits["RevokeDevice"], 1);
  EXPECT_EQ(audits["ReleaseOs"], 2);  // the factory OS on both feeds
  EXPECT_EQ(audits.count("ListTenants"), 0u);
  EXPECT_EQ(audits.count("GetTenant"), 0u);
}

TEST(LogsE2eTest, Attack_HugeEchoedInputDoesNotGrowTheLog) {
  auto c = LocalCluster::Start("obs-logbound", 1);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string log = (*c)->dir() + "/logs/management.log";
  ListTenantsWithRequestId(**c, "obs-before");
  WaitForLog(log, "obs-before");
  const std::string huge(1 << 20, 'T');
  for (int i = 0; i < 5; ++i) {
    v1::GetTenantRequest req;
    req.set_tenant_id(huge);
    auto t = UnaryCall<v1::Tenant>(
        [&](auto* ctx, auto& r, auto* o) {
          return (*c)->management()->GetTenant(ctx, r, o);
        },
        req);
    EXPECT_FALSE(t.ok());
    EXPECT_LT(t.status().message().size(), 1024u) << "error echoes input";
  }
  ListTenantsWithRequestId(**c, "obs-after");
  std::string text = WaitForLog(log, "obs-after");
  size_t from = text.find("obs-before"), to = text.find("obs-after");
  ASSERT_LT(from, to);
  // 5 calls echoing 1 MiB each: at most a few KiB of log between markers.
  EXPECT_LT(to - from, 16u << 10);
  for (const auto& j : JsonLines(text)) {
    for (const auto& [k, v] : j.items()) {
      if (v.is_string()) EXPECT_LT(v.get<std::string>().size(), 512u) << k;
    }
  }
  // Nothing changed: no tenant was created.
  v1::ListTenantsResponse tenants;
  grpc::ClientContext ctx;
  ctx.set_deadline(rpc::Deadline(absl::Seconds(10)));
  ASSERT_TRUE((*c)->management()
                  ->ListTenants(&ctx, v1::ListTenantsRequest(), &tenants)
                  .ok());
  EXPECT_EQ(tenants.tenants_size(), 0);
}

TEST(SupervisionE2eTest, Fault_KilledShardIsRestartedAndAttestsAgain) {
  auto c = LocalCluster::Start("obs-supervise", 2);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string before_json = ReadAll((*c)->cluster_file());
  auto tenant = (*c)->CreateTenant("Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  ASSERT_TRUE((*c)->CreateProduct(tenant->id(), "DW100").ok());
  std::vector<std::unique_ptr<mcu::Device>> devices;
  for (int i = 0; i < 4; ++i) {
    devices.push_back(ManufactureGenuine(**c, absl::StrCat("obs-sup-", i)));
    ASSERT_NE(devices.back(), nullptr);
    RegisterAndClaim(c->get(), tenant->id(), *devices.back());
  }
  auto pid = (*c)->ChildPid("shard-1");
  ASSERT_TRUE(pid.ok()) << pid.status();
  auto other = (*c)->ChildPid("shard-0");
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(kill(*pid, SIGKILL), 0);

  // Wait, by health with a deadline, until a new shard-1 serves.
  const std::string address = (*c)->config().shards[1].address;
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  bool back = false;
  while (!back && absl::Now() < deadline) {
    auto now_pid = (*c)->ChildPid("shard-1");
    back = now_pid.ok() && *now_pid != *pid &&
           Serving(address, (*c)->OperatorTls(), absl::Seconds(2));
  }
  ASSERT_TRUE(back) << "shard-1 did not serve again within 60 s";
  // The other shard kept running, the cluster file kept its addresses.
  EXPECT_EQ(kill(*other, 0), 0);
  EXPECT_EQ(ReadAll((*c)->cluster_file()), before_json);
  // Every device attests, the ones owned by shard-1 included.
  for (auto& d : devices) {
    auto r = AttestViaClient(c->get(), d.get());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);
  }
  // shard-1's log file spans both lives (appended, still JSON lines).
  std::string log = ReadAll((*c)->dir() + "/logs/shard-1.log");
  int ready = 0;
  for (const auto& j : JsonLines(log)) ready += j["msg"] == "shard ready";
  EXPECT_EQ(ready, 2) << log.substr(0, 3000);
  // The cluster only stops on a signal, and then cleanly.
  EXPECT_TRUE((*c)->Stop().ok());
}

TEST(SupervisionE2eTest, Fault_KilledManagementIsRestartedOnItsAddress) {
  auto c = LocalCluster::Start("obs-supervise-mgmt", 1);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string before_json = ReadAll((*c)->cluster_file());
  auto tenant = (*c)->CreateTenant("Contoso");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  auto pid = (*c)->ChildPid("management");
  ASSERT_TRUE(pid.ok()) << pid.status();
  auto shard = (*c)->ChildPid("shard-0");
  ASSERT_TRUE(shard.ok());
  ASSERT_EQ(kill(*pid, SIGKILL), 0);
  absl::Time deadline = absl::Now() + absl::Seconds(60);
  bool back = false;
  while (!back && absl::Now() < deadline) {
    auto now_pid = (*c)->ChildPid("management");
    back = now_pid.ok() && *now_pid != *pid &&
           Serving((*c)->config().management, (*c)->OperatorTls(),
                   absl::Seconds(2));
  }
  ASSERT_TRUE(back) << "management did not serve again within 60 s";
  EXPECT_EQ(kill(*shard, 0), 0);  // the shard kept running
  EXPECT_EQ(ReadAll((*c)->cluster_file()), before_json);
  // The catalog survived (acknowledged writes are durable) and the shard
  // follows the restarted management: a new device claims and attests.
  EXPECT_EQ((*c)->CreateTenant("Contoso").status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE((*c)->CreateProduct(tenant->id(), "DW100").ok());
  auto dev = ManufactureGenuine(**c, "obs-sup-mgmt-1");
  ASSERT_NE(dev, nullptr);
  RegisterAndClaim(c->get(), tenant->id(), *dev);
  auto r = AttestViaClient(c->get(), dev.get());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome(), v1::UP_TO_DATE);
  EXPECT_TRUE((*c)->Stop().ok());
}

}  // namespace
}  // namespace sphere::testing
