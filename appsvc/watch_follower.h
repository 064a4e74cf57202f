// WatchFollower: keeps a DeviceRegistry in step with Sphere's management
// catalog as a relying party: runs ManagementService.Watch from the
// registry's revision + 1 (a fresh start or a compacted revision is answered
// with a full snapshot) on its own thread and applies every event; when the
// stream breaks it reconnects after a jittered exponential backoff
// (50 ms doubling to 10 s, reset by progress). Client side only: no gRPC
// server thread ever waits on it.
//
// Thread-safety: Start/Stop from one thread.
#ifndef SPHERE_APPSVC_WATCH_FOLLOWER_H_
#define SPHERE_APPSVC_WATCH_FOLLOWER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "appsvc/device_registry.h"
#include "protos/management.grpc.pb.h"

namespace contoso::appsvc {

class WatchFollower {
 public:
  WatchFollower(std::shared_ptr<grpc::Channel> management,
                DeviceRegistry* registry);
  ~WatchFollower();
  void Start();
  void Stop();

 private:
  void Run();

  std::unique_ptr<sphere::v1::ManagementService::Stub> stub_;
  DeviceRegistry* const registry_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace contoso::appsvc

#endif  // SPHERE_APPSVC_WATCH_FOLLOWER_H_
