// watch_event_fuzzer: catalog Watch events as a shard applies them to its
// InMemoryCatalog (securitysvc/catalog), the path every catalog change from
// management takes into attestation.
//
// Input: records (fuzz_support.h), each a serialized v1::WatchEvent. Each
// event is applied in order (tenant CA keys arrive wrapped under
// FuzzMasterKey, as the seeds' are); then the view is queried the way
// attestation does: GetDevice, GetSharedTenantCa, GetDeviceGroup,
// FindImageByHash, ExpectedImages.
// Invariants: the view's revision never goes backwards and reaches every
// applied event's revision; an applied device, group or image is found.
#include <cstdint>

#include "fuzz/fuzz_support.h"
#include "protos/management.pb.h"
#include "securitysvc/catalog/catalog_view.h"

using sphere::fuzz::Check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sphere::catalog::InMemoryCatalog view(sphere::fuzz::FuzzMasterKey());
  sphere::fuzz::RecordReader in(sphere::fuzz::Bytes(data, size));
  absl::string_view record;
  int64_t max_applied = 0;
  std::vector<sphere::v1::Device> devices;
  for (int n = 0; n < 256 && in.Next(&record); ++n) {
    sphere::v1::WatchEvent event;
    if (!event.ParseFromString(std::string(record))) continue;
    const int64_t before = view.revision();
    absl::Status s = view.Apply(event);
    Check(view.revision() >= before, "catalog revision went backwards");
    if (!s.ok()) continue;
    // Snapshot events are staged and become visible, all at once, with the
    // snapshot's last event (InMemoryCatalog::Apply); live events at once.
    if (event.snapshot() && !event.snapshot_end()) continue;
    max_applied = std::max(max_applied, event.revision());
    Check(view.revision() >= event.revision(),
          "an applied event's revision is not reflected");
    switch (event.change_case()) {
      case sphere::v1::WatchEvent::kDevice:
        Check(view.GetDevice(event.device().id()).ok(),
              "an applied device is not found");
        devices.push_back(event.device());
        break;
      case sphere::v1::WatchEvent::kClaimedDevices:
        for (const sphere::v1::Device& d : event.claimed_devices().devices()) {
          Check(view.GetDevice(d.id()).ok(), "an applied device is not found");
          devices.push_back(d);
        }
        break;
      case sphere::v1::WatchEvent::kDeviceGroup:
        Check(view.GetDeviceGroup(event.device_group().id()).ok(),
              "an applied device group is not found");
        break;
      case sphere::v1::WatchEvent::kImage:
        Check(view.FindImageByHash(event.image().image_hash()).ok(),
              "an applied image is not found by hash");
        break;
      case sphere::v1::WatchEvent::kTenant:
        (void)view.GetSharedTenantCa(event.tenant().id());
        (void)view.GetTenantCa(event.tenant().id());
        break;
      default:
        break;
    }
  }
  Check(view.revision() >= max_applied, "revision below an applied event");
  for (const sphere::v1::Device& d : devices) {
    absl::StatusOr<sphere::v1::Device> now = view.GetDevice(d.id());
    if (!now.ok()) continue;
    (void)view.GetDeviceGroup(now->device_group_id());
    (void)view.GetSharedTenantCa(now->tenant_id());
    for (const auto& [component, image] : view.ExpectedImages(*now)) {
      Check(!component.empty() || image.component().empty(),
            "expected image listed under an empty component");
    }
  }
  return 0;
}
