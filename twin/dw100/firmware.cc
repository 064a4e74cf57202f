#include "twin/dw100/firmware.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "mcu-model/image.h"

namespace sphere::dw100 {

v1::AppManifest HighLevelManifest() {
  v1::AppManifest m;
  m.set_component_id(kHighLevelApp);
  m.set_name("DW100 dishwasher");
  m.add_peripherals("GPIO0");  // door switch + panel LEDs
  m.add_peripherals("UART1");  // control panel
  m.add_allowed_connections(kContosoCloudHost);
  m.set_mutable_storage_kib(64);
  m.set_memory_kib(256);
  m.set_software_update_deferral(true);  // never update mid-cycle
  m.set_system_event_notifications(true);
  return m;
}

v1::AppManifest RealtimeManifest() {
  v1::AppManifest m;
  m.set_component_id(kRealtimeApp);
  m.set_name("DW100 sensors");
  m.set_realtime(true);
  m.add_peripherals("ADC0");   // water + drying thermistors
  m.add_peripherals("I2C0");   // rinse-agent level sensor
  m.add_peripherals("GPIO4");  // drying heater relay
  m.set_memory_kib(64);
  return m;
}

absl::StatusOr<std::vector<v1::ImagePackage>> Dw100AppImages(
    const crypto::EcPrivateKey& key, uint32_t version,
    absl::string_view tenant_id) {
  std::vector<v1::ImagePackage> out;
  auto hl = mcu::BuildAppImage(key, HighLevelManifest(), version,
                               kHighLevelAppBytes, tenant_id);
  if (!hl.ok()) return hl.status();
  out.push_back(*std::move(hl));
  auto rt = mcu::BuildAppImage(key, RealtimeManifest(), version,
                               kRealtimeAppBytes, tenant_id);
  if (!rt.ok()) return rt.status();
  out.push_back(*std::move(rt));
  return out;
}

namespace {
constexpr size_t kReadingBytes = 8 + 8 * 3 + 1 + 8;
template <typename T>
void Put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}
template <typename T>
T Get(const char*& p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return v;
}
}  // namespace

std::string EncodeReading(const WashSample& s) {
  std::string m;
  m.reserve(kReadingBytes);
  Put(m, s.time_unix_ms);
  Put(m, s.water_c);
  Put(m, s.drying_c);
  Put(m, s.rinse_agent_pct);
  Put(m, static_cast<uint8_t>(s.state));
  Put(m, s.cycle_id);
  return m;
}

absl::StatusOr<WashSample> DecodeReading(absl::string_view message) {
  if (message.size() != kReadingBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sensor reading of ", message.size(), " bytes, want ", kReadingBytes));
  }
  const char* p = message.data();
  WashSample s;
  s.time_unix_ms = Get<int64_t>(p);
  s.water_c = Get<double>(p);
  s.drying_c = Get<double>(p);
  s.rinse_agent_pct = Get<double>(p);
  const uint8_t state = Get<uint8_t>(p);
  if (state < 1 || state > 6) {
    return absl::InvalidArgumentError(
        absl::StrCat("sensor reading with cycle state ", state));
  }
  s.state = static_cast<CycleState>(state);
  s.cycle_id = Get<uint64_t>(p);
  return s;
}

bool Firmware::Running() const {
  return device_->boot_state() == mcu::BootState::kRunning &&
         device_->AppRunning(kHighLevelApp) &&
         device_->AppRunning(kRealtimeApp);
}

absl::Status Firmware::ReadSensors(const std::vector<WashSample>& samples,
                                   std::vector<WashSample>* out) {
  if (!Running()) {
    return absl::FailedPreconditionError(
        "DW100 apps are not running (dw100 and dw100-sensors must be "
        "installed)");
  }
  for (const char* p : {"ADC0", "I2C0"}) {
    if (absl::Status s = device_->AccessPeripheral(kRealtimeApp, p); !s.ok()) {
      return s;
    }
  }
  // The mailbox holds a few messages: send and drain in turn.
  for (const WashSample& sample : samples) {
    if (absl::Status s = device_->MailboxSend(kRealtimeApp, kHighLevelApp,
                                              EncodeReading(sample));
        !s.ok()) {
      return s;
    }
    absl::StatusOr<std::string> m = device_->MailboxReceive(kHighLevelApp);
    if (!m.ok()) return m.status();
    absl::StatusOr<WashSample> r = DecodeReading(*m);
    if (!r.ok()) return r.status();
    out->push_back(*r);
  }
  return absl::OkStatus();
}

absl::Status Firmware::ConnectCloud(absl::string_view host) {
  return device_->Connect(kHighLevelApp, host);
}

absl::Status Firmware::Crash() {
  return device_->ReportAppExit(kHighLevelApp, /*exit_code=*/0,
                                /*signal=*/11);
}

}  // namespace sphere::dw100
