// The wire contract of appsvc's gateway path (contoso.v1.ContosoGateway)
// that both ends must agree on: the call metadata keys, the bytes a device
// signs to prove itself, and the CountTelemetry batch limit. Header-only and
// free of appsvc's server code, so device-side callers (loadgen) include it
// instead of restating it.
#ifndef CONTOSO_APPSVC_GATEWAY_CONTRACT_H_
#define CONTOSO_APPSVC_GATEWAY_CONTRACT_H_

#include <cstddef>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace contoso::appsvc {

// Metadata on ReportTelemetry / CountTelemetry: the device and appsvc's
// session token for it.
inline constexpr char kGatewayDeviceMetadata[] = "contoso-device-id";
inline constexpr char kGatewaySessionMetadata[] = "contoso-session-token";
// Devices per CountTelemetry call, at most.
inline constexpr int kMaxCountDevices = 1000;
// Devices per GetChallenges / ProveBatch call, at most, and the most bytes
// one ProveBatch request may take (appsvc's server-wide request cap).
inline constexpr int kMaxProveBatch = 128;
inline constexpr size_t kMaxProveBatchBytes = 512 << 10;
// Devices per ReportTelemetryBatch call, at most, and its most bytes.
inline constexpr int kMaxTelemetryBatchDevices = 64;
inline constexpr size_t kMaxTelemetryBatchBytes = 512 << 10;

// GatewayProofMessage: the bytes a device signs with its Sphere-issued key
// to answer appsvc's challenge ("contoso-gateway-proof-v1|<id>|<nonce>").
inline std::string GatewayProofMessage(absl::string_view device_id,
                                       absl::string_view nonce) {
  return absl::StrCat("contoso-gateway-proof-v1|", device_id, "|", nonce);
}

}  // namespace contoso::appsvc

#endif  // CONTOSO_APPSVC_GATEWAY_CONTRACT_H_
