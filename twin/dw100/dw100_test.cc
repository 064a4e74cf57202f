// DW100 firmware on the MCU model and the agent's conversation with the
// Contoso cloud, against scripted answers (no gRPC).
#include <gtest/gtest.h>

#include <memory>
#include <variant>

#include "absl/strings/match.h"
#include "common/crypto/crypto.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "twin/dw100/agent.h"
#include "twin/dw100/firmware.h"

namespace sphere::dw100 {
namespace {

using contoso::v1::Command;
using contoso::v1::CompleteCommandRequest;
using contoso::v1::CompleteCommandResponse;
using contoso::v1::PollCommandsRequest;
using contoso::v1::PollCommandsResponse;
using contoso::v1::ReportTelemetryRequest;
using contoso::v1::ReportTelemetryResponse;
using Phase = Dw100Agent::Phase;

const absl::Time kNow = absl::FromUnixSeconds(1767225600);

class Dw100Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    key_ = new crypto::EcPrivateKey(crypto::EcPrivateKey::Generate());
    auto images = mcu::BuildFactoryImages(*key_, 1);
    ASSERT_TRUE(images.ok()) << images.status();
    os_ = new std::vector<v1::ImagePackage>(*images);
    auto apps = Dw100AppImages(*key_, 1);
    ASSERT_TRUE(apps.ok()) << apps.status();
    apps_ = new std::vector<v1::ImagePackage>(*apps);
  }

  std::unique_ptr<mcu::Device> NewDevice(bool with_apps = true) {
    auto dev = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                        key_->PublicKey(), {.seed = "dw100"});
    EXPECT_TRUE(dev.ok()) << dev.status();
    EXPECT_TRUE((*dev)->InstallFactoryImages(*os_).ok());
    EXPECT_TRUE((*dev)->Boot().ok());
    if (with_apps) {
      for (const auto& a : *apps_) {
        absl::Status s = (*dev)->LoadApp(a);
        EXPECT_TRUE(s.ok()) << s;
      }
    }
    return *std::move(dev);
  }

  void SetUp() override {
    config_.batch_size = 50;
    config_.upload_interval = absl::Seconds(2);
    config_.poll_interval = absl::Seconds(3);
    config_.backoff = {absl::Milliseconds(100), 1.6, 0.2, absl::Seconds(1)};
  }

  static inline crypto::EcPrivateKey* key_ = nullptr;
  static inline std::vector<v1::ImagePackage>* os_ = nullptr;
  static inline std::vector<v1::ImagePackage>* apps_ = nullptr;
  AgentConfig config_;
};

TEST_F(Dw100Test, ManifestsAllowOnlyTheContosoCloud) {
  v1::AppManifest hl = HighLevelManifest();
  ASSERT_EQ(hl.allowed_connections_size(), 1);
  EXPECT_EQ(hl.allowed_connections(0), kContosoCloudHost);
  EXPECT_FALSE(hl.realtime());
  v1::AppManifest rt = RealtimeManifest();
  EXPECT_TRUE(rt.realtime());
  EXPECT_EQ(rt.allowed_connections_size(), 0);
  auto dev = NewDevice();
  Firmware fw(dev.get());
  EXPECT_TRUE(fw.Running());
  EXPECT_TRUE(fw.ConnectCloud().ok());
  absl::Status other = fw.ConnectCloud("exfiltrate.example.com");
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied) << other;
  // Real-time cores have no network at all.
  EXPECT_EQ(dev->Connect(kRealtimeApp, kContosoCloudHost).code(),
            absl::StatusCode::kPermissionDenied);
  // The high-level app cannot read the sensors itself: the firewall.
  EXPECT_EQ(dev->AccessPeripheral(kHighLevelApp, "ADC0").code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(Dw100Test, Attack_AppImageNotSignedByThePlatformIsRefused) {
  auto dev = NewDevice(/*with_apps=*/false);
  const auto contoso_key = crypto::EcPrivateKey::Generate();
  auto unsigned_apps = Dw100AppImages(contoso_key, 1);
  ASSERT_TRUE(unsigned_apps.ok());
  absl::Status s = dev->LoadApp((*unsigned_apps)[0]);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_FALSE(dev->AppRunning(kHighLevelApp));
  Firmware fw(dev.get());
  EXPECT_FALSE(fw.Running());
  std::vector<WashSample> out;
  EXPECT_EQ(fw.ReadSensors({WashSample()}, &out).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(out.empty());
}

TEST_F(Dw100Test, ReadingsTravelThroughTheMailboxUnchanged) {
  auto dev = NewDevice();
  Firmware fw(dev.get());
  WashModel model(11, WashModel::Options(), kNow);
  std::vector<WashSample> in, out;
  model.AdvanceTo(kNow + absl::Hours(10), &in);
  ASSERT_GT(in.size(), 20u);  // more than the mailbox holds at once
  ASSERT_TRUE(fw.ReadSensors(in, &out).ok());
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].time_unix_ms, in[i].time_unix_ms);
    EXPECT_EQ(out[i].drying_c, in[i].drying_c);
    EXPECT_EQ(out[i].state, in[i].state);
    EXPECT_EQ(out[i].cycle_id, in[i].cycle_id);
  }
  EXPECT_EQ(DecodeReading("short").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(Dw100Test, AgentSequencesAreConsecutiveFromTheFirstAndStopAtTheLimit) {
  auto dev = NewDevice();
  Dw100Agent agent(dev.get(), &config_, 1, kNow, kNow, /*first_sequence=*/500);
  agent.set_sequence_limit(520);
  auto r = agent.OnTimer(kNow, kNow + absl::Hours(48));
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  const ReportTelemetryRequest first = std::get<ReportTelemetryRequest>(r);
  // Only the 20 numbers below the limit are handed out: a short batch.
  ASSERT_EQ(first.samples_size(), 20);
  for (int i = 0; i < first.samples_size(); ++i) {
    EXPECT_EQ(first.samples(i).sequence(), 500u + i);
  }
  ReportTelemetryResponse ok;
  ok.set_accepted(20);
  r = agent.OnTelemetry(kNow, ok);
  // Out of numbers: nothing is sent until the limit is raised.
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(agent.next_sequence(), 520u);
  agent.set_sequence_limit(10000);
  r = agent.OnTimer(agent.next_wakeup(), kNow + absl::Hours(48));
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  EXPECT_EQ(std::get<ReportTelemetryRequest>(r).samples(0).sequence(), 520u);
}

TEST_F(Dw100Test, AgentUploadsBatchesAndRetriesTheSameBatchAfterAFailure) {
  auto dev = NewDevice();
  Dw100Agent agent(dev.get(), &config_, 1, kNow, kNow);
  // Two days of device time: several batches.
  const absl::Time day2 = kNow + absl::Hours(48);
  auto r = agent.OnTimer(kNow, day2);
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  const ReportTelemetryRequest first = std::get<ReportTelemetryRequest>(r);
  EXPECT_EQ(first.samples_size(), 50);
  const size_t total = agent.buffered();
  ASSERT_GT(total, 100u);
  for (int i = 1; i < first.samples_size(); ++i) {
    EXPECT_GT(first.samples(i).sequence(), first.samples(i - 1).sequence());
  }
  // Transient failure: backoff, nothing lost, the same batch again.
  r = agent.OnTelemetry(kNow, absl::UnavailableError("appsvc restarting"));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(agent.phase(), Phase::kBackoff);
  EXPECT_EQ(agent.buffered(), total);
  EXPECT_GT(agent.next_wakeup(), kNow);
  EXPECT_LE(agent.next_wakeup(), kNow + absl::Milliseconds(120));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(
      agent.OnTimer(kNow, day2)));  // not due yet
  const absl::Time later = agent.next_wakeup();
  r = agent.OnTimer(later, day2);
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  EXPECT_EQ(std::get<ReportTelemetryRequest>(r).SerializeAsString(),
            first.SerializeAsString());
  // Acknowledged: the next full batch follows at once.
  ReportTelemetryResponse ok;
  ok.set_accepted(50);
  r = agent.OnTelemetry(later, ok);
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  EXPECT_EQ(agent.uploaded(), 50u);
  EXPECT_GT(std::get<ReportTelemetryRequest>(r).samples(0).sequence(),
            first.samples(49).sequence());
  size_t uploaded = 50;
  while (std::holds_alternative<ReportTelemetryRequest>(r)) {
    uploaded += std::get<ReportTelemetryRequest>(r).samples_size();
    r = agent.OnTelemetry(later, ok);
  }
  // The partial rest waits for the upload interval.
  EXPECT_GT(agent.buffered(), 0u);
  EXPECT_LT(agent.buffered(), 50u);
  EXPECT_EQ(agent.next_wakeup(), later + config_.upload_interval);
  r = agent.OnTimer(agent.next_wakeup(), day2);
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  uploaded += std::get<ReportTelemetryRequest>(r).samples_size();
  r = agent.OnTelemetry(later + config_.upload_interval, ok);
  EXPECT_EQ(uploaded, total);
  EXPECT_EQ(agent.buffered(), 0u);
  EXPECT_EQ(agent.phase(), Phase::kIdle);
  EXPECT_EQ(agent.dropped(), 0u);
}

TEST_F(Dw100Test, AgentRunsDiagnosticsOnCommandAndReportsTheFailingHeater) {
  auto dev = NewDevice();
  Dw100Agent agent(dev.get(), &config_, 2, kNow, kNow);
  ASSERT_TRUE(agent.InjectFault(Fault::kHeaterCold).ok());
  auto r = agent.OnTimer(kNow + absl::Seconds(2), kNow + absl::Hours(9));
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  double min_peak = 1e9;
  double peak = 0;
  for (const auto& s : std::get<ReportTelemetryRequest>(r).samples()) {
    if (s.cycle_state() == contoso::v1::Telemetry::DRYING) {
      peak = std::max(peak, s.drying_temperature_c());
    }
  }
  min_peak = std::min(min_peak, peak);
  EXPECT_LT(min_peak, kBaselinePeakDryingC - 8);  // what the cloud sees
  ReportTelemetryResponse resp;
  resp.add_actions("diagnostics-requested");
  Command* c = resp.add_commands();
  c->set_command_id("cmd-1");
  c->set_kind(Command::RUN_DIAGNOSTICS);
  *resp.add_commands() = *c;  // delivered twice: run once
  r = agent.OnTelemetry(kNow, resp);
  ASSERT_TRUE(std::holds_alternative<CompleteCommandRequest>(r));
  const auto& done = std::get<CompleteCommandRequest>(r);
  EXPECT_EQ(done.command_id(), "cmd-1");
  EXPECT_FALSE(done.diagnostics().healthy());
  EXPECT_EQ(done.diagnostics().suspected_part(), kHeaterPart);
  EXPECT_TRUE(
      absl::StrContains(done.diagnostics().findings(1), "resistance high"));
  EXPECT_EQ(agent.diagnostics_run(), 1u);
  ASSERT_EQ(agent.actions().size(), 1u);
  r = agent.OnComplete(kNow, CompleteCommandResponse());
  EXPECT_EQ(agent.phase(), Phase::kIdle);
  // A poll that redelivers the answered command does not rerun it.
  r = agent.OnTimer(kNow + absl::Seconds(3), kNow + absl::Hours(9));
  ASSERT_TRUE(std::holds_alternative<PollCommandsRequest>(r));
  PollCommandsResponse again;
  *again.add_commands() = *c;
  r = agent.OnPoll(kNow + absl::Seconds(3), again);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(agent.diagnostics_run(), 1u);
}

TEST_F(Dw100Test, AgentStopsOnRefusalUntilRetried) {
  auto dev = NewDevice();
  Dw100Agent agent(dev.get(), &config_, 3, kNow, kNow);
  auto r = agent.OnTimer(kNow + absl::Seconds(5), kNow + absl::Hours(1));
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  const size_t buffered = agent.buffered();
  r = agent.OnTelemetry(
      kNow, absl::PermissionDeniedError("certificate is update-only"));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(agent.phase(), Phase::kRefused);
  EXPECT_EQ(agent.next_wakeup(), absl::InfiniteFuture());
  EXPECT_EQ(agent.buffered(), buffered);  // kept for later
  EXPECT_EQ(agent.last_error().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(
      agent.OnTimer(kNow + absl::Hours(1), kNow + absl::Hours(2))));
  agent.Retry(kNow + absl::Seconds(10));
  r = agent.OnTimer(kNow + absl::Seconds(10), kNow + absl::Hours(2));
  EXPECT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
}

TEST_F(Dw100Test, AppCrashIsRecordedAndLosesNoAcknowledgedData) {
  auto dev = NewDevice();
  Dw100Agent agent(dev.get(), &config_, 4, kNow, kNow);
  dev->DrainErrorEvents();
  ASSERT_TRUE(agent.InjectFault(Fault::kAppCrash).ok());
  std::vector<v1::ErrorEvent> events = dev->DrainErrorEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind(), v1::ErrorEvent::APP_CRASH);
  EXPECT_EQ(events[0].component(), "app:dw100");
  EXPECT_EQ(dev->AppCrashCount(kHighLevelApp), 1u);
  EXPECT_TRUE(agent.firmware().Running());  // the OS restarted it
  auto r = agent.OnTimer(kNow + absl::Seconds(5), kNow + absl::Hours(2));
  EXPECT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
}

TEST_F(Dw100Test, RinseAgentLowShowsInTelemetry) {
  auto dev = NewDevice();
  Dw100Agent agent(dev.get(), &config_, 5, kNow, kNow);
  ASSERT_TRUE(agent.InjectFault(Fault::kRinseAgentLow).ok());
  auto r = agent.OnTimer(kNow + absl::Seconds(5), kNow + absl::Hours(2));
  ASSERT_TRUE(std::holds_alternative<ReportTelemetryRequest>(r));
  const auto& req = std::get<ReportTelemetryRequest>(r);
  ASSERT_GT(req.samples_size(), 0);
  EXPECT_LT(req.samples(req.samples_size() - 1).rinse_agent_level_pct(),
            kRinseAgentLowPct);
}

TEST_F(Dw100Test, BufferIsBoundedAndCountsWhatItDropped) {
  auto dev = NewDevice();
  config_.max_buffered = 100;
  config_.batch_size = 1000;
  config_.upload_interval = absl::Hours(1);
  Dw100Agent agent(dev.get(), &config_, 6, kNow, kNow);
  auto r = agent.OnTimer(kNow, kNow + absl::Hours(24 * 7));
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r));
  EXPECT_EQ(agent.buffered(), 100u);
  EXPECT_GT(agent.dropped(), 0u);
}

}  // namespace
}  // namespace sphere::dw100
