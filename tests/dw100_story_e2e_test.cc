// The seed's story branches end to end on real processes, all on port 0:
// `local_cluster --twins 8` (management, a shard, appsvc and eight DW100
// twin processes, bootstrapped as Contoso's fleet: see
// securitysvc/contoso_bootstrap.h for which owner has a warranty and which
// shop has the heater in stock). Faults go in through each twin's
// TwinControl; outcomes are read from the Contoso cloud's support API with
// Contoso's tenant credential.
//
// Waiting: the twins run on their own (time scaled x8000: a wash cycle every
// 3.6 s). A test waits for the twin's own log line saying the step happened
// (the log file is followed with inotify: woken by writes, never a sleep),
// then checks the cloud's state once. Every wait is bounded.
//
// The faults of the anomaly and rinse branches are injected for all twins
// in SetUpTestSuite, so their cycles run in parallel and each test is short.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "protos/contoso.grpc.pb.h"
#include "protos/management.grpc.pb.h"
#include "protos/twin_control.grpc.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/log_wait.h"
#include "tests/watch_client.h"
#include "twin/dw100/firmware.h"
#include "twin/state_file.h"

namespace sphere::testing {
namespace {

namespace cv1 = ::contoso::v1;

constexpr absl::Duration kStepTimeout = absl::Seconds(150);

class Dw100StoryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start(
        "dw100-story", 1,
        // Scheduled update checks off: the update-only branch needs a twin
        // that stays on app v1 while the test looks (the schedule has its
        // own test, dw100_update_schedule_e2e_test).
        {"--twins=8", "--twin_time_scale=8000", "--twin_update_check_hours=0"});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    const auto& cfg = cluster_->config();
    ASSERT_FALSE(cfg.appsvc.empty()) << "local_cluster did not start appsvc";
    ASSERT_EQ(cfg.twins.size(), 8u);
    auto it = cfg.tenants.find("Contoso");
    ASSERT_NE(it, cfg.tenants.end());
    contoso_tls_ = new rpc::TlsFiles{*util::ReadFile(it->second.first),
                                     *util::ReadFile(it->second.second),
                                     *util::ReadFile(cfg.root_ca)};
    auto tenant = UnaryCall<v1::Tenant>(
        [&](auto* ctx, auto& r, auto* o) {
          return cluster_->management()->GetTenant(ctx, r, o);
        },
        [] {
          v1::GetTenantRequest r;
          r.set_tenant_id("Contoso");
          return r;
        }());
    ASSERT_TRUE(tenant.ok()) << tenant.status();
    tenant_id_ = new std::string(tenant->id());
    // Start every slow branch now; the tests below only look at outcomes.
    for (const auto& [twin, fault] :
         std::vector<std::pair<std::string, v1::InjectFaultRequest::Fault>>{
             {"dw100-1", v1::InjectFaultRequest::DRYING_HEATER_DRIFT},
             {"dw100-2", v1::InjectFaultRequest::DRYING_HEATER_HOT},
             {"dw100-3", v1::InjectFaultRequest::DRYING_HEATER_DRIFT},
             {"dw100-4", v1::InjectFaultRequest::RINSE_AGENT_LOW}}) {
      auto st = Fault(twin, fault);
      ASSERT_TRUE(st.ok()) << twin << ": " << st.status();
    }
  }

  static void TearDownTestSuite() {
    if (cluster_ != nullptr) EXPECT_TRUE(cluster_->Stop().ok());
    delete cluster_;
    delete contoso_tls_;
    delete tenant_id_;
  }

  static std::unique_ptr<v1::TwinControl::Stub> Control(const std::string& t) {
    return v1::TwinControl::NewStub(grpc::CreateChannel(
        cluster_->config().twins.at(t), grpc::InsecureChannelCredentials()));
  }
  static absl::StatusOr<v1::TwinStatus> Fault(const std::string& t,
                                              v1::InjectFaultRequest::Fault f) {
    v1::InjectFaultRequest req;
    req.set_fault(f);
    return UnaryCall<v1::TwinStatus>(
        [&](auto* c, auto& r, auto* o) {
          return Control(t)->InjectFault(c, r, o);
        },
        req);
  }
  static absl::StatusOr<v1::TwinStatus> Status(const std::string& t) {
    return UnaryCall<v1::TwinStatus>(
        [&](auto* c, auto& r, auto* o) {
          return Control(t)->GetStatus(c, r, o);
        },
        v1::GetStatusRequest());
  }
  static absl::StatusOr<v1::TwinStatus> Attest(const std::string& t,
                                               int64_t min_revision) {
    v1::TwinAttestRequest req;
    req.set_min_catalog_revision(min_revision);
    return UnaryCall<v1::TwinStatus>(
        [&](auto* c, auto& r, auto* o) { return Control(t)->Attest(c, r, o); },
        req);
  }
  static std::string Log(const std::string& t) {
    return absl::StrCat(cluster_->dir(), "/logs/", t, ".log");
  }
  static std::unique_ptr<cv1::ContosoSupport::Stub> Support() {
    return cv1::ContosoSupport::NewStub(
        rpc::NewChannel(cluster_->config().appsvc, *contoso_tls_));
  }
  static absl::StatusOr<cv1::DeviceInsights> Insights(const std::string& t) {
    auto st = Status(t);
    if (!st.ok()) return st.status();
    cv1::GetDeviceInsightsRequest req;
    req.set_device_id(st->device_id());
    return UnaryCall<cv1::DeviceInsights>(
        [&](auto* c, auto& r, auto* o) {
          return Support()->GetDeviceInsights(c, r, o);
        },
        req);
  }
  // StolenTls: what an attacker who opened twin `t` holds: its last
  // certificate chain and the certificate key (read from its flash).
  static rpc::TlsFiles StolenTls(const std::string& t) {
    auto state = twin::ReadTwinState(twin::TwinStatePath(cluster_->dir(), t));
    EXPECT_TRUE(state.ok()) << state.status();
    auto dev = mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                                    state->rom_image_signing_key(),
                                    state->device(), {});
    EXPECT_TRUE(dev.ok()) << dev.status();
    return {state->certificate_chain_pem(),
            (*dev)->ExportCertificateKeyForTls(), contoso_tls_->ca_pem};
  }
  static grpc::Status Report(const rpc::TlsFiles& tls, int64_t min_revision,
                             cv1::ReportTelemetryResponse* resp) {
    cv1::ReportTelemetryRequest req;
    cv1::Telemetry* s = req.add_samples();
    s->set_time_unix_ms(absl::ToUnixMillis(absl::Now()));
    s->set_water_temperature_c(60);
    s->set_drying_temperature_c(65);
    s->set_rinse_agent_level_pct(80);
    s->set_cycle_state(cv1::Telemetry::WASHING);
    s->set_cycle_id(1);
    s->set_sequence(1);
    auto stub = cv1::DeviceGateway::NewStub(
        rpc::NewChannel(cluster_->config().appsvc, tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(rpc::Deadline(absl::Seconds(20)));
    ctx.AddMetadata("sphere-min-catalog-revision", absl::StrCat(min_revision));
    return stub->ReportTelemetry(&ctx, req, resp);
  }
  static std::string FleetState() {
    cv1::ListDevicesRequest req;
    auto r = UnaryCall<cv1::ListDevicesResponse>(
        [&](auto* c, auto& q, auto* o) {
          return Support()->ListDevices(c, q, o);
        },
        req);
    EXPECT_TRUE(r.ok()) << r.status();
    std::string out;
    if (!r.ok()) return out;
    for (auto d : r->devices()) {
      d.clear_last_seen_unix_ms();  // healthy twins keep reporting
      d.clear_rinse_agent_level_pct();
      out += d.ShortDebugString() + "\n";
    }
    return out;
  }
  static absl::Status WaitDiagnosticsSent(const std::string& t) {
    return WaitForLog(Log(t),
                      {"diagnostics result sent", "\"healthy\":\"false\""},
                      absl::Now() + kStepTimeout)
        .status();
  }

  static LocalCluster* cluster_;
  static rpc::TlsFiles* contoso_tls_;
  static std::string* tenant_id_;
};

LocalCluster* Dw100StoryTest::cluster_ = nullptr;
rpc::TlsFiles* Dw100StoryTest::contoso_tls_ = nullptr;
std::string* Dw100StoryTest::tenant_id_ = nullptr;

TEST_F(Dw100StoryTest, ClusterJsonListsEveryAddressAndTwinsRunAppV1) {
  const auto& cfg = cluster_->config();
  EXPECT_TRUE(absl::StartsWith(cfg.appsvc_web, "https://127.0.0.1:"));
  EXPECT_TRUE(cfg.metrics.count("appsvc"));
  for (int i = 1; i <= 7; ++i) {
    const std::string t = absl::StrCat("dw100-", i);
    EXPECT_TRUE(cfg.metrics.count(t)) << t;
    auto st = Status(t);
    ASSERT_TRUE(st.ok()) << st.status();
    EXPECT_EQ(st->boot_state(), "running");
    std::vector<std::string> running;
    for (const auto& c : st->components()) {
      running.push_back(absl::StrCat(c.component(), "=", c.version()));
    }
    EXPECT_THAT(absl::StrJoin(running, " "),
                ::testing::HasSubstr("app:dw100=1 app:dw100-sensors=1"));
    EXPECT_EQ(st->tenant_id(), *tenant_id_);
    // Its chain is left for anyone to verify.
    auto chain = util::ReadFile(
        absl::StrCat(twin::TwinDir(cluster_->dir(), t), "/device_chain.pem"));
    ASSERT_TRUE(chain.ok()) << chain.status();
    EXPECT_EQ(crypto::SplitPemChain(*chain).size(), 2u);
  }
}

TEST_F(Dw100StoryTest, HeaterFailsUnderWarrantyPartReservedAtLocalShop) {
  ASSERT_TRUE(WaitDiagnosticsSent("dw100-1").ok());
  auto in = Insights("dw100-1");
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_TRUE(in->under_warranty());
  ASSERT_FALSE(in->anomalies().empty());
  EXPECT_TRUE(absl::StrContains(in->anomalies(0), "drying-too-cold"))
      << in->anomalies(0);
  ASSERT_FALSE(in->diagnostics().empty());
  EXPECT_TRUE(absl::StrContains(in->diagnostics(0), "resistance high"));
  ASSERT_EQ(in->reservations_size(), 1) << in->DebugString();
  EXPECT_TRUE(absl::StrContains(in->reservations(0),
                                "DW100-HTR-220 reserved at Redmond"))
      << in->reservations(0);
  ASSERT_FALSE(in->notifications().empty());
  EXPECT_TRUE(absl::StrContains(in->notifications(0), "owner1@example.com"));
}

TEST_F(Dw100StoryTest, HeaterFailsUnderWarrantyPartBackorderedWhenShopHasNone) {
  ASSERT_TRUE(WaitDiagnosticsSent("dw100-2").ok());
  auto in = Insights("dw100-2");
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_TRUE(in->under_warranty());
  ASSERT_FALSE(in->anomalies().empty());
  EXPECT_TRUE(absl::StrContains(in->anomalies(0), "drying-too-hot"))
      << in->anomalies(0);
  ASSERT_EQ(in->reservations_size(), 1) << in->DebugString();
  EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(in->reservations(0)),
                                "backorder"))
      << in->reservations(0);
}

TEST_F(Dw100StoryTest, HeaterFailsWithoutWarrantyNoPartReserved) {
  ASSERT_TRUE(WaitDiagnosticsSent("dw100-3").ok());
  auto in = Insights("dw100-3");
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_FALSE(in->under_warranty());
  ASSERT_FALSE(in->diagnostics().empty());
  EXPECT_EQ(in->reservations_size(), 0) << in->DebugString();
  ASSERT_FALSE(in->notifications().empty());
  EXPECT_TRUE(absl::StrContains(in->notifications(0), "owner3@example.com"));
}

TEST_F(Dw100StoryTest, RinseAgentLowOffersReorderAndOwnerOrders) {
  ASSERT_TRUE(WaitForLog(Log("dw100-4"),
                         {"contoso cloud action", "reorder-offered"},
                         absl::Now() + kStepTimeout)
                  .ok());
  auto in = Insights("dw100-4");
  ASSERT_TRUE(in.ok()) << in.status();
  ASSERT_EQ(in->reorder_offers_size(), 1) << in->DebugString();
  EXPECT_EQ(in->reservations_size(), 0);
  EXPECT_TRUE(in->anomalies().empty());
  // The owner accepts the offer (the owner page does the same call).
  auto st = Status("dw100-4");
  ASSERT_TRUE(st.ok());
  const std::string offer_id = in->reorder_offers(0);
  cv1::PlaceOrderRequest order;
  order.set_device_id(st->device_id());
  order.set_offer_id(offer_id);
  auto placed = UnaryCall<cv1::PlaceOrderResponse>(
      [&](auto* c, auto& q, auto* o) { return Support()->PlaceOrder(c, q, o); },
      order);
  ASSERT_TRUE(placed.ok()) << placed.status() << " offer "
                           << in->reorder_offers(0);
  auto after = Insights("dw100-4");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->orders_size(), 1) << after->DebugString();
}

TEST_F(Dw100StoryTest,
       Attack_TamperedTwinFailsAttestationStolenCredentialRefused) {
  const std::string t = "dw100-5";
  const rpc::TlsFiles stolen = StolenTls(t);
  auto start = cluster_->ManagementRevision();
  ASSERT_TRUE(start.ok());
  WatchClient watch(cluster_->management(), *start + 1);
  auto st = Fault(t, v1::InjectFaultRequest::TAMPER);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->boot_state(), "tampered");
  // Pluton reports the tamper in its signed quote: the shard refuses it...
  EXPECT_TRUE(absl::StrContains(st->attestation_outcome(), "tamper"))
      << st->attestation_outcome();
  // ...and revokes the device by itself: nobody at Contoso acts.
  auto revoked = watch.WaitFor(
      [&](const v1::WatchEvent& e) {
        return e.revoked_device_id() == st->device_id();
      },
      kStepTimeout);
  ASSERT_TRUE(revoked.has_value())
      << "no automatic revocation of " << st->device_id();
  auto device = cluster_->GetDevice(*tenant_id_, st->device_id());
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_EQ(device->state(), v1::REVOKED);
  EXPECT_TRUE(
      absl::StartsWith(device->revocation_reason(), "automatic: tamper"))
      << device->revocation_reason();
  // The device cannot attest any more (refused as revoked, or as tampered
  // by a shard whose catalog has not applied the revocation yet).
  auto again = Attest(t, 0);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(absl::StrContains(again->attestation_outcome(), "revoked") ||
              absl::StrContains(again->attestation_outcome(), "tamper"))
      << again->attestation_outcome();
  // The credential the attacker took out of the flash is refused within one
  // Watch round of the automatic revocation, and nothing is stored.
  const int64_t revision = revoked->revision();
  const std::string before = FleetState();
  cv1::ReportTelemetryResponse resp;
  grpc::Status s = Report(stolen, revision, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "revoked"))
      << s.error_message();
  EXPECT_EQ(resp.accepted(), 0u);
  EXPECT_EQ(FleetState(), before);
  // The tampered twin itself is refused as well.
  auto line = WaitForLog(Log(t), {"contoso cloud call failed", "revoked"},
                         absl::Now() + kStepTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
}

TEST_F(Dw100StoryTest, Attack_RevokedTwinRefusedWithinOneWatchRound) {
  const std::string t = "dw100-6";
  auto st = Status(t);
  ASSERT_TRUE(st.ok());
  // Accepted now.
  cv1::ReportTelemetryResponse ok;
  grpc::Status accepted = Report(StolenTls(t), 0, &ok);
  ASSERT_TRUE(accepted.ok()) << accepted.error_message();
  ASSERT_TRUE(cluster_->Revoke(*tenant_id_, st->device_id()).ok());
  auto revision = cluster_->ManagementRevision();
  ASSERT_TRUE(revision.ok());
  const std::string before = FleetState();
  cv1::ReportTelemetryResponse resp;
  grpc::Status s = Report(StolenTls(t), *revision, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "revoked"))
      << s.error_message();
  EXPECT_EQ(FleetState(), before);
  // The twin itself is refused too and stops calling (no retry storm).
  auto line =
      WaitForLog(Log(t), {"contoso cloud call failed", "refused", "revoked"},
                 absl::Now() + kStepTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
}

TEST_F(Dw100StoryTest, Attack_UpdateOnlyCertificateTwinRefusedByAppsvc) {
  const std::string t = "dw100-7";
  // Contoso deploys app v2 to Development and moves dw100-7 there: it runs
  // v1, so its next attestation gets an update-only certificate.
  auto contoso = v1::ManagementService::NewStub(
      rpc::NewChannel(cluster_->config().management, *contoso_tls_));
  auto v2 = dw100::Dw100AppImages(crypto::EcPrivateKey::Generate(), 2);
  ASSERT_TRUE(v2.ok());
  v1::CreateDeploymentRequest dep;
  dep.set_tenant_id(*tenant_id_);
  dep.set_device_group_id("DW100/Development");
  for (const auto& pkg : *v2) {
    v1::UploadImageRequest up;
    up.set_tenant_id(*tenant_id_);
    up.set_package(pkg.SerializeAsString());
    auto image = UnaryCall<v1::Image>(
        [&](auto* c, auto& r, auto* o) {
          return contoso->UploadImage(c, r, o);
        },
        up);
    ASSERT_TRUE(image.ok()) << image.status();
    dep.add_image_ids(image->id());
  }
  ASSERT_TRUE(UnaryCall<v1::Deployment>(
                  [&](auto* c, auto& r, auto* o) {
                    return contoso->CreateDeployment(c, r, o);
                  },
                  dep)
                  .ok());
  auto st = Status(t);
  ASSERT_TRUE(st.ok());
  v1::AssignDeviceRequest as;
  as.set_tenant_id(*tenant_id_);
  as.set_device_id(st->device_id());
  as.set_device_group_id("DW100/Development");
  ASSERT_TRUE(UnaryCall<v1::Device>(
                  [&](auto* c, auto& r, auto* o) {
                    return contoso->AssignDevice(c, r, o);
                  },
                  as)
                  .ok());
  auto revision = cluster_->ManagementRevision();
  ASSERT_TRUE(revision.ok());
  auto attested = Attest(t, *revision);
  ASSERT_TRUE(attested.ok()) << attested.status();
  EXPECT_EQ(attested->attestation_outcome(), "UPDATE_REQUIRED");
  // The update-only certificate is refused by the Contoso cloud.
  const std::string before = FleetState();
  cv1::ReportTelemetryResponse resp;
  grpc::Status s = Report(StolenTls(t), *revision, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "update-only"))
      << s.error_message();
  EXPECT_EQ(FleetState(), before);
  auto line = WaitForLog(Log(t), {"contoso cloud call failed", "update-only"},
                         absl::Now() + kStepTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
}

TEST_F(Dw100StoryTest,
       Attack_BadTwinControlRequestsAreRefusedAndChangeNothing) {
  const std::string t = "dw100-4";
  auto before = Status(t);
  ASSERT_TRUE(before.ok());
  v1::InjectFaultRequest bad;
  bad.set_fault(static_cast<v1::InjectFaultRequest::Fault>(99));
  auto r = UnaryCall<v1::TwinStatus>(
      [&](auto* c, auto& q, auto* o) {
        return Control(t)->InjectFault(c, q, o);
      },
      bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "fault 99"));
  v1::RunDiagnosticsRequest big;
  big.set_requested_by(std::string(4096, 'x'));
  auto d = UnaryCall<v1::DiagnosticsReport>(
      [&](auto* c, auto& q, auto* o) {
        return Control(t)->RunDiagnostics(c, q, o);
      },
      big);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument)
      << d.status();
  EXPECT_TRUE(absl::StrContains(d.status().message(), "requested_by"));
  // Power loss "during an update" with no update in progress.
  auto p = Fault(t, v1::InjectFaultRequest::POWER_LOSS_DURING_UPDATE);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition)
      << p.status();
  auto after = Status(t);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->boot_state(), before->boot_state());
  EXPECT_EQ(after->attestation_outcome(), before->attestation_outcome());
  EXPECT_EQ(after->certificate_subject(), before->certificate_subject());
  EXPECT_EQ(after->components_size(), before->components_size());
}

// A DW100 killed with SIGKILL and restarted by local_cluster's supervisor
// never reuses a telemetry sequence number: the new run's first sequence is
// past every sequence the killed run had acknowledged, and the Contoso cloud
// counts no duplicate from it.
TEST_F(Dw100StoryTest, Fault_KilledTwinRestartsWithoutReusingSequences) {
  const std::string t = "dw100-8";
  const absl::Time deadline = absl::Now() + kStepTimeout;
  auto acked =
      WaitForLog(Log(t), {"\"msg\":\"telemetry acknowledged\""}, deadline);
  ASSERT_TRUE(acked.ok()) << acked.status();
  const std::string old_pid = JsonField(*acked, "pid");
  auto pid = cluster_->ChildPid(t);
  ASSERT_TRUE(pid.ok()) << pid.status();
  ASSERT_EQ(absl::StrCat(*pid), old_pid);
  ASSERT_EQ(kill(*pid, SIGKILL), 0);
  // The supervisor starts it again; its first acknowledged batch:
  auto first_new = WaitForLogLine(
      Log(t),
      [&](absl::string_view line) {
        return absl::StrContains(line, "\"msg\":\"telemetry acknowledged\"") &&
               !JsonField(line, "pid").empty() &&
               JsonField(line, "pid") != old_pid;
      },
      "a telemetry batch acknowledged after the restart", deadline);
  ASSERT_TRUE(first_new.ok()) << first_new.status();
  const std::string new_pid = JsonField(*first_new, "pid");
  // Every batch the killed run got acknowledged ended before the new run's
  // first sequence; no batch of the new run was a duplicate.
  auto text = util::ReadFile(Log(t));
  ASSERT_TRUE(text.ok());
  uint64_t old_max = 0, new_min = UINT64_MAX;
  int old_batches = 0, new_batches = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!absl::StrContains(line, "\"msg\":\"telemetry acknowledged\"")) {
      continue;
    }
    uint64_t first = 0, last = 0;
    ASSERT_TRUE(absl::SimpleAtoi(JsonField(line, "first_seq"), &first)) << line;
    ASSERT_TRUE(absl::SimpleAtoi(JsonField(line, "last_seq"), &last)) << line;
    if (JsonField(line, "pid") == old_pid) {
      old_max = std::max(old_max, last);
      ++old_batches;
    } else if (JsonField(line, "pid") == new_pid) {
      new_min = std::min(new_min, first);
      EXPECT_EQ(JsonField(line, "duplicates"), "0") << line;
      EXPECT_NE(JsonField(line, "accepted"), "0") << line;
      ++new_batches;
    }
  }
  EXPECT_GE(old_batches, 1);
  EXPECT_GE(new_batches, 1);
  EXPECT_GT(new_min, old_max) << "the restarted twin reused sequence numbers";
}

// Attestation renews daily in device time, with nobody asking: a renewal
// falls due and a new certificate is accepted after it.
TEST_F(Dw100StoryTest, TwinRenewsAttestationDailyInScaledTime) {
  const std::string t = "dw100-4";
  const absl::Time deadline = absl::Now() + kStepTimeout;
  auto due =
      WaitForLog(Log(t), {"\"msg\":\"attestation renewal due\""}, deadline);
  ASSERT_TRUE(due.ok()) << due.status();
  const std::string due_ts = JsonField(*due, "ts");
  auto renewed = WaitForLogLine(
      Log(t),
      [&](absl::string_view line) {
        return absl::StrContains(line, "\"msg\":\"attested\"") &&
               JsonField(line, "ts") > due_ts;
      },
      "an attestation accepted after the renewal fell due", deadline);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
}

}  // namespace
}  // namespace sphere::testing
