// UpdateTransport: what the twin library's update agent needs from the
// network, like AttestationTransport for attestation: send one request of
// protos/update.proto for the device named in it and call back with the
// answer. The agent (twin/update_agent.h) is written against this interface
// only, so it is tested without gRPC; client/update_client.h implements it
// over gRPC.
//
// Thread-safety: implementations accept calls from any thread; each call
// invokes `done` exactly once, possibly before returning or on another
// thread (callbacks must not block).
#ifndef SPHERE_CLIENT_UPDATE_TRANSPORT_H_
#define SPHERE_CLIENT_UPDATE_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protos/update.pb.h"

namespace sphere::client {

// DownloadResult is what one DownloadImage stream delivered: the chunks in
// arrival order and how the stream ended. Chunks may be non-empty with a
// non-OK status (an interrupted download keeps what arrived, so the device
// resumes from there).
struct DownloadResult {
  std::vector<v1::ImageChunk> chunks;
  absl::Status status;
};

class UpdateTransport {
 public:
  using UpdatesCallback =
      std::function<void(absl::StatusOr<v1::GetUpdatesResponse>)>;
  using DownloadCallback = std::function<void(DownloadResult)>;
  using ReportCallback = std::function<void(absl::Status)>;

  virtual ~UpdateTransport() = default;
  virtual void GetUpdates(v1::GetUpdatesRequest request,
                          UpdatesCallback done) = 0;
  // DownloadImage reads the stream from request.offset and keeps at most
  // `max_bytes` bytes of chunk data (the rest of the signed length). A server
  // that sends more is cut off at once (the stream is cancelled): the
  // chunks before it are delivered with OUT_OF_RANGE (endless-data attack).
  virtual void DownloadImage(v1::DownloadImageRequest request,
                             uint64_t max_bytes, DownloadCallback done) = 0;
  virtual void ReportUpdateResult(v1::ReportUpdateResultRequest request,
                                  ReportCallback done) = 0;
};

}  // namespace sphere::client

#endif  // SPHERE_CLIENT_UPDATE_TRANSPORT_H_
