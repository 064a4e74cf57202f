// TwinControlService: the TwinControl gRPC API (protos/twin_control.proto)
// of one twin process, served on loopback by `twin run`. The Twin library
// is single-threaded, so every request is handed to the twin's own thread
// through a bounded WorkQueue; the handler returns at once and the call is
// finished from that thread (no gRPC callback thread ever waits). A full
// queue answers RESOURCE_EXHAUSTED at once; a closed one UNAVAILABLE.
//
// TwinHost is what the process owning the twin offers (twin/run_command.cc);
// later additions (InjectFault, RunDiagnostics for the DW100) extend TwinHost
// and this service the same way.
//
// Thread-safety: the service is thread-safe; TwinHost methods are only ever
// called on the thread running WorkQueue::RunFor.
//
// Example:
//   WorkQueue queue(64);
//   TwinControlService control(&host, &queue);
//   runner.AddService(&control);  ...  while (!stop) queue.RunFor(timeout);
#ifndef SPHERE_TWIN_CONTROL_SERVICE_H_
#define SPHERE_TWIN_CONTROL_SERVICE_H_

#include <cstddef>
#include <deque>
#include <functional>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/twin_control.grpc.pb.h"

namespace sphere::twin {

// WorkQueue: a bounded FIFO of closures run by one thread.
class WorkQueue {
 public:
  explicit WorkQueue(size_t capacity) : capacity_(capacity) {}
  // TryPost queues `work`; false when full or closed (work not run).
  bool TryPost(std::function<void()> work);
  // RunFor runs queued work, waiting up to `timeout` for the first item;
  // returns how many items ran.
  size_t RunFor(absl::Duration timeout);
  // Wake makes a waiting RunFor return (e.g. on a termination signal).
  void Wake();
  // Close refuses further posts; what is queued still runs on RunFor.
  void Close();
  size_t size() const;

 private:
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !items_.empty() || woken_;
  }

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
};

// TwinHost: the operations TwinControl exposes, run on the twin's thread.
class TwinHost {
 public:
  virtual ~TwinHost() = default;
  virtual v1::TwinStatus Status() = 0;
  virtual absl::Status Attest() = 0;
  virtual absl::Status Reboot() = 0;
  virtual absl::Status CheckForUpdates() = 0;
};

class TwinControlService final : public v1::TwinControl::CallbackService {
 public:
  // `host` and `queue` must outlive the service.
  TwinControlService(TwinHost* host, WorkQueue* queue)
      : host_(host), queue_(queue) {}

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

 private:
  // Run posts `op` to the twin's thread; the call finishes there with op's
  // status and the twin's status as the response.
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* ctx,
                                v1::TwinStatus* resp, const char* method,
                                std::function<absl::Status()> op);

  TwinHost* const host_;
  WorkQueue* const queue_;
};

}  // namespace sphere::twin

#endif  // SPHERE_TWIN_CONTROL_SERVICE_H_
