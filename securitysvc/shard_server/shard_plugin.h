// ShardPlugin: a service hosted by a shard server (attestation today; update
// and error reporting next). A plug-in brings its column families and its
// gRPC services; the shard brings everything they share (ShardContext).
//
// Lifecycle, driven by ShardServer:
//   ColumnFamilies()   before the store opens (names must be unique across
//                      the shard's plug-ins);
//   Init(context)      once the store, catalog, router and device helper
//                      exist and before the server starts serving;
//   Services()         registered with the gRPC server;
//   DeviceCount()      reported to management in the heartbeat;
//   Stop()             after the server stopped serving, before the store
//                      closes (stop background work).
//
// Example:
//   class ErrorReportsPlugin : public ShardPlugin {
//     std::vector<std::string> ColumnFamilies() const override {
//       return {"errors"};
//     }
//     absl::Status Init(ShardContext& c) override {
//       service_ = std::make_unique<ErrorReportsService>(c.store,
//                                                        c.device_calls);
//       return absl::OkStatus();
//     }
//     std::vector<grpc::Service*> Services() override {
//       return {service_.get()};
//     }
//   };
#ifndef SPHERE_SECURITYSVC_SHARD_SERVER_SHARD_PLUGIN_H_
#define SPHERE_SECURITYSVC_SHARD_SERVER_SHARD_PLUGIN_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/store/store.h"
#include "common/util/clock.h"
#include "protos/management.grpc.pb.h"
#include "securitysvc/auth/device_authenticator.h"
#include "securitysvc/auth/device_context.h"
#include "securitysvc/catalog/catalog_view.h"
#include "securitysvc/shard_server/device_call.h"
#include "securitysvc/shard_server/revision_gate.h"
#include "securitysvc/sharding/router.h"

namespace sphere::shard {

// ShardContext: what a shard shares with its plug-ins. Everything is owned by
// the ShardServer and outlives every plug-in's Stop().
struct ShardContext {
  std::string shard_id;
  store::Store* store = nullptr;  // the shard's one database
  const catalog::CatalogView* catalog = nullptr;
  const sharding::ShardRouter* router = nullptr;
  const auth::SessionTokens* session_tokens = nullptr;
  const auth::DeviceAuthenticator* authenticator = nullptr;
  const DeviceCallHandler* device_calls = nullptr;
  RevisionGate* revision_gate = nullptr;
  Clock* clock = nullptr;
  // Subject of the platform root CA (the first certificate of the server's
  // ca_pem): operator credentials must be issued by it. Empty when it could
  // not be parsed (then operator-facing services refuse every caller).
  std::string root_subject_line;
  // Management, as the shard (null when the shard runs without one, e.g.
  // an in-process test). Calls must carry deadlines and must not be made on
  // gRPC callback threads.
  v1::ManagementService::Stub* management = nullptr;
  // WaitForRevision blocks until the catalog reached a revision or the
  // timeout passed (never call it on a callback thread). Null without
  // management.
  std::function<bool(int64_t, absl::Duration)> wait_for_revision;
};

class ShardPlugin {
 public:
  virtual ~ShardPlugin() = default;
  virtual std::string name() const = 0;
  virtual std::vector<std::string> ColumnFamilies() const = 0;
  virtual absl::Status Init(ShardContext& context) = 0;
  virtual std::vector<grpc::Service*> Services() = 0;
  virtual uint64_t DeviceCount() const { return 0; }
  virtual void Stop() {}
};

}  // namespace sphere::shard

#endif  // SPHERE_SECURITYSVC_SHARD_SERVER_SHARD_PLUGIN_H_
