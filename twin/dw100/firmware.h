// DW100 firmware: the two applications Contoso ships for the DW100 and how
// they run on the MCU model.
//
//  * "dw100-sensors", a real-time app on a Cortex-M4 core: owns the sensor
//    peripherals (ADC0: water + drying thermistors, I2C0: rinse-agent level
//    sensor, GPIO4: heater relay) behind the hardware firewall, reads them
//    and posts each reading to the high-level app through the mailbox. It
//    has no network (real-time cores never do).
//  * "dw100", the high-level app on the Cortex-A7: owns the door and panel
//    (GPIO0, UART1), receives readings from the mailbox and is the only
//    component that talks to the Contoso cloud; its manifest allows exactly
//    one host, kContosoCloudHost, so the OS network firewall refuses
//    anything else.
//
// Images: Dw100AppImages builds both packages the way Contoso's build does
// (signed with Contoso's own key); the platform's image pipeline re-signs
// them before any device accepts them (mcu::ResignImage /
// `spherectl image upload`).
//
// Firmware drives a running mcu::Device: ReadSensors moves WashModel
// samples through the RT app, the firewall and the mailbox; a sample is
// only delivered while both apps run and the firewall lets them through.
// Thread-safety: not thread-safe; one owner with the Device.
#ifndef SPHERE_TWIN_DW100_FIRMWARE_H_
#define SPHERE_TWIN_DW100_FIRMWARE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/crypto/crypto.h"
#include "mcu-model/device.h"
#include "protos/device.pb.h"
#include "twin/dw100/wash_model.h"

namespace sphere::dw100 {

inline constexpr char kHighLevelApp[] = "dw100";
inline constexpr char kRealtimeApp[] = "dw100-sensors";
// The one host the DW100 app may connect to (its AllowedConnections).
inline constexpr char kContosoCloudHost[] = "devices.contoso.example";
// Payload sizes of the synthetic app images (fit app-a and rt-apps).
inline constexpr size_t kHighLevelAppBytes = 96 * 1024;
inline constexpr size_t kRealtimeAppBytes = 24 * 1024;

v1::AppManifest HighLevelManifest();
v1::AppManifest RealtimeManifest();

// Dw100AppImages returns {high-level, real-time} app packages at `version`
// signed with `key` (Contoso's build key before upload, or the platform key
// in tests), for `tenant_id`.
absl::StatusOr<std::vector<v1::ImagePackage>> Dw100AppImages(
    const crypto::EcPrivateKey& key, uint32_t version,
    absl::string_view tenant_id = "");

// EncodeReading / DecodeReading: the mailbox message format between the RT
// app and the high-level app (fixed binary layout, 41 bytes).
std::string EncodeReading(const WashSample& s);
absl::StatusOr<WashSample> DecodeReading(absl::string_view message);

class Firmware {
 public:
  // `device` must outlive the Firmware.
  explicit Firmware(mcu::Device* device) : device_(device) {}

  // Installed: both apps are running on the device.
  bool Running() const;
  // ReadSensors passes `samples` through the RT app (peripheral reads via
  // the firewall), the mailbox and the high-level app, appending what the
  // high-level app received to `out`. Errors: FailedPrecondition when an
  // app is not running, PermissionDenied from the firewall.
  absl::Status ReadSensors(const std::vector<WashSample>& samples,
                           std::vector<WashSample>* out);
  // ConnectCloud asks the OS network firewall whether the high-level app
  // may open a connection to `host` (kContosoCloudHost passes).
  absl::Status ConnectCloud(absl::string_view host = kContosoCloudHost);
  // Crash models the high-level app dying (SIGSEGV): the OS records
  // APP_CRASH in the error ring and restarts it.
  absl::Status Crash();

 private:
  mcu::Device* device_;
};

}  // namespace sphere::dw100

#endif  // SPHERE_TWIN_DW100_FIRMWARE_H_
