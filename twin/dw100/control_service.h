// TwinControlService: the TwinControl gRPC API (protos/twin_control.proto)
// of a running DW100 twin, served on loopback by `twin run`. A thin
// adapter: each call is posted to the DeviceLoop's thread and answered from
// there, so no gRPC callback thread ever waits on the device; a full queue
// answers RESOURCE_EXHAUSTED at once.
//
// CheckForUpdates runs one update check on the loop (at most 60 s).
//
// Thread-safety: gRPC calls methods from its threads; DeviceLoop::Post is
// thread-safe.
#ifndef SPHERE_TWIN_DW100_CONTROL_SERVICE_H_
#define SPHERE_TWIN_DW100_CONTROL_SERVICE_H_

#include "protos/twin_control.grpc.pb.h"
#include "twin/dw100/device_loop.h"

namespace sphere::dw100 {

// Longest RunDiagnosticsRequest.requested_by accepted.
inline constexpr size_t kMaxRequestedByBytes = 128;

class TwinControlService final : public v1::TwinControl::CallbackService {
 public:
  // `loop` must outlive the service.
  explicit TwinControlService(DeviceLoop* loop) : loop_(loop) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* req,
                                      v1::TwinStatus* resp) override;
  grpc::ServerUnaryReactor* Attest(grpc::CallbackServerContext* ctx,
                                   const v1::TwinAttestRequest* req,
                                   v1::TwinStatus* resp) override;
  grpc::ServerUnaryReactor* Reboot(grpc::CallbackServerContext* ctx,
                                   const v1::RebootRequest* req,
                                   v1::TwinStatus* resp) override;
  grpc::ServerUnaryReactor* CheckForUpdates(
      grpc::CallbackServerContext* ctx, const v1::CheckForUpdatesRequest* req,
      v1::TwinStatus* resp) override;
  grpc::ServerUnaryReactor* InjectFault(grpc::CallbackServerContext* ctx,
                                        const v1::InjectFaultRequest* req,
                                        v1::TwinStatus* resp) override;
  grpc::ServerUnaryReactor* RunDiagnostics(
      grpc::CallbackServerContext* ctx, const v1::RunDiagnosticsRequest* req,
      v1::DiagnosticsReport* resp) override;

 private:
  // OnLoop posts `fn` (returns the status to answer with) to the loop.
  grpc::ServerUnaryReactor* OnLoop(grpc::CallbackServerContext* ctx,
                                   std::function<absl::Status()> fn);
  DeviceLoop* const loop_;
};

}  // namespace sphere::dw100

#endif  // SPHERE_TWIN_DW100_CONTROL_SERVICE_H_
