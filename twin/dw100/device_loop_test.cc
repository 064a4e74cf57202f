// DeviceLoop across restarts: telemetry sequence numbers and device time
// must never run again over a stretch a previous run may have used, even
// when that run was killed (-9) without writing its state at exit.
#include "twin/dw100/device_loop.h"

#include <gtest/gtest.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crypto/crypto.h"
#include "mcu-model/device.h"
#include "mcu-model/device_type.h"
#include "mcu-model/image.h"
#include "twin/dw100/firmware.h"
#include "twin/state_file.h"

namespace sphere::dw100 {
namespace {

class DeviceLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = std::make_unique<crypto::EcPrivateKey>(
        crypto::EcPrivateKey::Generate());
    auto images = mcu::BuildFactoryImages(*key_, 1);
    ASSERT_TRUE(images.ok()) << images.status();
    auto dev = mcu::Device::Manufacture(mcu::DeviceType::Mt3620(),
                                        key_->PublicKey(), {.seed = "loop"});
    ASSERT_TRUE(dev.ok()) << dev.status();
    ASSERT_TRUE((*dev)->InstallFactoryImages(*images).ok());
    ASSERT_TRUE((*dev)->Boot().ok());
    auto sealed = (*dev)->Serialize();
    ASSERT_TRUE(sealed.ok());
    state_.set_format(1);
    state_.set_device(*sealed);
    state_.set_rom_image_signing_key(key_->PublicKey());
    path_ = absl::StrCat(
        ::testing::TempDir(), "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        ".state");
    ASSERT_TRUE(twin::WriteTwinState(path_, state_).ok());
  }

  // Start: a DeviceLoop from the state file as `twin run` builds one (no
  // network: no shards, no Contoso cloud; Run is never called).
  std::unique_ptr<DeviceLoop> Start(
      double scale, absl::Duration update_check_interval = absl::Hours(24)) {
    auto state = twin::ReadTwinState(path_);
    EXPECT_TRUE(state.ok()) << state.status();
    auto dev = mcu::Device::Restore(mcu::DeviceType::Mt3620(),
                                    state->rom_image_signing_key(),
                                    state->device(), {});
    EXPECT_TRUE(dev.ok()) << dev.status();
    EXPECT_TRUE((*dev)->Boot().ok());
    DeviceLoopOptions o;
    o.name = "loop";
    o.state_path = path_;
    o.time_scale = scale;
    o.update_check_interval = update_check_interval;
    return std::make_unique<DeviceLoop>(o, *std::move(dev), *state);
  }

  uint64_t SequenceFloor() {
    auto s = twin::ReadTwinState(path_);
    EXPECT_TRUE(s.ok());
    return s.ok() ? s->telemetry_sequence_floor() : 0;
  }

  int64_t FloorMs() {
    auto s = twin::ReadTwinState(path_);
    EXPECT_TRUE(s.ok());
    return s.ok() ? s->device_time_floor_unix_ms() : -1;
  }

  std::unique_ptr<crypto::EcPrivateKey> key_;
  twin::TwinStateFile state_;
  std::string path_;
};

TEST_F(DeviceLoopTest, DeviceTimeIsReservedOnDiskBeforeUse) {
  auto loop = Start(1000);
  const int64_t floor = FloorMs();
  // Written at construction, ahead of every device time this run can
  // reach before the next reservation (kDeviceTimeReserve of real time).
  EXPECT_GT(floor, absl::ToUnixMillis(loop->DeviceNow()));
  EXPECT_GE(absl::FromUnixMillis(floor) - loop->DeviceNow(),
            kDeviceTimeReserve * 1000 / 2);
}

TEST_F(DeviceLoopTest, Fault_KilledTwinRestartsPastEveryDeviceTimeItCouldUse) {
  auto first = Start(1000);
  const absl::Time first_seen = first->DeviceNow();
  const int64_t floor = FloorMs();
  // kill -9: the first run never writes its state at exit.
  first.reset();
  auto second = Start(1000);
  // Device time resumes at the reserved floor, past anything the first run
  // could have stamped on a reading, though real time barely moved.
  EXPECT_GE(absl::ToUnixMillis(second->DeviceNow()), floor);
  EXPECT_GT(second->DeviceNow(), first_seen);
  EXPECT_GT(FloorMs(), floor);  // and reserves its own stretch
}

TEST_F(DeviceLoopTest, Fault_KilledTwinNeverReusesATelemetrySequence) {
  auto first = Start(1000);
  const uint64_t reserved = SequenceFloor();
  // Reserved on disk before any number is handed out.
  EXPECT_GE(reserved, 1 + kSequenceReserve);
  first.reset();  // kill -9: nothing written at exit
  auto second = Start(1000);
  // Every number the first run could have used is below `reserved`; the
  // second run starts there and has reserved a new stretch on disk.
  EXPECT_GE(SequenceFloor(), reserved + kSequenceReserve);
}

TEST_F(DeviceLoopTest, FirstRunStartsAtRealTime) {
  const absl::Time before = absl::Now();
  auto loop = Start(1);
  EXPECT_GE(loop->DeviceNow(), before);
  EXPECT_LT(loop->DeviceNow(), before + absl::Minutes(1));
}

}  // namespace
}  // namespace sphere::dw100

namespace sphere::dw100 {
namespace {

// The loop's update schedule runs in device time from the loop's start (no
// attestation needed): one interval of device time after the loop started.
TEST_F(DeviceLoopTest, ScheduledUpdateCheckFallsDueInDeviceTime) {
  // A first run starts device time at real time (scale 1): the loop's
  // device start lies between these two readings.
  const absl::Time before = absl::Now();
  auto loop = Start(1, absl::Hours(6));
  const absl::Time after = absl::Now();
  const absl::Time next = loop->NextScheduledUpdateCheck();
  EXPECT_GE(next, before + absl::Hours(6));
  EXPECT_LE(next, after + absl::Hours(6));
  EXPECT_LE(loop->DeviceNow(), next);
  auto off = Start(8000, absl::ZeroDuration());
  EXPECT_EQ(off->NextScheduledUpdateCheck(), absl::InfiniteFuture());
}

}  // namespace
}  // namespace sphere::dw100
