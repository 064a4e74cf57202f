// Issue 12, device side: every action of the list produces exactly
// its event kind in the error ring (and nothing else), with the details the
// service's reports need (component, exit code, signal, reason).
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/crypto/crypto.h"
#include "gtest/gtest.h"
#include "mcu-model/device.h"
#include "mcu-model/device_fixture.h"
#include "mcu-model/image.h"

namespace sphere::mcu {
namespace {

using device_testing::Manifest;
using device_testing::SigningKey;

class DeviceErrorsTest : public device_testing::DeviceFixture {
 protected:
  void SetUp() override {
    device_ = Booted("errors-1");
    ASSERT_FALSE(HasFailure());
    v1::AppManifest m = Manifest("dw100");
    m.set_watchdog_timeout_ms(1000);
    m.add_peripherals("GPIO0");
    ASSERT_TRUE(
        device_->LoadApp(*BuildAppImage(SigningKey(), m, 1, 64 * 1024)).ok());
    device_->DrainErrorEvents();  // start from an empty ring
  }
  std::vector<v1::ErrorEvent> Drain() { return device_->DrainErrorEvents(); }

  std::unique_ptr<Device> device_;
};

std::vector<v1::ErrorEvent::Kind> Kinds(const std::vector<v1::ErrorEvent>& ev) {
  std::vector<v1::ErrorEvent::Kind> k;
  for (const auto& e : ev) k.push_back(e.kind());
  return k;
}

using Kind = v1::ErrorEvent;

TEST_F(DeviceErrorsTest, AppCrashWithExitCodeAndWithSignal) {
  ASSERT_TRUE(device_->ReportAppExit("dw100", 3, 0).ok());
  ASSERT_TRUE(device_->ReportAppExit("dw100", 0, 11).ok());
  auto ev = Drain();
  ASSERT_EQ(Kinds(ev), (std::vector<v1::ErrorEvent::Kind>{Kind::APP_CRASH,
                                                          Kind::APP_CRASH}));
  EXPECT_EQ(ev[0].exit_code(), 3);
  EXPECT_EQ(ev[0].signal(), 0);
  EXPECT_EQ(ev[1].signal(), 11);
  EXPECT_TRUE(absl::StrContains(ev[0].component(), "dw100"))
      << ev[0].component();
}

TEST_F(DeviceErrorsTest, WatchdogReset) {
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(device_->CheckWatchdogs(), 1);
  auto ev = Drain();
  ASSERT_EQ(Kinds(ev),
            (std::vector<v1::ErrorEvent::Kind>{Kind::WATCHDOG_RESET}));
}

TEST_F(DeviceErrorsTest, FirewallViolation) {
  EXPECT_EQ(device_->AccessPeripheral("dw100", "UART1").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(device_->Connect("dw100", "evil.example.com").ok());
  auto ev = Drain();
  ASSERT_EQ(Kinds(ev),
            (std::vector<v1::ErrorEvent::Kind>{Kind::FIREWALL_VIOLATION,
                                               Kind::FIREWALL_VIOLATION}));
}

TEST_F(DeviceErrorsTest, CapabilityViolation) {
  EXPECT_FALSE(device_->CallApi("dw100", AppApi::kFileOpen).ok());
  auto ev = Drain();
  ASSERT_EQ(Kinds(ev),
            (std::vector<v1::ErrorEvent::Kind>{Kind::MANIFEST_VIOLATION}));
}

TEST_F(DeviceErrorsTest, Tamper) {
  device_->TriggerTamper("voltage glitch");
  auto ev = Drain();
  ASSERT_EQ(Kinds(ev), (std::vector<v1::ErrorEvent::Kind>{Kind::TAMPER}));
  EXPECT_TRUE(absl::StrContains(ev[0].detail(), "voltage glitch"))
      << ev[0].detail();
}

TEST_F(DeviceErrorsTest, AttestationRefusedByTheService) {
  EXPECT_EQ(device_
                ->ReportAttestationFailure(
                    absl::PermissionDeniedError("device revoked"))
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(device_->ReportAttestationFailure(absl::OkStatus()).ok());
  auto ev = Drain();
  ASSERT_EQ(Kinds(ev),
            (std::vector<v1::ErrorEvent::Kind>{Kind::ATTESTATION_FAILED}));
  EXPECT_EQ(ev[0].component(), "attestation");
  EXPECT_EQ(ev[0].detail(), "device revoked");
}

TEST_F(DeviceErrorsTest, PlannedRestartForAnInstalledUpdate) {
  ASSERT_TRUE(
      device_->StageUpdate(*BuildOsImage(SigningKey(), kKernel, 2)).ok());
  EXPECT_TRUE(Drain().empty());  // staging is not a restart
  ASSERT_TRUE(device_->Reboot().ok());
  auto ev = Drain();
  ASSERT_EQ(Kinds(ev),
            (std::vector<v1::ErrorEvent::Kind>{Kind::PLANNED_RESTART}));
  EXPECT_EQ(ev[0].component(), "os");
  EXPECT_TRUE(absl::StrContains(ev[0].detail(), "OS update")) << ev[0].detail();
  // An ordinary reboot afterwards is not an update restart.
  ASSERT_TRUE(device_->ConfirmUpdate().ok());
  ASSERT_TRUE(device_->Reboot().ok());
  EXPECT_TRUE(Drain().empty());
}

TEST_F(DeviceErrorsTest, UpdateFailedOnAFailedInstall) {
  auto rogue = crypto::EcPrivateKey::FromScalar(crypto::Sha256("rogue"));
  EXPECT_FALSE(device_->StageUpdate(*BuildOsImage(*rogue, kKernel, 9)).ok());
  auto ev = Drain();
  ASSERT_EQ(Kinds(ev),
            (std::vector<v1::ErrorEvent::Kind>{Kind::UPDATE_FAILED}));
}

TEST_F(DeviceErrorsTest, UpdateRolledBackAfterACrashLoop) {
  ASSERT_TRUE(
      device_->StageUpdate(*BuildOsImage(SigningKey(), kOsServices, 2)).ok());
  ASSERT_TRUE(device_->Reboot().ok());
  Drain();  // the planned restart
  for (int i = 0; i < device_->type().max_boot_attempts; ++i) {
    ASSERT_TRUE(device_->OsCrash("null deref").ok());
  }
  auto ev = Drain();
  // Each panic is a crash of the OS; the last boot attempt rolls back.
  std::vector<v1::ErrorEvent::Kind> want(device_->type().max_boot_attempts,
                                         Kind::APP_CRASH);
  want.push_back(Kind::UPDATE_ROLLED_BACK);
  EXPECT_EQ(Kinds(ev), want);
  EXPECT_EQ(ev.back().component(), "os");
  EXPECT_TRUE(absl::StrContains(ev.back().detail(), "rolled back"))
      << ev.back().detail();
}

TEST_F(DeviceErrorsTest, AttestationFailsWhenTheDeviceCannotQuote) {
  // A device that has not booted (no measured chain) cannot quote.
  std::unique_ptr<Device> d = Manufactured("errors-2");
  ASSERT_FALSE(HasFailure());
  d->DrainErrorEvents();
  auto q = d->Quote("nonce");
  ASSERT_EQ(q.status().code(), absl::StatusCode::kFailedPrecondition);
  auto ev = d->DrainErrorEvents();
  ASSERT_EQ(Kinds(ev),
            (std::vector<v1::ErrorEvent::Kind>{Kind::ATTESTATION_FAILED}));
  EXPECT_TRUE(absl::StrContains(ev[0].detail(), "cannot quote"))
      << ev[0].detail();
}

// Issue 14 memory: once the service acknowledged every event, the ring
// keeps nothing (not even its capacity) for a device of a large fleet.
TEST_F(DeviceErrorsTest, AcknowledgedRingGivesItsStorageBack) {
  const size_t idle = device_->FootprintBytes();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(device_->ReportAppExit("dw100", 3, 0).ok());
  }
  ASSERT_EQ(device_->pending_error_events(), 3u);
  EXPECT_GT(device_->FootprintBytes(), idle);
  const uint64_t first = device_->error_events()[0].sequence();
  const uint64_t last = device_->error_events()[2].sequence();
  device_->AckErrorEvents(first);  // part: the rest stays, in order
  ASSERT_EQ(device_->pending_error_events(), 2u);
  EXPECT_EQ(device_->error_events()[1].sequence(), last);
  device_->AckErrorEvents(last);
  EXPECT_EQ(device_->pending_error_events(), 0u);
  EXPECT_EQ(device_->FootprintBytes(), idle);
  // The ring still works afterwards.
  ASSERT_TRUE(device_->ReportAppExit("dw100", 3, 0).ok());
  EXPECT_EQ(device_->error_events().back().sequence(), last + 1);
}

}  // namespace
}  // namespace sphere::mcu
