// ContosoCloud: the core of Contoso's DW100 cloud (issue 13), knowing nothing
// of gRPC or HTTP: telemetry ingest, drying-temperature anomaly detection,
// remote diagnostics commands, customer notifications, warranty part
// reservations at the customer's repair shop, rinse-agent reorder offers,
// orders, service requests, and the Contoso half of a device's timeline.
// Adapters (grpc_services.h, web_server.h) authenticate callers and call it.
//
// Storage (one sphere::store::Store, column families below), every write
// through a DurableWriter, so a call that returns OK is durable:
//   devices   device id -> records::DeviceRecord
//   samples   device id "/" be64(first sequence) -> records::SampleChunk
//             (the new samples of one batch; one value per batch)
//   events    device id "/" be64(time ms) be64(n) -> v1::TimelineEntry
//   customers device id -> records::Customer       (seed data)
//   shops     shop id -> records::Shop             (seed, live inventory)
//
// Idempotency: a sample is stored once per (device, sequence); a repeated
// sequence is counted as a duplicate and changes nothing. The device record
// keeps the stored sequences as ranges, so checking costs no read. The
// analysis sees each sample once.
//
// Limits (checked before anything is stored; a refused call stores
// nothing): at most kMaxBatchSamples samples per batch; every field within
// its physical bounds (see ValidateSample); text fields bounded below.
//
// Thread-safety: every method may be called concurrently. Calls for one
// device are serialised by a striped lock (read, analyse, commit); shop
// inventory by one mutex taken after a device's. Methods block until their
// write is durable: call them from worker threads.
#ifndef SPHERE_APPSVC_CONTOSO_CLOUD_H_
#define SPHERE_APPSVC_CONTOSO_CLOUD_H_

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "appsvc/anomaly_detector.h"
#include "appsvc/durable_writer.h"
#include "appsvc/records.pb.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "protos/contoso.pb.h"

namespace contoso::appsvc {

inline constexpr int kMaxBatchSamples = 1000;
inline constexpr size_t kMaxDescriptionBytes = 1024;
inline constexpr size_t kMaxIdBytes = 64;
inline constexpr int kMaxFindings = 16;
inline constexpr size_t kMaxFindingBytes = 256;
inline constexpr int kMaxHistory = 50;  // entries kept per record list
inline constexpr int kMaxTimelineEntries = 500;
inline constexpr uint32_t kMaxPageSize = 500;
// Gaps a device may leave in its sample sequence numbers (each gap is one
// more stored range); a batch that would exceed it is refused, nothing
// stored, until the device resends what is missing.
inline constexpr int kMaxSequenceRanges = 256;

// Column families appsvc's store must have.
std::vector<std::string> ColumnFamilies();

struct CloudOptions {
  DetectorOptions detector;
  double rinse_low_pct = 15.0;     // below: offer a reorder
  double rinse_refill_pct = 40.0;  // at or above: the tank was refilled
  // Part reserved when diagnostics name none.
  std::string default_heater_part = "DW100-HTR-220";
};

// SeedData: customers and shops (a seeded data file; see seed.h).
struct SeedData {
  std::vector<records::Customer> customers;
  std::vector<records::Shop> shops;
};

// ValidateSample: InvalidArgument naming the field and its bounds.
absl::Status ValidateSample(const v1::Telemetry& s, int index);
// ValidateDeviceId: 64 lowercase hex digits (hex SHA-256 of the key).
absl::Status ValidateDeviceId(absl::string_view id);

class ContosoCloud {
 public:
  ContosoCloud(sphere::store::Store* store, DurableWriter* writer,
               sphere::Clock* clock, CloudOptions options = {});

  // LoadSeed stores customers (replacing same device ids) and shops (a shop
  // already stored keeps its live inventory; a new one gets the seed's).
  absl::Status LoadSeed(const SeedData& seed);

  // Device side (device_id comes from the authenticated credential).
  absl::StatusOr<v1::ReportTelemetryResponse> ReportTelemetry(
      const std::string& device_id, const v1::ReportTelemetryRequest& req);
  // TelemetryItem: one device's batch in a gateway's many-device call.
  struct TelemetryItem {
    std::string device_id;  // authenticated by the caller
    const v1::ReportTelemetryRequest* request;
  };
  // ReportTelemetryMany is ReportTelemetry for several devices with one
  // durable write: each item is validated, deduplicated and analysed on its
  // own and gets its own result (a refused item stores nothing; a device
  // named twice is refused at its second item); the accepted items' writes
  // commit together, so one synced write acknowledges them all (an item
  // whose write fails gets the write's error). Results are in item order.
  std::vector<absl::StatusOr<v1::ReportTelemetryResponse>> ReportTelemetryMany(
      const std::vector<TelemetryItem>& items);
  absl::StatusOr<v1::PollCommandsResponse> PollCommands(
      const std::string& device_id);
  absl::Status CompleteCommand(const std::string& device_id,
                               const v1::CompleteCommandRequest& req);

  // Support and owner side.
  absl::StatusOr<v1::ListDevicesResponse> ListDevices(
      const v1::ListDevicesRequest& req);
  absl::StatusOr<v1::DeviceInsights> GetDeviceInsights(
      const std::string& device_id);
  // ContosoTimeline: Contoso's entries for the device, oldest first (the
  // Sphere half is joined by the adapter, see sphere_source.h).
  absl::StatusOr<v1::Timeline> ContosoTimeline(const std::string& device_id);
  absl::StatusOr<v1::RequestServiceResponse> RequestService(
      const v1::RequestServiceRequest& req);
  absl::StatusOr<v1::PlaceOrderResponse> PlaceOrder(
      const v1::PlaceOrderRequest& req);

  // Reads for the web pages and tests.
  absl::StatusOr<records::DeviceRecord> GetDeviceRecord(
      const std::string& device_id);
  absl::StatusOr<records::Customer> GetCustomer(const std::string& device_id);
  absl::StatusOr<records::Shop> GetShop(const std::string& shop_id);
  // CountSamples: samples stored for the device (a scan that counts each
  // stored chunk's samples without parsing them: the gateway's end check
  // and tests). DataLoss when a chunk is malformed.
  absl::StatusOr<uint64_t> CountSamples(const std::string& device_id);

  const CloudOptions& options() const { return options_; }

 private:
  // Event collects timeline entries and actions produced by one call.
  struct Effects {
    std::vector<v1::TimelineEntry> entries;
    std::vector<std::string> actions;
  };
  absl::Mutex& LockFor(absl::string_view device_id);
  size_t StripeOf(absl::string_view device_id) const;
  // ValidateTelemetry: the batch's limits and every sample's fields.
  static absl::Status ValidateTelemetry(const v1::ReportTelemetryRequest& req);
  // PrepareTelemetry: the analysis of a validated batch for `device_id`,
  // whose lock the caller holds; appends the batch's writes to `out` only
  // when it succeeds with new samples (nothing on error).
  absl::StatusOr<v1::ReportTelemetryResponse> PrepareTelemetry(
      const std::string& device_id, const v1::ReportTelemetryRequest& req,
      sphere::store::WriteBatch* out);
  absl::StatusOr<records::DeviceRecord> LoadRecord(const std::string& device_id,
                                                   bool* found);
  void AddEntry(Effects* fx, absl::string_view kind, std::string summary);
  void FinishCycle(records::DeviceRecord* rec, Effects* fx);
  void QueueDiagnostics(records::DeviceRecord* rec, Direction d,
                        const std::string& why, Effects* fx);
  void Notify(records::DeviceRecord* rec, const std::string& text, Effects* fx);
  // Commit writes `rec` and the effects' entries (plus `extra`) durably.
  absl::Status Commit(const records::DeviceRecord& rec, const Effects& fx,
                      sphere::store::WriteBatch extra);
  // AppendRecord adds `rec` and the effects' entries to `batch`.
  void AppendRecord(const records::DeviceRecord& rec, const Effects& fx,
                    sphere::store::WriteBatch* batch);
  std::string NextId(records::DeviceRecord* rec, absl::string_view prefix);

  sphere::store::Store* const store_;
  DurableWriter* const writer_;
  sphere::Clock* const clock_;
  const CloudOptions options_;
  const DryingAnomalyDetector detector_;
  // Striped by device id; many stripes, so a many-device call (which locks
  // each of its devices' stripes until its write is durable) rarely shares
  // one with another call in flight.
  std::array<absl::Mutex, 4096> device_locks_;
  absl::Mutex shops_mu_;  // after a device lock, never before
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_CONTOSO_CLOUD_H_
