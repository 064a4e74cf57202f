// Issue 13 on real processes (`local_cluster --twins 1`: management, a
// shard, appsvc and one DW100 twin, all on port 0, device time x8000):
//  * the running twin checks for updates on its own schedule in device time
//    (--twin_update_check_hours=6: every 2.7 s of real time), with no
//    attestation in between and nobody asking;
//  * a deployment Contoso creates afterwards is installed by that schedule
//    alone (download, install, reboot, re-attest, report);
//  * Contoso's support timeline (appsvc GetTimeline, which reads the
//    Security Service over gRPC with Contoso's tenant credential) then shows
//    Sphere's attestation history and the update results next to Contoso's
//    own entries, in time order.
// Waits follow the twin's log with inotify (tests/log_wait.h), never sleeps;
// every wait is bounded.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "common/rpc/rpc.h"
#include "common/util/file.h"
#include "protos/contoso.grpc.pb.h"
#include "protos/management.grpc.pb.h"
#include "protos/twin_control.grpc.pb.h"
#include "tests/cluster_fixture.h"
#include "tests/log_wait.h"
#include "twin/dw100/firmware.h"

namespace sphere::testing {
namespace {

namespace cv1 = ::contoso::v1;

constexpr absl::Duration kStepTimeout = absl::Seconds(120);
constexpr int64_t kCheckHours = 6;

int64_t Int(absl::string_view s) {
  int64_t v = -1;
  return absl::SimpleAtoi(s, &v) ? v : -1;
}

class Dw100UpdateScheduleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = LocalCluster::Start(
        "dw100-schedule", 1,
        {"--twins=1", "--twin_time_scale=8000",
         absl::StrCat("--twin_update_check_hours=", kCheckHours)});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    const auto& cfg = cluster_->config();
    ASSERT_FALSE(cfg.appsvc.empty()) << "local_cluster did not start appsvc";
    auto it = cfg.tenants.find("Contoso");
    ASSERT_NE(it, cfg.tenants.end());
    contoso_tls_ = new rpc::TlsFiles{*util::ReadFile(it->second.first),
                                     *util::ReadFile(it->second.second),
                                     *util::ReadFile(cfg.root_ca)};
  }
  static void TearDownTestSuite() {
    if (cluster_ != nullptr) {
      EXPECT_TRUE(cluster_->Stop().ok());
    }
    delete cluster_;
    delete contoso_tls_;
  }

  static std::string Log() {
    return absl::StrCat(cluster_->dir(), "/logs/dw100-1.log");
  }
  static absl::StatusOr<v1::TwinStatus> Status() {
    auto control = v1::TwinControl::NewStub(
        grpc::CreateChannel(cluster_->config().twins.at("dw100-1"),
                            grpc::InsecureChannelCredentials()));
    return UnaryCall<v1::TwinStatus>(
        [&](auto* c, auto& r, auto* o) { return control->GetStatus(c, r, o); },
        v1::GetStatusRequest());
  }
  static uint32_t Version(const v1::TwinStatus& st, const std::string& c) {
    for (const auto& v : st.components()) {
      if (v.component() == c) return v.version();
    }
    return 0;
  }

  static LocalCluster* cluster_;
  static rpc::TlsFiles* contoso_tls_;
};

LocalCluster* Dw100UpdateScheduleTest::cluster_ = nullptr;
rpc::TlsFiles* Dw100UpdateScheduleTest::contoso_tls_ = nullptr;

TEST_F(Dw100UpdateScheduleTest,
       ScheduledCheckInstallsAPendingDeploymentAndTheTimelineShowsIt) {
  const absl::Time deadline = absl::Now() + kStepTimeout;
  // 1. A check falls due after kCheckHours of device time, with only the
  //    start-up attestation before it (the schedule, not an attestation,
  //    started it).
  auto first =
      WaitForLog(Log(), {"\"msg\":\"scheduled update check due\""}, deadline);
  ASSERT_TRUE(first.ok()) << first.status();
  auto text = util::ReadFile(Log());
  ASSERT_TRUE(text.ok());
  int attested_before = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (line == *first) break;
    attested_before += absl::StrContains(line, "\"msg\":\"attested\"");
  }
  EXPECT_EQ(attested_before, 1) << *text;
  // kCheckHours of device time after the loop started.
  EXPECT_GE(Int(JsonField(*first, "device_ms_since_start")),
            kCheckHours * 3600 * 1000)
      << *first;
  auto before = Status();
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(Version(*before, "app:dw100"), 1u);
  const std::string device_id = before->device_id();
  const std::string group = before->device_group_id();
  ASSERT_FALSE(group.empty());

  // 2. Contoso deploys app v2 to the twin's group. Nobody tells the twin.
  auto contoso = v1::ManagementService::NewStub(
      rpc::NewChannel(cluster_->config().management, *contoso_tls_));
  auto tenant = UnaryCall<v1::Tenant>(
      [&](auto* c, auto& r, auto* o) { return contoso->GetTenant(c, r, o); },
      [] {
        v1::GetTenantRequest r;
        r.set_tenant_id("Contoso");
        return r;
      }());
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  auto v2 = dw100::Dw100AppImages(crypto::EcPrivateKey::Generate(), 2);
  ASSERT_TRUE(v2.ok()) << v2.status();
  v1::CreateDeploymentRequest dep;
  dep.set_tenant_id(tenant->id());
  dep.set_device_group_id(group);
  for (const auto& pkg : *v2) {
    v1::UploadImageRequest up;
    up.set_tenant_id(tenant->id());
    up.set_package(pkg.SerializeAsString());
    auto image = UnaryCall<v1::Image>(
        [&](auto* c, auto& r, auto* o) {
          return contoso->UploadImage(c, r, o);
        },
        up);
    ASSERT_TRUE(image.ok()) << image.status();
    dep.add_image_ids(image->id());
  }
  auto deployment = UnaryCall<v1::Deployment>(
      [&](auto* c, auto& r, auto* o) {
        return contoso->CreateDeployment(c, r, o);
      },
      dep);
  ASSERT_TRUE(deployment.ok()) << deployment.status();

  // 3. A later scheduled check installs it.
  auto installed = WaitForLogLine(
      Log(),
      [](absl::string_view line) {
        return absl::StrContains(line,
                                 "\"msg\":\"scheduled update check done\"") &&
               Int(JsonField(line, "installed")) > 0;
      },
      "a scheduled check that installed something", deadline);
  ASSERT_TRUE(installed.ok()) << installed.status();
  auto after = Status();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(Version(*after, "app:dw100"), 2u);
  EXPECT_EQ(after->attestation_outcome(), "UP_TO_DATE");

  // 4. Contoso support's timeline joins Sphere's history of the device.
  auto support = cv1::ContosoSupport::NewStub(
      rpc::NewChannel(cluster_->config().appsvc, *contoso_tls_));
  cv1::GetTimelineRequest req;
  req.set_device_id(device_id);
  auto t = UnaryCall<cv1::Timeline>(
      [&](auto* c, auto& r, auto* o) { return support->GetTimeline(c, r, o); },
      req);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->sphere_error(), "");
  int attestations = 0, installs = 0;
  for (int i = 0; i < t->entries_size(); ++i) {
    const cv1::TimelineEntry& e = t->entries(i);
    if (i > 0) {
      EXPECT_LE(t->entries(i - 1).time_unix_ms(), e.time_unix_ms());
    }
    if (e.source() != "sphere") continue;
    if (e.kind() == "attestation" &&
        absl::StrContains(e.summary(), "attested UP_TO_DATE")) {
      ++attestations;
    }
    if (e.kind() == "update" &&
        absl::StrContains(e.summary(), "update INSTALLED: app:dw100") &&
        absl::StrContains(e.summary(), " v2")) {
      ++installs;
    }
  }
  // Start-up, then again after the install's reboot.
  EXPECT_GE(attestations, 2);
  EXPECT_GE(installs, 1);
  EXPECT_TRUE(absl::StrContains(t->app_version(), "dw100 v2"))
      << t->app_version();
}

}  // namespace
}  // namespace sphere::testing
